"""The library's progress messages: through the `dualfocus_jax` logger, progress on stdout and warnings on
stderr as bare lines, unaffected by absl's verbosity (the entry points keep absl at WARNING)."""

import logging

from absl import logging as absl_logging

from dualfocus_jax import progress_log


def test_progress_goes_to_stdout_and_warnings_to_stderr_as_bare_lines(capsys):
    progress_log.say("step 3/10: loss=0.5")
    progress_log.warn("resuming with changed settings")
    captured = capsys.readouterr()
    assert captured.out == "step 3/10: loss=0.5\n"
    assert captured.err == "resuming with changed settings\n"


def test_absl_verbosity_does_not_hide_progress_and_absl_does_not_repeat_it(capsys):
    before = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.WARNING)
    try:
        progress_log.say("checkpoint at step 2")
    finally:
        absl_logging.set_verbosity(before)
    captured = capsys.readouterr()
    assert captured.out == "checkpoint at step 2\n"
    assert "checkpoint at step 2" not in captured.err  # not propagated to absl's (stderr) handler


def test_a_caller_can_silence_progress_but_not_warnings(capsys):
    logger = progress_log.progress_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        progress_log.say("hidden")
        progress_log.warn("shown")
    finally:
        logger.setLevel(level)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "shown\n"


def test_handlers_are_added_once():
    progress_log.progress_logger()
    progress_log.progress_logger()
    handlers = progress_log.progress_logger().handlers
    assert sum(isinstance(handler, progress_log._CurrentStream) for handler in handlers) == 2
