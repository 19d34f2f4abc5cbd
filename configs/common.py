"""The shared shape of every experiment config, and the `runlocal` shrinker.

A config file defines `get_config(arg=None)` and builds on `base_config()`. The argument is a comma-separated
list like big_vision's: `configs/fod500.py:runlocal` shrinks the run to a smoke test (a few steps on tiny
crops, a couple of evaluation examples), `configs/fod500.py:variant=no_spatial` picks an ablation variant;
both combine (`:runlocal,variant=dfv`). Every field exists up front, so `--config.optimizer.lr=3e-4`
overrides it and a misspelt field fails (the launcher locks the config).

Units: depth and focus positions in each dataset's unit (metres; disparity for DDFF-12); crop sizes in
pixels; steps are optimizer updates; batch sizes are global (over all devices and processes).
"""

from __future__ import annotations

import dataclasses

import ml_collections
from ml_collections.config_dict import placeholder

from dualfocus_jax.engine import CAMERA_NAMES, SCENE_FAMILIES
from dualfocus_jax.engine.focus_schedules import COVERAGES, SPACINGS
from dualfocus_jax.model.config import DualFocusConfig
from dualfocus_jax.rendering.fft_layered import PSF_SHAPES

ConfigDict = ml_collections.ConfigDict


def parse_arg(arg: str | None, **defaults):
    """`"runlocal,variant=dfv"` → ConfigDict(runlocal=True, variant="dfv", ...) typed by `defaults`; an
    unknown key raises ValueError listing the known ones."""
    values = dict(defaults)
    for item in [part.strip() for part in (arg or "").split(",") if part.strip()]:
        key, _, text = item.partition("=")
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}.")
        default = defaults[key]
        if isinstance(default, bool):
            values[key] = text.lower() in ("", "1", "true", "yes")
        elif isinstance(default, int):
            values[key] = int(text)
        elif isinstance(default, float):
            values[key] = float(text)
        else:
            values[key] = text
    return ConfigDict(values)


def model_block(**values) -> ConfigDict:
    """`config.model`: size, variant and one typed placeholder per other field of `DualFocusConfig` (typed by
    its default: int, float, bool, str or tuple), with `values` set on it (None keeps a placeholder unset)."""
    block = ConfigDict(dict(size="small", variant="dualfocus"))
    for field in dataclasses.fields(DualFocusConfig):
        if field.name not in block:
            block[field.name] = placeholder(type(field.default))
    for key, value in values.items():
        if key not in block:
            raise ValueError(f"config.model has no field {key!r}; the fields of DualFocusConfig: {sorted(block)}.")
        if value is not None:
            block[key] = tuple(value) if isinstance(value, list) else value
    return block


def train_source(dataset: str, split: str, *, builder_config: str = "", weight: float = 1.0,
                 depth_scale: float = 1.0, slice_sampling: str = "all", min_valid_fraction: float = 0.0,
                 slice_counts=(), normalise_focus_range: bool = False):
    """One training source of `input.sources` (slice_sampling: all | random_sorted | linspace).

    slice_counts: the batch slice counts (of input.slice_counts) this source serves, () = all; a dataset of
    5-slice stacks mixed with the engine serves (3, 5) while the engine alone fills the 7-, 10- and 16-slice
    batches. normalise_focus_range: depth loss in fractions of each stack's focus range, as the engine's.
    """
    return ConfigDict(dict(dataset=dataset, split=split, builder_config=builder_config, weight=weight,
                           depth_scale=depth_scale, slice_sampling=slice_sampling,
                           min_valid_fraction=min_valid_fraction, slice_counts=tuple(slice_counts),
                           normalise_focus_range=normalise_focus_range))


