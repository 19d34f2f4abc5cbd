"""Training input: `tfds.data_source` (array_record, random access) → grain, deterministic and checkpointable.

The global batch sequence is a pure function of the config and the seed, whatever the number of processes:

    per source: records → shuffle(seed, reshuffled every epoch) → repeat
    mix sources by weight → batch shape by position → random_map(augment, seed) → batch(local batch)
    → keep every process_count-th batch from process_index

(When a source serves only some slice counts, `input.sources.<name>.slice_counts`, the batch shape comes
first and each element picks its source among those serving that count; see `_ShapeFirstMix`.)

so global batch g is the concatenation, in process order, of local batches g·P … g·P + P − 1, which is what
`jax.make_array_from_process_local_data` assembles. One process with the global batch and two processes with
half of it each see the same examples with the same augmentation (the augmentation's generator is seeded by
the element's position in the mixed sequence, not by the process). Each process reads and augments only its
own examples. The iterator's position is a small dict (`get_state`/`set_state`) saved with every checkpoint.

Batches of several shapes: `input.slice_counts` and `input.crop_sizes` list the (S, h, w) a batch may have;
global batch g draws its shape from (seed, g), so every example of it (on every process) has that shape and
jit compiles once per listed shape. The source `focal_engine` (`dualfocus_jax.engine`) draws its stacks in
the augmentation step, at the batch's shape; a TFDS source picks S of its slices (`slice_sampling`).
"""

from __future__ import annotations

import dataclasses

import grain
import numpy as np
from absl import flags

from dualfocus_jax.engine import EngineRecords, EngineSettings, draw_focal_stack, is_engine_record
from dualfocus_jax.model_inputs import model_input, stacked_inputs
from dualfocus_jax.prepared_splits import open_split
from dualfocus_jax.training.augment import AugmentSettings, flipped_example, training_example
from dualfocus_jax.training.device_prefetch import quantised_stack, transfer_dtype

BATCH_KEYS = ("stack", "focus", "depth", "valid")
ENGINE_DATASET = "focal_engine"


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
        normalise_focus_range=bool(source_config.get("normalise_focus_range", False)),
    )


def engine_settings(source_config) -> EngineSettings:
    """`EngineSettings` of an `input.sources.<name>` block with dataset "focal_engine"
    (configs.common.engine_source)."""
    engine = source_config.engine
    return EngineSettings(cameras=tuple(engine.cameras), families=tuple(engine.families),
                          spacings=tuple(engine.spacings), coverages=tuple(engine.coverages),
                          psf_shapes=tuple(engine.psf_shapes), blur_range_px=tuple(engine.blur_range_px),
                          detail_zoom_range=tuple(engine.get("detail_zoom_range", (1.0, 1.0))),
                          sharp_coc_px_range=tuple(engine.get("sharp_coc_px_range", (1.0, 1.0))),
                          hard_layer_share=float(engine.get("hard_layer_share", 0.0)),
                          hard_layer_counts=tuple(int(v) for v in engine.get("hard_layer_counts", (8, 24))),
                          window_gaussian_share=float(engine.get("window_gaussian_share", 0.0)),
                          degrade=bool(engine.degrade), max_layers=int(engine.max_layers))


def batch_shapes(input_config) -> tuple[tuple[int, tuple[int, int]], ...]:
    """Every (S, (h, w)) a training batch may have: input.slice_counts × input.crop_sizes (empty lists fall back
    to input.num_slices and input.crop_size)."""
    counts = tuple(int(v) for v in (input_config.get("slice_counts") or ())) or (int(input_config.num_slices),)
    crops = tuple(tuple(int(v) for v in crop) for crop in (input_config.get("crop_sizes") or ())) or (
        tuple(int(v) for v in input_config.crop_size),)
    for count in counts:
        if count < 2:
            raise ValueError(f"input.slice_counts must all be ≥ 2 (a focal stack), got {counts}.")
    return tuple((count, crop) for count in counts for crop in crops)


