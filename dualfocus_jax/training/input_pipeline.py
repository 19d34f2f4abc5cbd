"""Training input: `tfds.data_source` (array_record, random access) → grain, deterministic and checkpointable.

The global batch sequence is a pure function of the config and the seed, whatever the number of processes:

    per source: records → shuffle(seed, reshuffled every epoch) → repeat → random_map(augment, seed)
    mix sources by weight → batch(local batch) → keep every process_count-th batch from process_index

so global batch g is the concatenation, in process order, of local batches g·P … g·P + P − 1, which is what
`jax.make_array_from_process_local_data` assembles. One process with the global batch and two processes with
half of it each see the same examples with the same augmentation (the augmentation's generator is seeded by
the element's position in the mixed sequence, not by the process). Each process reads and augments only its
own examples. The iterator's position is a small dict (`get_state`/`set_state`) saved with every checkpoint.
"""

from __future__ import annotations

import os

import grain
import numpy as np

from dualfocus_jax.training.augment import AugmentSettings, training_example

BATCH_KEYS = ("stack", "focus", "depth", "valid")


def default_data_dir(data_dir: str | None) -> str:
    """The TFDS data_dir: the config's value, else $TFDS_DATA_DIR, else ~/tensorflow_datasets (expanded)."""
    chosen = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return os.path.abspath(os.path.expanduser(chosen))


def open_split(dataset: str, split: str, *, builder_config: str = "", data_dir: str | None = None,
               prepare_if_missing: bool = False):
    """Random-access records (a sequence of dicts) of `dataset[/builder_config]` `split` (TFDS split syntax).

    `prepare_if_missing` prepares datasets that need no manual files (the embedded `synthetic_focal`) on
    first use, so the demo runs from a fresh checkout; other datasets must be prepared first with
    `python -m experiments.prepare_data` and raise a ValueError saying so.
    """
    import tensorflow_datasets as tfds

    root = default_data_dir(data_dir)
    name = f"{dataset}/{builder_config}" if builder_config else dataset
    try:
        if not _has_prepared_version(root, name):
            # Checked here rather than left to TFDS: a version folder without dataset_info.json (an
            # interrupted or foreign preparation) makes TFDS assume TFRecord and fail with a confusing error.
            raise FileNotFoundError(f"no prepared version of {name} under {root}")
        return tfds.data_source(name, split=split, data_dir=root, download=False)
    except (FileNotFoundError, AssertionError, ValueError, tfds.core.registered.DatasetNotFoundError) as error:
        missing = _is_missing_dataset(error)
        if not missing:
            raise
        if prepare_if_missing:
            from datasets.common.prepare import needs_manual_dir, prepare_dataset

            if not needs_manual_dir(dataset):
                prepare_dataset(dataset, root, config=builder_config or None)
                return tfds.data_source(name, split=split, data_dir=root, download=False)
        raise ValueError(
            f"dataset {name!r} is not prepared under {root}; run `python -m experiments.prepare_data "
            f"--dataset={dataset}{' --config=' + builder_config if builder_config else ''} --data_dir={root}` "
            "(see datasets/<name>/README.md for the files it needs), or set input.data_dir.") from error


def _has_prepared_version(root: str, name: str) -> bool:
    """Whether `root/name/<version>/dataset_info.json` exists for some version."""
    folder = os.path.join(root, *name.split("/"))
    if not os.path.isdir(folder):
        return False
    return any(os.path.isfile(os.path.join(folder, version, "dataset_info.json")) for version in os.listdir(folder))


def _is_missing_dataset(error: Exception) -> bool:
    import tensorflow_datasets as tfds

    if isinstance(error, (FileNotFoundError, tfds.core.registered.DatasetNotFoundError)):
        return True
    text = str(error).lower()
    return "not found" in text or "does not exist" in text or "no such file" in text or "not prepared" in text


