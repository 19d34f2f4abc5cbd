"""Prepares a focal-stack dataset to array_record, without TensorFlow.

    python -m experiments.prepare_data --dataset=synthetic_focal --data_dir=~/tensorflow_datasets
    python -m experiments.prepare_data --dataset=fod500 --manual_dir=/data/fs_6_parent --data_dir=...
    python -m experiments.prepare_data --dataset=nyuv2_focal --config=10_slices --manual_dir=... --data_dir=...

Each dataset's README (datasets/<name>/README.md) says what to put in --manual_dir. Read the result with
`tfds.data_source("<name>[/<config>]", data_dir=...)`.

The preparation is built in a temporary folder beside the finished dataset and moved into place only when
complete, so an interrupted run (Ctrl-C, SIGTERM, a kill, a full disk) never leaves a dataset that looks
finished, and `--overwrite` keeps the previous copy readable until the new one replaces it. A second
preparation of the same dataset waits for the first (naming the lock file) and then reuses its result;
`--wait_timeout_s=0` makes it stop at once instead. Failures end with one `error: ...` line on stderr and a
non-zero exit status (`--verbosity=1` adds the traceback); library logs are shown from WARNING up unless
--verbosity is given.
"""

from __future__ import annotations

import signal
import sys
import time
import traceback

from absl import flags, logging

from datasets.common.manual_dir import ManualDirError
from datasets.common.prepare import DATASET_NAMES, PreparationInterrupted, prepare_dataset
from datasets.common.safe_replace import LockWaitTimeout
from dualfocus_jax.command_flags import run_with_jax_flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", None, list(DATASET_NAMES), "Dataset to prepare.")
flags.DEFINE_string("data_dir", None, "Root folder of prepared datasets (the TFDS data_dir).")
flags.DEFINE_string("manual_dir", None, "Folder with the dataset's source files (not needed for synthetic_focal).")
flags.DEFINE_string("config", None, "Builder config, e.g. 5_slices / 10_slices for nyuv2_focal; default if unset.")
flags.DEFINE_bool("overwrite", False, "Rebuild even if a prepared copy already exists (it stays readable until "
                  "the new one replaces it).")
flags.DEFINE_float("wait_timeout_s", None, "How long to wait for another process preparing the same dataset "
                   "(unset: until it finishes; 0: stop at once).")
flags.mark_flags_as_required(["dataset", "data_dir"])


def fail(message: str, status: int = 1):
    """Prints one `error: ...` message on stderr and exits (the traceback too with --verbosity ≥ 1)."""
    if FLAGS["verbosity"].present and FLAGS.verbosity >= 1 and sys.exc_info()[0]:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(status)


def command_line(*, manual_dir: str | None = None) -> str:
    """This command, complete, with `manual_dir` as --manual_dir."""
    parts = ["python -m experiments.prepare_data", f"--dataset={FLAGS.dataset}"]
    if FLAGS.config:
        parts.append(f"--config={FLAGS.config}")
    if manual_dir:
        parts.append(f"--manual_dir={manual_dir}")
    parts.append(f"--data_dir={FLAGS.data_dir}")
    if FLAGS.overwrite:
        parts.append("--overwrite")
    return " ".join(parts)


def terminate_as_interrupt(signum, frame):
    """SIGTERM (a scheduler, `kill`) ends the run like Ctrl-C, so the temporary folder is deleted."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv):
    if len(argv) > 1:
        fail(f"unexpected arguments: {argv[1:]}", status=2)
    if not FLAGS["verbosity"].present:  # absl/TFDS INFO lines would bury the progress and the result
        logging.set_verbosity(logging.WARNING)
    signal.signal(signal.SIGTERM, terminate_as_interrupt)
    start = time.perf_counter()
    try:
        builder = prepare_dataset(FLAGS.dataset, FLAGS.data_dir, manual_dir=FLAGS.manual_dir, config=FLAGS.config,
                                  overwrite=FLAGS.overwrite, wait_timeout_s=FLAGS.wait_timeout_s)
    except ManualDirError as error:  # the message says what goes there
        text = str(error)
        if not FLAGS.manual_dir:
            _, _, instructions = text.partition("\n")
            text = (f"{FLAGS.dataset} reads its source files from a folder you pass as --manual_dir; run\n"
                    f"  {command_line(manual_dir='/path/to/folder')}\n{instructions}").rstrip()
        fail(text)
    except ValueError as error:  # bad input (corrupt files, unknown config): the message is the help
        fail(str(error))
    except LockWaitTimeout as error:
        fail(str(error))
    except PreparationInterrupted as error:
        fail(str(error), status=130)
    except KeyboardInterrupt:  # before the preparation started: nothing was written
        fail("interrupted; nothing was changed", status=130)
    except OSError as error:  # a full disk, a file-size limit, a read-only data_dir
        where = f": {error.filename}" if error.filename else ""
        fail(f"cannot prepare {FLAGS.dataset} under {FLAGS.data_dir}: {error.strerror or error}{where}; "
             "the previous copy, if any, is unchanged and the partial one was deleted")
    except Exception as error:  # noqa: BLE001 - a builder's failure: one message, traceback on request
        fail(f"preparing {FLAGS.dataset} failed: {type(error).__name__}: {error} (the previous copy, if any, is "
             "unchanged; --verbosity=1 shows the traceback)")
    sizes = ", ".join(f"{split}: {info.num_examples}" for split, info in sorted(builder.info.splits.items()))
    print(f"Prepared {builder.info.full_name} in {time.perf_counter() - start:.1f} s at {builder.data_path} ({sizes}).")


if __name__ == "__main__":
    run_with_jax_flags(main)