class _BatchShape:
    """Attaches the shape of its global batch to each element: global batch g holds mixed elements
    g·B … g·B + B − 1 (B the global batch), and draws its (S, crop) from (seed, g)."""

    def __init__(self, shapes, global_batch: int, seed: int):
        self.shapes, self.global_batch, self.seed = shapes, global_batch, seed

    def __call__(self, index, tagged):
        if len(self.shapes) == 1:
            return tagged, self.shapes[0]
        batch_rng = np.random.default_rng([self.seed, 0x5EED, index // self.global_batch])
        return tagged, self.shapes[int(batch_rng.integers(len(self.shapes)))]


def stacked_batch(examples) -> dict[str, np.ndarray]:
    """Stacks a list of model inputs into a batch dict of (b, ...) arrays (all examples share one shape)."""
    shapes = {tuple(example["stack"].shape) for example in examples}
    if len(shapes) != 1:
        raise ValueError(f"examples of one batch have different shapes {sorted(shapes)}; set input.crop_size "
                         "so every training example is cropped to one size.")
    return stacked_inputs(examples, BATCH_KEYS)


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
    shapes = batch_shapes(input_config)
    datasets, weights, served = [], [], []
    for index, (name, source) in enumerate(sorted(input_config.sources.items())):
        records = (records_by_source or {}).get(name)
        engine = None
        if source.dataset == ENGINE_DATASET:
            engine = engine_settings(source)
            records = EngineRecords()
        counts = served_slice_counts(name, source, shapes)
        if engine is None and len(counts) > 1 and source.slice_sampling == "all":
            raise ValueError(f"source {name!r} keeps all its slices (slice_sampling='all') but batches have "
                             f"{sorted({count for count, _ in shapes})} slices; set its slice_sampling to "
                             "'random_sorted' (and slice_counts no larger than its stacks) or train it alone.")
        if records is None:
            records = open_split(source.dataset, source.split, builder_config=source.builder_config,
                                 data_dir=input_config.data_dir)
        if len(records) == 0:
            raise ValueError(f"source {name!r} ({source.dataset} {source.split}) has no examples.")
        settings = source_settings(source, input_config)
        # Shuffled, then repeated: repeat reseeds the shuffle every epoch.
        dataset = grain.MapDataset.source(records).shuffle(seed=seed + 1000 * index).repeat()
        datasets.append(dataset.map(_Tagged(settings, engine)))
        weights.append(float(source.weight))
        served.append(counts)
    all_counts = {count for count, _ in shapes}
    if all(counts == all_counts for counts in served):
        mixed = datasets[0] if len(datasets) == 1 else grain.MapDataset.mix(datasets, weights)
        shaped = mixed.map_with_index(_BatchShape(shapes, global_batch, seed))
    else:
        names = [name for name, _ in sorted(input_config.sources.items())]
        for count in sorted(all_counts):
            if not any(count in counts for counts in served):
                raise ValueError(f"batches of {count} slices have no source: every source's slice_counts "
                                 f"({dict(zip(names, [sorted(c) for c in served]))}) leaves {count} out; add "
                                 f"{count} to a source's slice_counts or remove it from input.slice_counts.")
        positions = grain.MapDataset.range(0, _ENDLESS)
        shaped = positions.map_with_index(_ShapeFirstMix(datasets, weights, served,
                                                         _BatchShape(shapes, global_batch, seed), seed))
    # Augment after mixing: the generator of element i is seeded by (seed, i), independent of processes.
    augmented = shaped.random_map(_augment, seed=seed)
    stack_dtype = transfer_dtype(str(input_config.get("stack_dtype", "float32")))
    if stack_dtype == "uint8":
        augmented = augmented.map(quantised_stack)  # in the reader threads, not in the training loop
    local_batch = global_batch // process_count
    batches = augmented.batch(local_batch, drop_remainder=True, batch_fn=stacked_batch)
    return batches[process_index::process_count]


_ENDLESS = 2**62  # positions of an endless mixed sequence (the repeated sources are as long)


def served_slice_counts(name: str, source, shapes) -> set[int]:
    """The batch slice counts source `name` serves: its `slice_counts` (() = all of input.slice_counts), which
    must be among the batches' counts."""
    all_counts = {count for count, _ in shapes}
    own = {int(v) for v in (source.get("slice_counts") or ())}
    if not own:
        return all_counts
    if not own <= all_counts:
        raise ValueError(f"source {name!r} serves slice_counts {sorted(own)}, but batches have only "
                         f"{sorted(all_counts)} slices (input.slice_counts); list only counts batches can have.")
    return own


class _ShapeFirstMix:
    """Element i of the mixed sequence when sources serve different slice counts: its batch's shape first
    (`_BatchShape`, so every element of a batch agrees), then a source among those that serve that slice
    count, drawn by weight from (seed, i), then that source's element i (its own shuffled, repeated order).

    Each source is thus sampled at the positions that chose it: records are visited in its shuffled order
    with gaps, every record equally often in expectation. Deterministic in i alone, as the plain mix is."""

    def __init__(self, datasets, weights, served, batch_shape: _BatchShape, seed: int):
        self.datasets, self.served, self.batch_shape, self.seed = datasets, served, batch_shape, seed
        self.weights = np.asarray(weights, dtype=np.float64)

    def __call__(self, index, _position):
        _, shape = self.batch_shape(index, None)
        candidates = [j for j, counts in enumerate(self.served) if shape[0] in counts]
        weights = self.weights[candidates]
        rng = np.random.default_rng([self.seed, 0x50CE, index])
        chosen = candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]
        return self.datasets[chosen][index], shape


class _Tagged:
    """Attaches a source's AugmentSettings (and EngineSettings, for the engine) to its records (a picklable
    callable, for grain workers)."""

    def __init__(self, settings: AugmentSettings, engine: EngineSettings | None):
        self.settings, self.engine = settings, engine

    def __call__(self, record):
        return record, self.settings, self.engine


def _augment(shaped, rng: np.random.Generator) -> dict:
    (record, settings, engine), (num_slices, crop_hw) = shaped
    settings = dataclasses.replace(settings, num_slices=num_slices, crop_hw=crop_hw)
    if engine is not None and is_engine_record(record):
        drawn = draw_focal_stack(rng, engine, num_slices=num_slices, size=crop_hw)
        stack, focus, depth, valid = flipped_example(drawn, rng, settings)
        return model_input(stack, focus, depth, valid, settings.depth_scale,
                           normalise_focus_range=settings.normalise_focus_range)
    return training_example(record, rng, settings)


def training_iterator(input_config, *, seed: int, process_index: int = 0, process_count: int = 1,
                      records_by_source: dict | None = None) -> grain.DatasetIterator:
    """A checkpointable iterator over `training_dataset`: `input.num_threads` threads prefetch `input.prefetch`
    batches, in `input.num_workers` worker processes (0 = in this process) when the host must feed an
    accelerator faster than one Python process can."""
    dataset = training_dataset(input_config, seed=seed, process_index=process_index, process_count=process_count,
                               records_by_source=records_by_source)
    options = grain.ReadOptions(num_threads=int(input_config.num_threads),
                                prefetch_buffer_size=int(input_config.prefetch))
    batches = dataset.to_iter_dataset(options)
    workers = int(input_config.get("num_workers", 0))
    if workers < 0:
        raise ValueError(f"input.num_workers must be ≥ 0 (0 = threads in this process), got {workers}.")
    if workers:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # grain's workers read absl flags; a notebook or test never parsed them
        # Worker processes each make every num_workers-th batch; grain hands them out in order, so the batch
        # sequence (and a checkpoint's position in it) is the one of the threads-only pipeline.
        batches = batches.mp_prefetch(grain.MultiprocessingOptions(num_workers=workers))
    return iter(batches)
