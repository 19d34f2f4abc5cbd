"""Datasets that need no manual files, prepared on first use by the entry points.

The library only opens prepared splits (`dualfocus_jax.training.input_pipeline.open_split` raises a ValueError
naming the `python -m experiments.prepare_data` command for a missing one) and imports nothing from datasets/.
So that a run from a fresh checkout needs no preparation step, an entry point whose config sets
`input.prepare_if_missing` (configs/demo.py does) calls `prepare_missing_embedded(config)` before it opens
anything: every dataset the config names (input.sources, validation, evals) that is not prepared under the
config's data_dir and needs no manual files (synthetic_focal, focal_engine) is prepared there with
`datasets.common.prepare.prepare_dataset`. Datasets that read the user's files are left to prepare_data.
"""

from __future__ import annotations

from datasets.common.prepare import DATASET_NAMES, needs_manual_dir, prepare_dataset
from dualfocus_jax.prepared_splits import default_data_dir, has_prepared_version, open_split
from dualfocus_jax.training.input_pipeline import ENGINE_DATASET


def needs_no_manual_files(dataset: str) -> bool:
    """Whether `dataset` is one of datasets/ that builds without the user's files (synthetic_focal, focal_engine)."""
    return dataset in DATASET_NAMES and not needs_manual_dir(dataset)


def prepare_if_embedded(dataset: str, *, builder_config: str = "", data_dir: str | None = None) -> bool:
    """Prepares `dataset[/builder_config]` under `data_dir` (None or "": $TFDS_DATA_DIR, else
    ~/tensorflow_datasets) when it is not prepared there and needs no manual files; True when it prepared it."""
    root = default_data_dir(data_dir)
    name = f"{dataset}/{builder_config}" if builder_config else dataset
    if has_prepared_version(root, name) or not needs_no_manual_files(dataset):
        return False
    prepare_dataset(dataset, root, config=builder_config or None)
    return True


def open_split_preparing(dataset: str, split: str, *, builder_config: str = "", data_dir: str | None = None):
    """`open_split`, the dataset prepared first if it is missing and needs no manual files."""
    prepare_if_embedded(dataset, builder_config=builder_config, data_dir=data_dir)
    return open_split(dataset, split, builder_config=builder_config, data_dir=data_dir)


def datasets_read(config) -> list[tuple[str, str]]:
    """(dataset, builder_config) of every split an experiment config reads, in order and without repeats: its
    training sources (not the engine's, drawn on the fly), its validation (when set) and its evaluations."""
    blocks = [source for source in config.input.sources.values() if source.dataset != ENGINE_DATASET]
    blocks += [config.validation, *config.evals.values()]
    named = [(block.dataset, block.get("builder_config", "") or "") for block in blocks if block.dataset]
    return list(dict.fromkeys(named))


def prepare_missing_embedded(config) -> list[str]:
    """With `config.input.prepare_if_missing`, prepares each dataset the config reads that is missing under
    `config.input.data_dir` and needs no manual files; returns the names it prepared (none without the flag)."""
    if not config.input.get("prepare_if_missing", False):
        return []
    prepared = []
    for dataset, builder_config in datasets_read(config):
        if prepare_if_embedded(dataset, builder_config=builder_config, data_dir=config.input.data_dir):
            prepared.append(f"{dataset}/{builder_config}" if builder_config else dataset)
    return prepared