def engine_source(*, weight: float = 1.0, cameras=CAMERA_NAMES, families=SCENE_FAMILIES, spacings=SPACINGS,
                  coverages=COVERAGES, psf_shapes=PSF_SHAPES, blur_range_px=(3.0, 40.0), detail_zoom_range=(1.0, 1.0),
                  sharp_coc_px_range=(1.0, 1.0), hard_layer_share: float = 0.0, hard_layer_counts=(8, 24),
                  window_gaussian_share: float = 0.0, degrade: bool = True, max_layers: int = 16,
                  normalise_focus_range: bool = True):
    """A training source drawn by the focal-stack engine (`dualfocus_jax.engine`) at each batch's shape
    (input.slice_counts × input.crop_sizes); `normalise_focus_range` puts every example's depth loss in
    fractions of its focus range (see `AugmentSettings`)."""
    engine = ConfigDict(dict(cameras=tuple(cameras), families=tuple(families), spacings=tuple(spacings),
                             coverages=tuple(coverages), psf_shapes=tuple(psf_shapes),
                             blur_range_px=tuple(float(v) for v in blur_range_px),
                             detail_zoom_range=tuple(float(v) for v in detail_zoom_range),
                             sharp_coc_px_range=tuple(float(v) for v in sharp_coc_px_range),
                             hard_layer_share=float(hard_layer_share),
                             hard_layer_counts=tuple(int(v) for v in hard_layer_counts),
                             window_gaussian_share=float(window_gaussian_share), degrade=degrade,
                             max_layers=max_layers))
    return ConfigDict(dict(dataset="focal_engine", split="", builder_config="", weight=weight, depth_scale=1.0,
                           slice_sampling="all", min_valid_fraction=0.0, slice_counts=(),
                           normalise_focus_range=normalise_focus_range, engine=engine))


def eval_split(dataset: str, split: str, protocol: str, *, builder_config: str = "", num_slices: int = 5,
               batch_size: int = 4, max_examples: int = 0, depth_scale: float = 1.0, num_panels: int = 4,
               kind: str = "network", report: str = ""):
    """One evaluator of `config.evals` (protocol: a key of `dualfocus_jax.evaluation.protocols.PROTOCOLS`;
    kind: network | untrained_network | classical, see `dualfocus_jax.evaluation.evaluators`).

    slice_sampling "" uses the protocol's; max_examples 0 = the whole split; depth_scale as in training;
    report: the report it is a row of ("" = its own name); enabled=False skips it.
    """
    return ConfigDict(dict(dataset=dataset, split=split, builder_config=builder_config, protocol=protocol,
                           num_slices=num_slices, slice_sampling="", batch_size=batch_size,
                           max_examples=max_examples, depth_scale=depth_scale, num_panels=num_panels,
                           kind=kind, report=report, enabled=True))


def eval_suite(name: str, dataset: str, split: str, protocol: str, *, kinds=("network",), **settings) -> dict:
    """Evaluators of one split, one per kind, that share the report `name`: `name` for the network,
    `name`_untrained and `name`_classical for the others (`config.evals.update(eval_suite(...))`)."""
    suffixes = {"network": "", "untrained_network": "_untrained", "classical": "_classical"}
    return {name + suffixes[kind]: eval_split(dataset, split, protocol, kind=kind, report=name, **settings)
            for kind in kinds}


