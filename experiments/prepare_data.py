"""Prepares a focal-stack dataset to array_record, without TensorFlow.

    python -m experiments.prepare_data --dataset=synthetic_focal --data_dir=~/tensorflow_datasets
    python -m experiments.prepare_data --dataset=fod500 --manual_dir=/data/fs_6_parent --data_dir=...
    python -m experiments.prepare_data --dataset=nyuv2_focal --config=10_slices --manual_dir=... --data_dir=...

Each dataset's README (datasets/<name>/README.md) says what to put in --manual_dir. Read the result with
`tfds.data_source("<name>[/<config>]", data_dir=...)`. The preparation writes into a temporary folder that
is renamed only when complete, so an interrupted run never leaves a dataset that looks finished.
"""

from __future__ import annotations

import sys
import time

from absl import app, flags

from datasets.common.prepare import DATASET_NAMES

FLAGS = flags.FLAGS
flags.DEFINE_enum("dataset", None, list(DATASET_NAMES), "Dataset to prepare.")
flags.DEFINE_string("data_dir", None, "Root folder of prepared datasets (the TFDS data_dir).")
flags.DEFINE_string("manual_dir", None, "Folder with the dataset's source files (not needed for synthetic_focal).")
flags.DEFINE_string("config", None, "Builder config, e.g. 5_slices / 10_slices for nyuv2_focal; default if unset.")
flags.DEFINE_bool("overwrite", False, "Rebuild even if a prepared copy already exists.")
flags.mark_flags_as_required(["dataset", "data_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from datasets.common.prepare import prepare_dataset

    start = time.perf_counter()
    try:
        builder = prepare_dataset(FLAGS.dataset, FLAGS.data_dir, manual_dir=FLAGS.manual_dir, config=FLAGS.config,
                                  overwrite=FLAGS.overwrite)
    except ValueError as error:  # bad input (missing or corrupt files, unknown config): the message is the help
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
    sizes = ", ".join(f"{split}: {info.num_examples}" for split, info in sorted(builder.info.splits.items()))
    print(f"Prepared {builder.info.full_name} in {time.perf_counter() - start:.1f} s at {builder.data_path} ({sizes}).")


if __name__ == "__main__":
    app.run(main)
