"""Prepares a dataset of this project to array_record without TensorFlow (the library side of
`python -m experiments.prepare_data`).

Nothing finished is ever lost or half-replaced:

* The dataset is built beside the finished one, in a temporary folder `incomplete.prepare.<id>/` of the
  same config folder (`<data_dir>/<name>[/<config>]/`), and moved to `<version>/` only when complete; with
  `overwrite` the finished copy is swapped for the new one at that moment (one atomic exchange where the
  filesystem allows it). So an interrupted or failed rebuild, at any point, leaves the previous dataset as it
  was, and an interrupted first preparation leaves no folder that looks finished.
* One preparation of a dataset at a time: an exclusive lock on `prepare.lock` in that config folder. A second
  preparation waits (saying which process and which lock file), then reuses what the first prepared. The OS
  releases the lock when its process ends, so a killed preparation never blocks the next one; the next one
  also deletes the temporary folders killed runs left behind.
"""

from __future__ import annotations

import errno
import importlib
import os
import shutil
import time
from pathlib import Path

import tensorflow_datasets as tfds

from datasets.common.manual_dir import manual_dir_path
from datasets.common.safe_replace import (
    INFO_FILE,
    is_finished,
    new_temp_folder,
    notify_stderr,
    preparation_lock,
    put_back,
    restore_moved_aside,
    swap_into_place,
)

LOCK_NAME = "prepare.lock"


class PreparationInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM turned into KeyboardInterrupt) during a preparation; the message says what is on
    disk. A KeyboardInterrupt, so callers that stop on Ctrl-C still do."""

DATASET_NAMES = (
    "synthetic_focal",
    "focal_engine",
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
                    config: str | None = None, overwrite: bool = False, notify=notify_stderr,
                    wait_timeout_s: float | None = None):
    """Writes dataset `name` as array_record under `data_dir` and returns its builder.

    Args:
      name: one of DATASET_NAMES.
      data_dir: root folder of prepared datasets (what `tfds.data_source(..., data_dir=...)` reads).
      manual_dir: folder with the user's source files (see the dataset's README); checked completely
        before anything is decoded.
      config: builder config name (e.g. "5_slices"); None for the builder's default.
      overwrite: rebuild even if a finished copy exists (otherwise an existing one is reused). The finished
        copy stays readable until the new one replaces it.
      notify: called with one line when the build starts, when this call waits for another preparation and
        when it repairs what a killed one left.
      wait_timeout_s: how long to wait for another process preparing the same dataset (None: as long as it
        takes; 0: not at all); beyond it `safe_replace.LockWaitTimeout` (a RuntimeError) says who holds it.

    Returns:
      The prepared `tfds.core.DatasetBuilder` (`.data_path` is the folder, `.info.splits` the sizes).

    Raises:
      ValueError: unknown config, empty data_dir, missing or corrupt manual files (the message is the help).
      PreparationInterrupted: Ctrl-C; its message says that the previous copy (if any) is unchanged.
    """
    cls = builder_class(name)
    available = config_names(name)
    if config is not None and config not in available:
        raise ValueError(
            f"Dataset {name!r} has no config {config!r}; "
            + (f"choose one of {', '.join(available)}." if available else "it has no configs, leave --config unset."))
    if not data_dir or not os.fspath(data_dir):
        raise ValueError("data_dir is empty; pass the folder the prepared datasets go to (--data_dir=...).")
    data_dir = os.path.abspath(os.path.expanduser(os.fspath(data_dir)))
    manual_path = None
    if needs_manual_dir(name):
        manual_path = manual_dir_path(manual_dir, name, cls.MANUAL_DOWNLOAD_INSTRUCTIONS)
    builder = cls(config=config, data_dir=data_dir, file_format="array_record")
    if manual_path is not None:
        # Pre-flight: the same check `_split_generators` runs, but before any folder is created.
        builder.check_manual_dir(manual_path)
    final = Path(os.fspath(builder.data_path))
    what = f"{builder.info.full_name} in {data_dir}"
    final.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    with preparation_lock(final.parent / LOCK_NAME, what, notify=notify, timeout_s=wait_timeout_s) as waited:
        if waited is not None:  # locked: no other preparation is running, repair what killed ones left
            restore_moved_aside(final.parent, final, notify)
        if is_finished(final):
            if not overwrite:
                return _prepared_builder(cls, config, data_dir)
            if waited and os.path.getmtime(final / INFO_FILE) >= started:
                notify(f"note: another process rebuilt {what} while this one waited; using that copy")
                return _prepared_builder(cls, config, data_dir)
        had_copy = is_finished(final)
        _build_and_swap(cls, config, data_dir, final, manual_path, had_copy=had_copy, overwrite=overwrite,
                        locked=waited is not None, notify=notify)
    return _prepared_builder(cls, config, data_dir)


def _build_and_swap(cls, config, data_dir: str, final: Path, manual_path, *, had_copy: bool, overwrite: bool,
                    locked: bool, notify) -> None:
    temp = new_temp_folder(final.parent)
    swapped = False
    try:
        staging = cls(config=config, data_dir=os.fspath(temp), file_format="array_record")
        # TFDS would name the temporary folder as the dataset's place ("prepared to ..."); say it once here.
        staging._log_download_bytes = staging._log_download_done = lambda: None
        notify(f"preparing {staging.info.full_name} in {temp} (moved to {final} when complete"
               + (", replacing the copy there)" if had_copy else ")"))
        download_config = tfds.download.DownloadConfig(
            manual_dir=os.fspath(manual_path) if manual_path is not None else None,
            download_mode=tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
        staging.download_and_prepare(download_config=download_config)
        _copy_default_config_name(temp / cls.name, Path(data_dir) / cls.name)
        try:
            swap_into_place(os.fspath(staging.data_path), final, temp)
        except OSError as error:
            # Only without a lock (a filesystem that refuses them) can another process have finished first.
            if locked or error.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not is_finished(final) or overwrite:
                raise
        swapped = True
    except KeyboardInterrupt:
        if swapped:
            raise PreparationInterrupted(f"interrupted after the new copy was in place at {final}") from None
        raise PreparationInterrupted(
            f"interrupted; the previous copy at {final} is unchanged" if had_copy
            else f"interrupted; nothing was prepared at {final}") from None
    finally:
        put_back(temp, final)  # a failed fallback swap: the old copy goes back before temp is deleted
        shutil.rmtree(temp, ignore_errors=True)


def _copy_default_config_name(staging_dataset_dir: Path, dataset_dir: Path) -> None:
    """TFDS records the default config in `<data_dir>/<name>/.config/`; the staging build wrote it under the
    temporary data_dir, and datasets read without a config name need it in the real one."""
    source = staging_dataset_dir / ".config"
    if not source.is_dir():
        return
    target = dataset_dir / ".config"
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file():
            partial = target / f".{item.name}.{os.getpid()}.tmp"
            shutil.copyfile(item, partial)
            os.replace(partial, target / item.name)


def _prepared_builder(cls, config, data_dir: str):
    """A builder of the finished dataset (its info, splits included, read from disk)."""
    return cls(config=config, data_dir=data_dir, file_format="array_record")
