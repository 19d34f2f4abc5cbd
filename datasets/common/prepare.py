"""Prepares a dataset of this project to array_record without TensorFlow (the library side of
`python -m experiments.prepare_data`).

TFDS writes into `<data_dir>/<name>/<config>/incomplete.<random>_<version>/` and renames that folder to
`<version>/` only after every split is written and `dataset_info.json` is saved; on an exception it deletes
the temporary folder. So an interrupted preparation never leaves a folder that `tfds.data_source` takes
for a finished dataset (a process killed outright may leave an `incomplete.*` folder behind, which TFDS
ignores and which can be deleted).
"""

from __future__ import annotations

import importlib
import os

from datasets.common.manual_dir import manual_dir_path

DATASET_NAMES = (
    "synthetic_focal",
    "fod500",
    "ddff12",
    "nyuv2_focal",
    "arkitscenes_focal",
    "mobile_depth",
    "hci_lightfield",
)


def builder_class(name: str):
    """The `Builder` class of `datasets/<name>/<name>_dataset_builder.py`."""
    if name not in DATASET_NAMES:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}.")
    module = importlib.import_module(f"datasets.{name}.{name}_dataset_builder")
    return module.Builder


def config_names(name: str) -> tuple[str, ...]:
    """Names of the builder configs of dataset `name` (empty when it has a single variant)."""
    return tuple(config.name for config in (builder_class(name).BUILDER_CONFIGS or ()))


def needs_manual_dir(name: str) -> bool:
    """Whether the dataset reads the user's files (all but the embedded `synthetic_focal`)."""
    return bool(getattr(builder_class(name), "MANUAL_DOWNLOAD_INSTRUCTIONS", None))


def prepare_dataset(name: str, data_dir: str | os.PathLike, *, manual_dir: str | os.PathLike | None = None,
                    config: str | None = None, overwrite: bool = False):
    """Writes dataset `name` as array_record under `data_dir` and returns its builder.

    Args:
      name: one of DATASET_NAMES.
      data_dir: root folder of prepared datasets (what `tfds.data_source(..., data_dir=...)` reads).
      manual_dir: folder with the user's source files (see the dataset's README); checked completely
        before anything is decoded.
      config: builder config name (e.g. "5_slices"); None for the builder's default.
      overwrite: rebuild even if a finished copy exists (otherwise an existing one is reused).

    Returns:
      The prepared `tfds.core.DatasetBuilder` (`.data_path` is the folder, `.info.splits` the sizes).
    """
    import tensorflow_datasets as tfds

    cls = builder_class(name)
    available = config_names(name)
    if config is not None and config not in available:
        raise ValueError(
            f"Dataset {name!r} has no config {config!r}; "
            + (f"choose one of {', '.join(available)}." if available else "it has no configs, leave --config unset."))
    if not data_dir or not os.fspath(data_dir):
        raise ValueError("data_dir is empty; pass the folder the prepared datasets go to (--data_dir=...).")
    manual_path = None
    if needs_manual_dir(name):
        manual_path = manual_dir_path(manual_dir, name, cls.MANUAL_DOWNLOAD_INSTRUCTIONS)
    builder = cls(config=config, data_dir=os.fspath(data_dir), file_format="array_record")
    if manual_path is not None:
        # Pre-flight: the same check `_split_generators` runs, but before TFDS creates any folder.
        builder.check_manual_dir(manual_path)
    mode = (tfds.download.GenerateMode.FORCE_REDOWNLOAD if overwrite
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    download_config = tfds.download.DownloadConfig(
        manual_dir=os.fspath(manual_path) if manual_path is not None else None, download_mode=mode)
    builder.download_and_prepare(download_config=download_config)
    return builder