def base_config():
    """Every field of an experiment, with neutral defaults; recipes override what they need."""
    config = ConfigDict()
    config.seed = 0
    # Model: size and variant pick `model_config(size, variant)`; every other field of `DualFocusConfig` is a
    # typed placeholder (unset = the size/variant default) that a recipe or the command line may set, e.g.
    # `--config.model.cg_iters=20` or `--config.model.encoder_widths=(32,64,128,192)`.
    # dtype "auto": float32 on a CPU, bfloat16 compute on GPUs and TPUs (trainer.backend_dtype says why).
    config.model = model_block(dtype="auto")
    # Initialisation of a new run ("" = random; the optimizer always starts fresh, and a resumed run ignores
    # both: its checkpoint wins). checkpoint: an exported checkpoint folder whose parameters start the run (same
    # architecture). imagenet_npz: torchvision's ImageNet ResNet-18 weights as .npz for the encoder trunk, the
    # rest random, as DFV starts (conversion in dualfocus_jax/model/pretrained_encoder.py; fits size="paper").
    config.model_init = ConfigDict(dict(checkpoint="", imagenet_npz=""))
    config.input = ConfigDict(dict(
        data_dir="",            # TFDS data_dir; "" = $TFDS_DATA_DIR or ~/tensorflow_datasets
        prepare_if_missing=False,  # entry points prepare datasets that need no manual files on first use
        batch_size=8,           # global
        crop_size=(224, 224),   # (h, w); (0, 0) = full images (all the same size)
        num_slices=5,
        slice_counts=(),        # several slice counts: each batch draws one ((), = num_slices only)
        crop_sizes=(),          # several (h, w): each batch draws one ((), = crop_size only)
        max_crop_tries=10,
        flip_horizontal=True,
        flip_vertical=True,
        num_threads=2,          # grain reader threads per process
        num_workers=0,          # grain worker processes (0 = none: the threads run in the training process)
        prefetch=8,             # batches read ahead
        stack_dtype="auto",     # stacks sent as uint8 (converted on the device) or float32; auto: uint8 off CPU
        device_prefetch=2,      # batches on the devices at once: the one in use and those sent ahead
    ))
    config.input.sources = ConfigDict()
    config.optimizer = ConfigDict(dict(name="adam", lr=1e-4, betas=(0.9, 0.999), weight_decay=0.0,
                                       grad_clip_norm=0.5, schedule="constant", warmup_steps=0,
                                       final_lr_fraction=0.0))
    # fast_compile: skip XLA's expensive CPU optimisations (compiles in seconds, runs slower; smoke runs).
    config.train = ConfigDict(dict(total_steps=1000, log_every_steps=50, validate_every_steps=500,
                                   fast_compile=False))
    config.checkpoint = ConfigDict(dict(every_steps=500, keep_latest=2, keep_best=1, best_metric="rmse",
                                        best_mode="min", async_save=True))
    # Validation during training (model selection); dataset "" disables it (then only the latest are kept).
    config.validation = eval_split("", "", "synthetic_focal", num_panels=0)
    config.evals = ConfigDict()
    # Persistent XLA compilation cache ("" = off): restarts and repeated runs skip recompiling.
    config.compilation_cache_dir = ""
    return config


def dfv_recipe_config(variant: str):
    """base_config() with DFV's training recipe (docs/design/METHOD.md "Training recipes"), shared by the FoD500 and
    DDFF-12 configs: the paper-size model, batch 20 of 224×224 crops with 5 slices, Adam lr 1e-4, betas (0.9, 0.999),
    global-norm clip 0.5, constant rate. Each config adds its sources, budget, checkpoints and evaluations."""
    config = base_config()
    config.model.update(size="paper", variant=variant)
    config.input.update(batch_size=20, crop_size=(224, 224), num_slices=5, num_threads=16, prefetch=4)
    config.optimizer.update(name="adam", lr=1e-4, betas=(0.9, 0.999), grad_clip_norm=0.5, schedule="constant")
    return config


def apply_runlocal(config, *, steps: int = 4, crop: int = 32, slices: int = 3, batch: int = 2):
    """Shrinks `config` in place to a smoke run: `steps` updates on `crop`×`crop` crops of `slices` slices,
    global batch `batch`, the small model compiled for speed of compiling, two examples per evaluation,
    a checkpoint and a validation halfway and at the end."""
    config.model.size = "small"
    config.input.batch_size = batch
    config.input.crop_size = (crop, crop)
    config.input.num_slices = slices
    config.input.num_threads = 1
    config.input.prefetch = 2
    for source in config.input.sources.values():
        if source.slice_sampling == "all":
            source.slice_sampling = "linspace"
        source.min_valid_fraction = min(source.min_valid_fraction, 0.5)
    config.train.total_steps = steps
    config.train.fast_compile = True
    config.train.log_every_steps = 1
    config.train.validate_every_steps = max(steps // 2, 1)
    config.checkpoint.every_steps = max(steps // 2, 1)
    for evaluation in [config.validation, *config.evals.values()]:
        evaluation.num_slices = slices
        evaluation.slice_sampling = "linspace"
        evaluation.batch_size = batch
        evaluation.max_examples = 2
        evaluation.num_panels = min(evaluation.num_panels, 1)
        if evaluation.get("kind") == "classical":
            evaluation.enabled = False
    return config
