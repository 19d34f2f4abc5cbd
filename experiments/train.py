"""Trains and/or evaluates DualFocus from an experiment config.

    python -m experiments.train --config configs/demo.py --workdir runs/train_demo
    python -m experiments.train --config configs/fod500.py:runlocal --workdir /tmp/smoke
    python -m experiments.train --config configs/nyuv2.py --workdir runs/nyuv2 --config.optimizer.lr=3e-4
    python -m experiments.train --config configs/arkitscenes_zero_shot.py --workdir runs/nyuv2 --mode=eval
    python -m experiments.train --workdir runs/nyuv2 --mode=eval     # the evaluations of the run's own config

Re-running the same command resumes from the latest checkpoint in --workdir (the workdir records the
resolved config in config.json; a resume with another model or optimizer stops and lists the differences).
--mode=eval without --config evaluates with that recorded config; `--config=configs/recorded.py:W` is the
same config with --config.<field> overrides.
Multi-host: pass --multiprocess (on TPU/GPU clusters `jax.distributed.initialize()` discovers the rest), or
give --coordinator_address/--num_processes/--process_id explicitly (e.g. two CPU processes on localhost,
which use gloo collectives). JAX's options are flags too: `--jax_platforms=cpu`, `--jax_enable_x64`, ... (the
names of jax.config), parsed with the others and applied before anything runs.

A user error (a misspelt override, a dataset not prepared, --mode=eval without a checkpoint, a run that
diverges, a full disk, a damaged or foreign checkpoint) ends with one `error: ...` line on stderr and exit
status 1, no traceback. Library logs (absl, orbax, TFDS) are shown from WARNING up; `--verbosity=0` shows
their INFO lines, `--verbosity=1` also prints the traceback of an error.
"""

from __future__ import annotations

import logging as std_logging
import sys
import traceback

import jax
from absl import flags, logging
from ml_collections import config_flags

from dualfocus_jax.command_flags import run_with_jax_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py[:arg]); --mode=eval without "
                                "it reads the one recorded in <workdir>/config.json.", lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, metric logs and evaluation reports.")
flags.DEFINE_enum("mode", "train_and_eval", ["train", "eval", "train_and_eval"], "What to run.")
flags.DEFINE_bool("multiprocess", False, "Call jax.distributed.initialize() (multi-host run).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (implies --multiprocess).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
flags.mark_flags_as_required(["workdir"])


def fail(message: str, status: int = 1):
    """Prints one `error: ...` message on stderr and exits (the traceback too with --verbosity ≥ 1)."""
    if "verbosity" in FLAGS and FLAGS["verbosity"].present and FLAGS.verbosity >= 1 and sys.exc_info()[0]:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr, flush=True)
    _ERROR_REPORTED.append(message)
    sys.exit(status)


def one_message(text: str) -> str:
    """A flag or config error in one piece: absl embeds the traceback of a failing config file in the message;
    keep its first line and the exception at its end."""
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    if any(line.startswith("Traceback") for line in lines):
        lines = [lines[0], lines[-1]]
    return " ".join(lines)


