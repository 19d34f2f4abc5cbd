"""The library's progress and warning messages: one Python logger, `dualfocus_jax`, written by process 0 only.

Progress (INFO) goes to standard output and warnings (WARNING and above) to standard error, each as the bare
message, so a person or a parent process reads training progress line by line as before. The logger does
not propagate to absl's root handler: the entry points keep absl, orbax and TFDS at WARNING (their INFO lines
are noise to a user) without silencing the project's own progress. A caller may add handlers or raise the
logger's level (`logging.getLogger("dualfocus_jax").setLevel(logging.WARNING)` silences progress).
"""

from __future__ import annotations

import logging
import sys

import jax

LOGGER_NAME = "dualfocus_jax"


class _CurrentStream(logging.StreamHandler):
    """A stream handler that writes to whatever sys.stdout / sys.stderr is at the time of each message (a test's
    captured stream, a notebook's redirected one), not the stream of the moment it was made."""

    def __init__(self, name: str, levels: tuple[int, int]):
        super().__init__()
        self._name, (self._lowest, self._highest) = name, levels
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return getattr(sys, self._name)

    @stream.setter
    def stream(self, _value):  # logging.StreamHandler.__init__ assigns one; the current one is always used
        pass

    def filter(self, record: logging.LogRecord) -> bool:
        return self._lowest <= record.levelno < self._highest and super().filter(record)

    def flush(self) -> None:
        self.stream.flush()


def progress_logger() -> logging.Logger:
    """The `dualfocus_jax` logger, given its two handlers on first use."""
    logger = logging.getLogger(LOGGER_NAME)
    if not any(isinstance(handler, _CurrentStream) for handler in logger.handlers):
        logger.addHandler(_CurrentStream("stdout", (logging.DEBUG, logging.WARNING)))
        logger.addHandler(_CurrentStream("stderr", (logging.WARNING, logging.CRITICAL + 1)))
        logger.propagate = False
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
    return logger


def say(message: str) -> None:
    """Progress of process 0 (written and flushed at once)."""
    if jax.process_index() == 0:
        progress_logger().info(message)


def warn(message: str) -> None:
    """A warning of process 0, on standard error."""
    if jax.process_index() == 0:
        progress_logger().warning(message)