def source_settings(source_config, input_config) -> AugmentSettings:
    """`AugmentSettings` of one `input.sources.<name>` block; crop and slice count are shared by all sources
    (one batch needs one shape)."""
    crop = tuple(int(v) for v in input_config.crop_size)
    return AugmentSettings(
        num_slices=int(input_config.num_slices),
        slice_sampling=source_config.slice_sampling,
        crop_hw=crop,
        min_valid_fraction=float(source_config.min_valid_fraction),
        max_crop_tries=int(input_config.max_crop_tries),
        flip_horizontal=bool(input_config.flip_horizontal),
        flip_vertical=bool(input_config.flip_vertical),
        depth_scale=float(source_config.depth_scale),
    )


def stacked_batch(examples) -> dict[str, np.ndarray]:
    """Stacks a list of model inputs into a batch dict of (b, ...) arrays (all examples share one shape)."""
    shapes = {tuple(example["stack"].shape) for example in examples}
    if len(shapes) != 1:
        raise ValueError(f"examples of one batch have different shapes {sorted(shapes)}; set input.crop_size "
                         "so every training example is cropped to one size.")
    return {key: np.stack([example[key] for example in examples]) for key in BATCH_KEYS}


def training_dataset(input_config, *, seed: int, process_index: int = 0, process_count: int = 1,
                     records_by_source: dict | None = None) -> grain.MapDataset:
    """An infinite `grain.MapDataset` of this process's local batches (dicts of BATCH_KEYS arrays).

    Args:
      input_config: the config's `input` block (batch_size is the *global* batch).
      seed: shuffling and augmentation seed.
      process_index, process_count: this process and the number of processes.
      records_by_source: optional {source name: random-access records}, instead of opening the TFDS splits
        (tests and notebooks pass in-memory examples).
    """
    global_batch = int(input_config.batch_size)
    if global_batch % process_count:
        raise ValueError(f"input.batch_size={global_batch} is not divisible by the {process_count} processes; "
                         "choose a multiple of the process count.")
    if not input_config.sources:
        raise ValueError("input.sources is empty; name at least one dataset to train on.")
    datasets, weights = [], []
    for index, (name, source) in enumerate(sorted(input_config.sources.items())):
        records = (records_by_source or {}).get(name)
        if records is None:
            records = open_split(source.dataset, source.split, builder_config=source.builder_config,
                                 data_dir=input_config.data_dir, prepare_if_missing=input_config.prepare_if_missing)
        if len(records) == 0:
            raise ValueError(f"source {name!r} ({source.dataset} {source.split}) has no examples.")
        settings = source_settings(source, input_config)
        # Shuffled, then repeated: repeat reseeds the shuffle every epoch.
        dataset = grain.MapDataset.source(records).shuffle(seed=seed + 1000 * index).repeat()
        datasets.append(dataset.map(_Tagged(settings)))
        weights.append(float(source.weight))
    mixed = datasets[0] if len(datasets) == 1 else grain.MapDataset.mix(datasets, weights)
    # Augment after mixing: the generator of element i is seeded by (seed, i), independent of processes.
    augmented = mixed.random_map(_augment, seed=seed)
    local_batch = global_batch // process_count
    batches = augmented.batch(local_batch, drop_remainder=True, batch_fn=stacked_batch)
    return batches[process_index::process_count]


class _Tagged:
    """Attaches a source's AugmentSettings to its records (a picklable callable, for grain workers)."""

    def __init__(self, settings: AugmentSettings):
        self.settings = settings

    def __call__(self, record):
        return record, self.settings


def _augment(tagged, rng: np.random.Generator) -> dict:
    record, settings = tagged
    return training_example(record, rng, settings)


def training_iterator(input_config, *, seed: int, process_index: int = 0, process_count: int = 1,
                      records_by_source: dict | None = None) -> grain.DatasetIterator:
    """A checkpointable iterator over `training_dataset` (threads prefetch `input.prefetch` batches)."""
    dataset = training_dataset(input_config, seed=seed, process_index=process_index, process_count=process_count,
                               records_by_source=records_by_source)
    options = grain.ReadOptions(num_threads=int(input_config.num_threads),
                                prefetch_buffer_size=int(input_config.prefetch))
    return iter(dataset.to_iter_dataset(options))