class DropReportedTracebacks(std_logging.Filter):
    """Drops the tracebacks orbax and asyncio log when a checkpoint write fails (a full disk makes every pending
    array write log one): that failure reaches the user as one CheckpointWriteError message instead. Also drops
    orbax's timing note about waiting for the previous save, which a small run on a slow disk prints at every
    checkpoint and which asks nothing of the user."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        from_libraries = "/orbax/" in record.pathname or record.name == "asyncio"
        if from_libraries and "Waiting for previous save" in str(record.msg):
            return False
        return not (from_libraries and record.exc_info)


# The message fail() has printed, if any: once the user has their one error line, the process is ending.
_ERROR_REPORTED: list[str] = []


def _from_orbax_coroutine(item) -> bool:
    """An orbax coroutine: one abandoned by a failed read or write (a damaged checkpoint tried at resume), whose
    failure the restore or save has already handled and reported."""
    code = getattr(item, "cr_code", None)
    return code is not None and "/orbax/" in code.co_filename


def ignore_closed_loop_callbacks(unraisablehook):
    """sys.unraisablehook that stays silent about 'Event loop is closed', which tensorstore write callbacks
    raise (one per pending array) when a failed checkpoint save has already closed orbax's event loop, and
    about orbax coroutines abandoned by a failed read (a damaged checkpoint tried at resume prints 'Exception
    ignored in: <coroutine ...>' with a traceback when the coroutine is collected), and about anything raised
    while the interpreter shuts down after fail() has told the error; --verbosity ≥ 1 shows them all."""

    def hook(unraisable):
        if isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed":
            return
        verbose = "verbosity" in FLAGS and FLAGS["verbosity"].present and FLAGS.verbosity >= 1
        if not verbose and (_ERROR_REPORTED or _from_orbax_coroutine(unraisable.object)):
            return
        unraisablehook(unraisable)

    return hook


def quiet_library_logs() -> None:
    """The default (no --verbosity): absl, orbax and TFDS log from WARNING up, without the duplicate tracebacks
    of a failed save."""
    logging.set_verbosity(logging.WARNING)
    for handler in std_logging.getLogger().handlers + [logging.get_absl_handler()]:
        handler.addFilter(DropReportedTracebacks())
    sys.unraisablehook = ignore_closed_loop_callbacks(sys.unraisablehook)


def parse_flags(argv):
    """absl's flag parsing, with its failures (including a --config.<field> override that names no field,
    which ml_collections raises as AttributeError/KeyError) turned into one message."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        if "Unknown command line flag 'config." in str(error):  # an override without --config to apply it to
            fail(f"{one_message(str(error))}: --config.<field> overrides need --config (the config recorded in a "
                 "workdir W is --config=configs/recorded.py:W).", status=2)
        fail(one_message(str(error)) + " (--helpshort lists the flags)", status=2)
    except (AttributeError, KeyError) as error:
        detail = str(error.args[0] if error.args else error).strip()
        if detail[:1] in "'\"" and detail[:1] == detail[-1:]:  # KeyError's repr of its message
            detail = detail[1:-1].replace("\\n", "\n").replace("\\'", "'")
        detail = detail.replace("\n", " ")
        fail(f"a --config.<field> override names no field of the config: {detail}", status=2)
    except (ValueError, TypeError, OSError) as error:
        fail(f"cannot apply the flags: {one_message(str(error))}", status=2)


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {argv[1:]}", status=2)
    if not FLAGS["verbosity"].present:  # library INFO lines would drown the progress lines of the run
        quiet_library_logs()
    try:
        config = FLAGS.config
    except (OSError, ValueError) as error:  # a config file that failed to load (its error was kept for now)
        fail(one_message(str(error)), status=2)
    if config is None and FLAGS.mode != "eval":
        fail(f"--mode={FLAGS.mode} needs --config (a configs/*.py file); only --mode=eval can read the config "
             "recorded in --workdir.", status=2)
    if FLAGS.multiprocess or FLAGS.coordinator_address:
        # CPU processes need a collectives backend for their all-reduces (gloo ships with jaxlib); the
        # setting only concerns the CPU backend, so GPU and TPU runs are unaffected.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                                   process_id=FLAGS.process_id)
    logging.info("JAX %s: process %d of %d, devices %s", jax.__version__, jax.process_index(), jax.process_count(),
                 jax.devices())
    # Imported here, after jax.distributed.initialize (nothing may touch a JAX backend before it).
    from configs.recorded import recorded_config
    from dualfocus_jax.training.checkpointing import CheckpointError
    from dualfocus_jax.training.trainer import train_and_evaluate
    from experiments.data_setup import prepare_missing_embedded

    try:
        if config is None:
            config = recorded_config(FLAGS.workdir)
            config.lock()
            logging.info("--mode=eval with the config recorded in %s", FLAGS.workdir)
        # With input.prepare_if_missing: synthetic_focal etc. prepared on first use, once the config is checked.
        train_and_evaluate(config, FLAGS.workdir, FLAGS.mode, prepare_data=lambda: prepare_missing_embedded(config))
    except (ValueError, FloatingPointError, CheckpointError) as error:  # each carries its whole message
        fail(str(error))
    except KeyboardInterrupt:
        fail("interrupted; the checkpoints written so far are intact and rerunning the same command resumes from "
             "the latest.", status=130)


if __name__ == "__main__":
    run_with_jax_flags(main, flags_parser=parse_flags)
