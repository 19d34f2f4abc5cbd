"""Prepared TFDS datasets on disk: where they live and how a split is opened (training and evaluation read
them alike). Only opens what `python -m experiments.prepare_data` prepared; the library prepares nothing.
"""

from __future__ import annotations

import os

# The datasets of datasets/ that read the user's files (`datasets.common.prepare.needs_manual_dir`), for the
# message about one that is not prepared; the library imports nothing from datasets/, and
# tests/test_dataset_common.py checks that this list agrees with the builders.
MANUAL_DATASETS = ("fod500", "ddff12", "nyuv2_focal", "arkitscenes_focal", "mobile_depth", "hci_lightfield")
# The datasets whose focus positions are disparities, not distances (their builders' focus_unit metadata; the
# same test checks this list): a model averaging over inverse focus distance cannot train on them.
DISPARITY_FOCUS_DATASETS = ("ddff12", "hci_lightfield")


def works_in_inverse_distance(expectation: str, slice_prior: str) -> bool:
    """Whether a model takes 1/focus: an expectation over inverse focus distance, or slice weights by it."""
    return expectation == "inverse_focus" or slice_prior == "blur_cells"


def disparity_focus_conflict(dataset: str | None, expectation: str, slice_prior: str) -> str | None:
    """None, or why a model that works in inverse focus distance (`DualFocusConfig.expectation="inverse_focus"`
    or `slice_prior="blur_cells"`, both take 1/focus) cannot TRAIN on `dataset`'s disparity focus values (its
    depth loss compares the network's own depth with the ground truth). Evaluation and prediction handle such
    values (`evaluation.evaluate.prediction_function(..., blur_linear_focus=True)`, `--focus_unit disparity`)."""
    settings = [name for name, used in (("expectation='inverse_focus'", expectation == "inverse_focus"),
                                        ("slice_prior='blur_cells'", slice_prior == "blur_cells")) if used]
    if not settings or dataset not in DISPARITY_FOCUS_DATASETS:
        return None
    return (f"{dataset} gives focus positions as disparities, but the model's {' and '.join(settings)} need focus "
            "distances (> 0) to train on; train on it a model with expectation='focus' and slice_prior='none' "
            "(e.g. from dualfocus_jax/pretrained/small_engine_stage5_guided). Evaluating any model on it works.")


def default_data_dir(data_dir: str | None) -> str:
    """The TFDS data_dir: the config's value, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (expanded)."""
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.abspath(os.path.expanduser(chosen))


def open_split(dataset: str, split: str, *, builder_config: str = "", data_dir: str | None = None):
    """Random-access records (a sequence of dicts) of `dataset[/builder_config]` `split` (TFDS split syntax).

    Only opens a prepared dataset: one that is missing raises a ValueError naming the `python -m
    experiments.prepare_data` command that prepares it. (Datasets that need no manual files, such as the
    embedded `synthetic_focal`, are prepared on first use by the entry points, before they open anything:
    `experiments.data_setup.prepare_missing_embedded`; this library imports nothing from datasets/.)
    """
    import tensorflow_datasets as tfds  # TFDS only to open prepared splits: in-memory records need none

    root = default_data_dir(data_dir)
    name = f"{dataset}/{builder_config}" if builder_config else dataset
    try:
        if not has_prepared_version(root, name):
            # Checked here rather than left to TFDS: a version folder without dataset_info.json (an
            # interrupted or foreign preparation) makes TFDS assume TFRecord and fail with a confusing error.
            raise FileNotFoundError(f"no prepared version of {name} under {root}")
        return tfds.data_source(name, split=split, data_dir=root, download=False)
    except (FileNotFoundError, AssertionError, ValueError, tfds.core.registered.DatasetNotFoundError) as error:
        if not _is_missing_dataset(error):
            raise
        manual = dataset in MANUAL_DATASETS
        raise ValueError(
            f"dataset {name!r} is not prepared under {root}; run `python -m experiments.prepare_data "
            f"--dataset={dataset}{' --config=' + builder_config if builder_config else ''}"
            f"{' --manual_dir=<folder with its source files>' if manual else ''} --data_dir={root}`"
            f"{f' (datasets/{dataset}/README.md says what goes in --manual_dir)' if manual else ''}, "
            "or set input.data_dir.") from error


def has_prepared_version(root: str, name: str) -> bool:
    """Whether `root/name/<version>/dataset_info.json` exists for some version (`name`: dataset[/config])."""
    folder = os.path.join(root, *name.split("/"))
    if not os.path.isdir(folder):
        return False
    return any(os.path.isfile(os.path.join(folder, version, "dataset_info.json")) for version in os.listdir(folder))


def _is_missing_dataset(error: Exception) -> bool:
    import tensorflow_datasets as tfds  # as in open_split

    if isinstance(error, (FileNotFoundError, tfds.core.registered.DatasetNotFoundError)):
        return True
    text = str(error).lower()
    return "not found" in text or "does not exist" in text or "no such file" in text or "not prepared" in text
