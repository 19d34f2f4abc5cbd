"""Scores exported models and the classical baseline on focal stacks unlike any one training set.

    python -m experiments.evaluate_generalisation                          # shipped + synthetic-only + classical
    python -m experiments.evaluate_generalisation --nodefocus_refinement   # the networks alone (~8 min, not ~35)
    python -m experiments.evaluate_generalisation --checkpoint stage2=runs/engine_small_stage2   # + a training run
    python -m experiments.evaluate_generalisation --quick --out /tmp/generalisation            # smoke run, ~1 min

Methods: every `--checkpoint NAME=FOLDER` (an exported checkpoint, or a training workdir whose latest
checkpoint is exported to a temporary folder by `experiments.evaluate_pretrained.export`; default: the
shipped `small_engine_stage15` and the synthetic-only `small_synthetic`), and the classical baseline raw
(focus peak, no refinement) and refined (Huber-TV, what `--method classical` of the predictor runs). Networks run
through `dualfocus_jax.inference.predict_depth`, as the predictor runs them (with the defocus refinement unless
--nodefocus_refinement; the first network is also scored without it, "(network only)"); the classical baseline
through the same focus-unit handling.

Inputs, all in metres except the real stacks:
1. the engine's fixed test split (`datasets/focal_engine`, prepared under --data_dir on first use): per slice
   count 3/5/7/10/16, per camera family and per scene family (hard ones apart), on all scored pixels and on
   the depth-edge and fine-texture regions of `dualfocus_jax.evaluation.regions`; and the 16-slice stacks
   predicted from 5, 7 or 10 evenly chosen slices (the first and last kept), to see whether such a rule
   helps long stacks;
2. the synthetic_focal test split (40 scenes, 5 slices);
3. the Middlebury motorcycle rendered as in experiments/evaluate_pretrained.py (downscale 2) at 5 and 10 slices;
4. the engine test scenes rendered again by the protocol renderers of `rendering.thin_lens` (no noise or JPEG):
   "protocol" the layered one (synthetic_focal, the motorcycle), "protocol_gaussian" the per-pixel Gaussian in a
   7 × 7 window (the NYUv2 and ARKitScenes builders, HybridDepth's protocol), each per slice count;
5. the real phone stacks of --real_dir (no ground truth): runtime, and agreement between methods (Spearman
   rank correlation of the depth maps, median difference in units of the focus range), plus a picture.
Scored pixels: valid ground truth inside the focus range (the DFF convention). Metrics per image, then the
mean over images; RMSE in metres, AbsRel unitless, rmse/range = RMSE over the stack's focus range.
Writes generalisation.md, summary.csv (every group), per_image.csv, real_stacks.csv and real_stacks.png
into --out (default experiments/results/generalisation/) and prints the tables.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator

import jax.numpy as jnp
import numpy as np
from absl import flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from datasets.focal_engine.focal_engine_dataset_builder import engine_test_stack, split_name
from dualfocus_jax.classical import estimate_depth_classical
from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.compilation_cache import enable_compilation_cache
from dualfocus_jax.embedded_scenes import render_motorcycle_stack
from dualfocus_jax.engine import CAMERA_FAMILIES, HARD_FAMILIES, SCENE_FAMILIES
from dualfocus_jax.evaluation.regions import REGIONS, region_masks, region_metrics_per_image
from dualfocus_jax.focal_stack import load_focal_stack
from dualfocus_jax.inference import (
    CheckpointError,
    align_focal_stack,
    focus_working_units,
    from_inverse_distance,
    load_exported_checkpoint,
    predict_depth,
)
from dualfocus_jax.prepared_splits import default_data_dir, has_prepared_version
from dualfocus_jax.rendering import ThinLensCamera, render_focal_stack
from dualfocus_jax.training.checkpointing import latest_saved_step
from experiments.data_setup import open_split_preparing
from experiments.evaluate_pretrained import export

DEFAULT_OUT = os.path.join("experiments", "results", "generalisation")
DEFAULT_CHECKPOINTS = ("shipped=dualfocus_jax/pretrained/small_engine_stage15",
                       "synthetic only=dualfocus_jax/pretrained/small_synthetic")
DEFAULT_REAL_DIR = os.path.join("..", "shared", "data", "real_focal_stacks")
CLASSICAL_RAW, CLASSICAL_REFINED = "classical (raw)", "classical (refined)"
NETWORK_ONLY_SUFFIX = " (network only)"
REFINED_NOTE = ", depth refined by the blur each slice shows, as `predict` does"
REPORTED = ("rmse", "abs_rel", "rmse_range", "delta1", "mae")
# Columns of per_image.csv beyond the identity and group columns.
PER_IMAGE_METRICS = REPORTED + ("log_rmse", "sq_rel", "bump", "pixels", "seconds")
# Stacks whose focus values cannot be read as distances (SOURCES.md of the real stacks): their order only.
REAL_FOCUS_ORDERS = {"mobile_depth_balls": "far_to_near"}


# The engine test split per blur span across the scene (pixels): how much the defocus of the nearest and
# the farthest surface differ, i.e. how strong a depth cue the stack carries at all.
BLUR_SPAN_EDGES_PX = (0.0, 6.0, 12.0, 24.0, float("inf"))
BLUR_SPANS = ("< 6 px", "6-12 px", "12-24 px", ">= 24 px")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How much of each input is scored (the full run, or --quick for a smoke run)."""

    slice_counts: tuple[int, ...] = (3, 5, 7, 10, 16)
    stacks_per_count: int | None = None  # None = the whole prepared split
    engine_size: tuple[int, int] | None = None  # None = the prepared split (128 x 128); else drawn directly
    subset_sizes: tuple[int, ...] = (5, 7, 10)
    synthetic_scenes: int | None = None
    motorcycle_slices: tuple[int, ...] = (5, 10)
    motorcycle_downscale: int = 2
    crop: int | None = None  # centre crop of the motorcycle and the real stacks (quick mode: one shape)
    real_max_size: int = 640
    real_stacks: int | None = None


QUICK = Sizes(slice_counts=(3, 5), stacks_per_count=1, engine_size=(32, 32), subset_sizes=(3,), synthetic_scenes=1,
              motorcycle_slices=(5,), motorcycle_downscale=4, crop=32, real_max_size=96, real_stacks=1)
INPUTS = ("engine", "protocol", "protocol_gaussian", "synthetic", "motorcycle", "real")
# The dataset labels of protocol_rendered_scenes, per renderer mode of `render_focal_stack`.
PROTOCOL_RENDERED = "engine_protocol_rendered"
PROTOCOL_GAUSSIAN = "engine_protocol_gaussian"
PROTOCOL_LABELS = {"layered": PROTOCOL_RENDERED, "gaussian": PROTOCOL_GAUSSIAN}
PROTOCOL_INPUTS = {"layered": "protocol", "gaussian": "protocol_gaussian"}  # their names in --skip
# What each protocol renderer is, for the report.
PROTOCOL_DESCRIPTIONS = {
    "layered": ("the layered protocol renderer", "`render_focal_stack(mode=\"layered\")`, the renderer of "
                "synthetic_focal and the motorcycle (16 hard inverse-depth layers, Gaussian PSF, a CoC up to 2 px "
                "renders sharp; no noise or JPEG)"),
    "gaussian": ("the per-pixel Gaussian protocol renderer", "`render_focal_stack(mode=\"gaussian\", kernel_size=7)`,"
                 " the renderer of the NYUv2 and ARKitScenes builders (HybridDepth's protocol: each pixel's Gaussian "
                 "PSF cut to a 7 × 7 window, so blur stops growing beyond a CoC of about 8 px; a CoC up to 2 px "
                 "renders sharp; no occlusion, noise or JPEG)"),
}

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_multi_string("checkpoint", None, "NAME=FOLDER (exported checkpoint or training workdir); repeatable. "
                          "Default: " + ", ".join(DEFAULT_CHECKPOINTS), flag_values=FLAGS)
flags.DEFINE_multi_string("add_checkpoint", [], "NAME=FOLDER evaluated in addition to the defaults; repeatable",
                          flag_values=FLAGS)
flags.DEFINE_string("workdir_config", "configs/engine_small.py", "config of a workdir that did not record model.json",
                    flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "TFDS data_dir (default $TFDS_DATA_DIR or ~/tensorflow_datasets)",
                    flag_values=FLAGS)
flags.DEFINE_string("real_dir", DEFAULT_REAL_DIR, "folder of real stacks (one sub-folder each)", flag_values=FLAGS)
flags.DEFINE_string("out", DEFAULT_OUT, "folder for the tables and the picture", flag_values=FLAGS)
flags.DEFINE_bool("quick", False, "tiny inputs (a smoke run)", flag_values=FLAGS)
flags.DEFINE_bool("classical", True, "score the classical baseline too; --noclassical: networks only",
                  flag_values=FLAGS)
flags.DEFINE_bool("flips", False, "networks predict with --flips (averaged over the stack's four mirror images)",
                  flag_values=FLAGS)
flags.DEFINE_bool("defocus_refinement", True, "networks predict as the predict command does, their depth refined by "
                  "the blur each slice shows (inference/defocus_refinement.py); the first network is also scored "
                  f"without it, as '<name>{NETWORK_ONLY_SUFFIX}'; --nodefocus_refinement: the networks alone",
                  flag_values=FLAGS)
flags.DEFINE_list("skip", [], "comma list of " + ",".join(INPUTS) + " to leave out (protocol, protocol_gaussian: "
                  "the engine split's scenes rendered by the layered / per-pixel Gaussian protocol renderer)",
                  flag_values=FLAGS)
flags.register_validator("skip", lambda items: set(items) <= {"", *INPUTS},
                         "--skip knows " + ", ".join(INPUTS), flag_values=FLAGS)


@dataclasses.dataclass
class Method:
    """One way to get depth: a network (params, config) or the classical baseline (refine or not)."""

    name: str
    kind: str  # "network" | "classical"
    params: dict | None = None
    config: object = None
    refine: bool = True
    source: str = ""
    flips: bool = False  # a network averaged over the stack's four mirror images (predict --flips)
    defocus_refinement: bool = False  # a network's depth refined by the slices' blur (predict's default)


@dataclasses.dataclass
class Scene:
    """One scored input: stack (S, H, W, 3) float32 in [0, 1], ascending focus (S,), ground truth, the
    all-in-focus image for the region masks, and what to group it by."""

    dataset: str
    example_id: str
    stack: np.ndarray
    focus: np.ndarray
    depth: np.ndarray
    valid: np.ndarray
    aif: np.ndarray
    groups: dict


# ---------------------------------------------------------------- methods


def parse_checkpoint_spec(spec: str) -> tuple[str, str]:
    """("name", "folder") from "name=folder" or "folder" (named after the folder)."""
    name, separator, folder = spec.partition("=")
    if not separator:
        name, folder = os.path.basename(os.path.normpath(spec)), spec
    if not name.strip() or not folder.strip():
        raise ValueError(f"--checkpoint must be NAME=FOLDER or FOLDER, got {spec!r}.")
    return name.strip(), folder.strip()


def load_method(name: str, folder: str, *, export_root: str, workdir_config: str, command: str) -> Method:
    """A network method from an exported checkpoint folder, or from a training workdir (its latest checkpoint
    exported into `export_root` first, with the code path of experiments/evaluate_pretrained.py)."""
    if os.path.isfile(os.path.join(folder, "model_config.json")):
        params, config = load_exported_checkpoint(folder)
        return Method(name, "network", params, config, source=folder)
    if os.path.isdir(folder) and latest_saved_step(folder) is not None:
        out = os.path.join(export_root, "".join(c if c.isalnum() else "_" for c in name))
        step = export(folder, out, workdir_config, command)
        print(f"exported step {step} of the workdir {folder} for {name!r}", flush=True)
        params, config = load_exported_checkpoint(out)
        return Method(name, "network", params, config, source=f"{folder} (step {step})")
    raise ValueError(f"--checkpoint {name}={folder}: neither an exported checkpoint (model_config.json) nor a "
                     "training workdir with saved checkpoints (checkpoints/).")


def classical_depth(images_SHWC: np.ndarray, focus_S: np.ndarray, *, refine: bool,
                    focus_unit: str = "distance") -> np.ndarray:
    """Depth (H, W) of the classical baseline with or without its refinement, with the focus-unit handling
    of `predict_depth(method="classical")` (which always refines)."""
    units = focus_working_units(focus_S, focus_unit)
    result = estimate_depth_classical(jnp.asarray(images_SHWC[units.near_to_far_S]),
                                      jnp.asarray(units.values_S, jnp.float32), refine=refine)
    depth = np.asarray(result.depth_HW, np.float64)
    if units.mode == "inverse distance":
        depth, _ = from_inverse_distance(depth, np.zeros_like(depth), units)
    return depth.astype(np.float32)


def network_depth(method: Method, images_SHWC: np.ndarray, focus_S: np.ndarray,
                  focus_unit: str = "distance") -> np.ndarray:
    return predict_depth(images_SHWC, focus_S, method="network", params=method.params, config=method.config,
                         focus_unit=focus_unit, flips=method.flips,
                         defocus_refinement=method.defocus_refinement).depth_HW


def method_depth(method: Method, images_SHWC, focus_S, focus_unit: str = "distance") -> tuple[np.ndarray, float]:
    """(depth (H, W), seconds)."""
    started = time.perf_counter()
    if method.kind == "network":
        depth = network_depth(method, images_SHWC, focus_S, focus_unit)
    else:
        depth = classical_depth(images_SHWC, focus_S, refine=method.refine, focus_unit=focus_unit)
    return np.asarray(depth, np.float32), time.perf_counter() - started


def evenly_chosen_slices(num_slices: int, keep: int) -> np.ndarray:
    """`keep` indices of 0..num_slices-1, evenly spread, first and last included."""
    return np.unique(np.round(np.linspace(0, num_slices - 1, keep)).astype(int))


# ---------------------------------------------------------------- scoring


def scored_mask(depth_HW, valid_HW, focus_S) -> np.ndarray:
    """Valid pixels whose ground truth lies inside the focus range."""
    return np.asarray(valid_HW, bool) & (depth_HW >= focus_S.min()) & (depth_HW <= focus_S.max())


def region_scores(pred_HW, scene: Scene) -> dict[str, dict[str, float]]:
    """{region: {metric: value, "pixels": n}} for the scored pixels and their depth-edge / fine-texture parts."""
    mask = scored_mask(scene.depth, scene.valid, scene.focus)
    focus_range = float(scene.focus.max() - scene.focus.min())
    masks = region_masks(scene.depth, mask, scene.aif, focus_range)
    per_region = region_metrics_per_image(pred_HW[None], scene.depth[None],
                                          {region: masks[region][None] for region in REGIONS})
    scores = {}
    for region, values in per_region.items():
        entry = {name: float(array[0]) for name, array in values.items() if name != "pixels"}
        entry["rmse_range"] = entry["rmse"] / focus_range
        entry["pixels"] = int(values["pixels"][0])
        scores[region] = entry
    return scores


def score_scene(scene: Scene, methods: list[Method], subset_sizes: Iterable[int] = ()) -> list[dict]:
    """Per-image records: one per method (and per slice subset), per region."""
    records = []
    num_slices = len(scene.focus)
    variants = [(None, np.arange(num_slices))] + [(k, evenly_chosen_slices(num_slices, k)) for k in subset_sizes
                                                  if k < num_slices]
    for method in methods:
        for keep, chosen in variants:
            depth, seconds = method_depth(method, scene.stack[chosen], scene.focus[chosen])
            label = method.name if keep is None else f"{method.name}, {len(chosen)} of {num_slices} slices"
            for region, values in region_scores(depth, scene).items():
                records.append({"dataset": scene.dataset, "example": scene.example_id, "method": label,
                                "base_method": method.name, "input_slices": len(chosen), "region": region,
                                **scene.groups, **values, "seconds": seconds})
    return records


def mean_over_images(records: list[dict], **where) -> dict[str, float]:
    """Mean of each reported metric over the images matching `where` (images without pixels left out)."""
    chosen = [r for r in records if all(r.get(k) == v for k, v in where.items())]
    means = {"images": float(sum(1 for r in chosen if r["pixels"] > 0))}
    for name in REPORTED:
        values = np.array([r[name] for r in chosen if r["pixels"] > 0], np.float64)
        values = values[np.isfinite(values)]
        means[name] = float(values.mean()) if values.size else float("nan")
    seconds = [r["seconds"] for r in chosen]
    means["seconds"] = float(np.median(seconds)) if seconds else float("nan")  # the median: compile is one call
    return means


# ---------------------------------------------------------------- inputs


def _engine_records(sizes: Sizes, data_dir: str | None) -> Iterator[tuple[int, dict]]:
    """(slice count, record) of the engine test split: the prepared TFDS split, or (quick) drawn directly."""
    for count in sizes.slice_counts:
        if sizes.engine_size is not None:
            records = [engine_test_stack(count, i, sizes.engine_size)[1] for i in range(sizes.stacks_per_count or 1)]
        else:
            source = open_split_preparing("focal_engine", split_name(count), data_dir=data_dir)
            records = [source[i] for i in range(min(len(source), sizes.stacks_per_count or len(source)))]
        for record in records:
            yield count, record


def _engine_scene(dataset: str, count: int, record: dict, stack_SHWC: np.ndarray) -> Scene:
    text = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in record.items()
            if k in ("id", "camera", "camera_family", "scene_family", "spacing", "coverage")}
    return Scene(dataset, text["id"], stack_SHWC, np.asarray(record["focus_positions"], np.float64),
                 np.asarray(record["depth"], np.float32), np.asarray(record["valid"], bool), record["aif"],
                 {"slices": int(count), **{k: text[k] for k in text if k != "id"},
                  "blur_span": blur_span_bucket(scene_blur_span_px(record))})


def engine_scenes(sizes: Sizes, data_dir: str | None) -> Iterator[Scene]:
    """The engine test split per slice count: the prepared TFDS split, or (quick) drawn directly."""
    for count, record in _engine_records(sizes, data_dir):
        yield _engine_scene("engine", count, record, record["stack"].astype(np.float32) / 255.0)


def record_camera(record) -> ThinLensCamera:
    return ThinLensCamera(focal_length_m=float(record["focal_length_mm"]) * 1e-3, f_number=float(record["f_number"]),
                          pixel_size_m=float(record["pixel_size_um"]) * 1e-6)


def protocol_rendered_scenes(sizes: Sizes, data_dir: str | None, mode: str = "layered") -> Iterator[Scene]:
    """The engine test split's scenes (all-in-focus image, depth, focus, camera) rendered again by a protocol
    renderer, `render_focal_stack(mode=mode)` (PROTOCOL_DESCRIPTIONS; the Gaussian one in the protocol's 7 × 7
    window), stored as 8-bit, without noise or JPEG: the same scenes from a renderer the engine does not use."""
    for count, record in _engine_records(sizes, data_dir):
        image = np.asarray(record["aif"], np.float32) / 255.0
        stack = protocol_rendered_stack(image, record["depth"], record["focus_positions"], record_camera(record), mode)
        yield _engine_scene(PROTOCOL_LABELS[mode], count, record, stack)


def protocol_rendered_stack(image_HWC, depth_HW, focus_S, camera: ThinLensCamera, mode: str) -> np.ndarray:
    """(S, H, W, 3) float32 in [0, 1]: `render_focal_stack(mode=mode)` (the Gaussian one in the protocol's 7 × 7
    window) of an image in [0, 1], stored as 8-bit as a dataset would store it."""
    stack = render_focal_stack(jnp.asarray(image_HWC, jnp.float32), jnp.asarray(depth_HW, jnp.float32),
                               jnp.asarray(focus_S, jnp.float32), camera, mode=mode, kernel_size=7)
    stack_u8 = np.clip(np.round(np.asarray(stack) * 255.0), 0, 255)
    return (stack_u8 / 255.0).astype(np.float32)


def scene_blur_span_px(record) -> float:
    """Circle-of-confusion difference between the scene's nearest and farthest surface, pixels: the camera's
    blur per diopter (`ThinLensCamera.defocus_px_per_diopter`) times the scene's span in diopters."""
    camera = record_camera(record)
    diopters = 1.0 / float(record["scene_near_m"]) - 1.0 / float(record["scene_far_m"])
    return camera.defocus_px_per_diopter * diopters


def blur_span_bucket(span_px: float) -> str:
    """The BLUR_SPANS label holding `span_px`."""
    for label, upper in zip(BLUR_SPANS, BLUR_SPAN_EDGES_PX[1:], strict=True):
        if span_px < upper:
            return label
    return BLUR_SPANS[-1]


def synthetic_scenes(sizes: Sizes, data_dir: str | None, quick: bool) -> Iterator[Scene]:
    if quick and not has_prepared_version(default_data_dir(data_dir), "synthetic_focal"):
        print("synthetic_focal: not prepared under the data_dir; --quick does not prepare it (skipped)", flush=True)
        return
    source = open_split_preparing("synthetic_focal", "test", data_dir=data_dir)
    for index in range(min(len(source), sizes.synthetic_scenes or len(source))):
        record = source[index]
        yield Scene("synthetic_focal", record["id"].decode(), record["stack"].astype(np.float32) / 255.0,
                    np.asarray(record["focus_positions"], np.float64), record["depth"], record["valid"],
                    record["aif"], {"slices": int(len(record["focus_positions"]))})


def _centre_crop(array, crop: int | None, axes=(0, 1)):
    if crop is None:
        return array
    index = [slice(None)] * array.ndim
    for axis in axes:
        start = max((array.shape[axis] - crop) // 2, 0)
        index[axis] = slice(start, start + crop)
    return array[tuple(index)]


def motorcycle_scenes(sizes: Sizes) -> Iterator[Scene]:
    for count in sizes.motorcycle_slices:
        rendered = render_motorcycle_stack(count, downscale=sizes.motorcycle_downscale)
        yield Scene("motorcycle", f"motorcycle_{count}", _centre_crop(rendered.stack, sizes.crop, (1, 2)),
                    np.asarray(rendered.focus_m, np.float64), _centre_crop(rendered.depth_m, sizes.crop),
                    _centre_crop(rendered.valid, sizes.crop), _centre_crop(rendered.image, sizes.crop),
                    {"slices": int(count)})


# ---------------------------------------------------------------- real stacks


def real_stack_folders(real_dir: str, limit: int | None) -> list[str]:
    if not os.path.isdir(real_dir):
        return []
    folders = sorted(os.path.join(real_dir, name) for name in os.listdir(real_dir)
                     if os.path.isdir(os.path.join(real_dir, name)))
    return folders[:limit] if limit else folders


def spearman(a, b) -> float:
    """Rank correlation of two maps (ties broken by position; enough for continuous depth)."""
    ranks_a = np.argsort(np.argsort(np.ravel(a))).astype(np.float64)
    ranks_b = np.argsort(np.argsort(np.ravel(b))).astype(np.float64)
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def evaluate_real_stacks(folders: list[str], methods: list[Method], sizes: Sizes) -> tuple[list[dict], list[dict]]:
    """(per stack and method: runtime rows; per stack: inputs and depth maps for the picture)."""
    rows, panels = [], []
    for folder in folders:
        name = os.path.basename(folder)
        order = REAL_FOCUS_ORDERS.get(name)
        stack = load_focal_stack(folder, max_size=sizes.real_max_size, focus_order=order)
        focus_unit = "order" if order else (stack.declared_unit[0] if stack.declared_unit else "distance")
        images, _ = align_focal_stack(stack.images)
        images = _centre_crop(images, sizes.crop, (1, 2))
        focus = np.asarray(stack.focus_positions, np.float64)
        depths = {}
        for method in methods:
            depth, first = method_depth(method, images, focus, focus_unit)
            _, warm = method_depth(method, images, focus, focus_unit)
            depths[method.name] = depth
            rows.append({"stack": name, "slices": len(focus), "size": f"{images.shape[2]}x{images.shape[1]}",
                         "focus_unit": focus_unit, "method": method.name, "first_call_s": first, "warm_s": warm})
            print(f"real {name}: {method.name} {warm:.2f} s warm ({first:.1f} s first call)", flush=True)
        focus_range = float(focus.max() - focus.min())
        for row in rows[-len(methods):]:
            others = [m.name for m in methods if m.name != row["method"]]
            for other in others:
                row[f"rho vs {other}"] = spearman(depths[row["method"]], depths[other])
                row[f"median |diff|/range vs {other}"] = float(
                    np.median(np.abs(depths[row["method"]] - depths[other])) / focus_range)
        panels.append({"name": name, "image": images[len(images) // 2], "depths": depths, "unit": focus_unit,
                       "focus": focus})
    return rows, panels


def save_real_picture(panels: list[dict], path: str) -> None:
    """One row per stack: its middle slice, then each method's depth (shared colour scale per row)."""
    if not panels:
        return
    columns = 1 + len(panels[0]["depths"])
    figure = Figure(figsize=(2.4 * columns, 2.0 * len(panels) + 0.3), dpi=56)
    FigureCanvasAgg(figure)
    for row, panel in enumerate(panels):
        stacked = np.stack(list(panel["depths"].values()))
        low, high = np.percentile(stacked, [2, 98])
        axis = figure.add_subplot(len(panels), columns, row * columns + 1)
        axis.imshow(np.clip(panel["image"], 0, 1))
        axis.set_title(f"{panel['name']} ({len(panel['focus'])} slices)", fontsize=8)
        axis.axis("off")
        for column, (name, depth) in enumerate(panel["depths"].items(), start=2):
            axis = figure.add_subplot(len(panels), columns, row * columns + column)
            axis.imshow(depth, cmap="turbo_r", vmin=low, vmax=high)
            axis.set_title(name, fontsize=8)
            axis.axis("off")
    figure.suptitle("Real phone stacks (no ground truth): depth, near = red, one colour scale per row", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, format="png")


# ---------------------------------------------------------------- tables


def _cell(value: float, metric: str) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:.3f}" if metric in ("rmse", "mae") else f"{value:.4f}" if metric != "seconds" else f"{value:.2f}"


def group_table(records, methods: list[str], metric: str, group_key: str, groups: list, *, region: str = "all",
                extra=None, **where) -> str:
    """Markdown: rows methods, columns groups (+ all), cells the mean of `metric`."""
    header = [str(g) for g in groups] + ["all"]
    lines = ["| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for method in methods:
        cells = [_cell(mean_over_images(records, method=method, region=region, **{group_key: g}, **where)[metric],
                       metric) for g in groups]
        cells.append(_cell(mean_over_images(records, method=method, region=region, **where)[metric], metric))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_table(records, methods: list[str], reference: str, groups: list) -> str:
    """Each network's RMSE, AbsRel and RMSE/range over the reference's, per slice count (≤ 0.75 = at least 25%
    below)."""
    header = [f"{g} slices" for g in groups]
    lines = ["| method | metric | " + " | ".join(header) + " |", "|---" * (len(header) + 2) + "|"]
    for method in methods:
        for metric in ("rmse", "abs_rel", "rmse_range"):
            cells = []
            for g in groups:
                ours = mean_over_images(records, method=method, region="all", slices=g)[metric]
                theirs = mean_over_images(records, method=reference, region="all", slices=g)[metric]
                ratio = ours / theirs if theirs > 0 else float("nan")
                cells.append(f"{ratio:.2f}" + (" ✓" if ratio <= 0.75 else ""))
            lines.append(f"| {method} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def metric_rows_table(records, labels: list[str], columns: list[tuple[str, dict]], metric_names=REPORTED) -> str:
    """Markdown: rows labels, columns (title, where) x metrics."""
    header = [f"{title} {m}".strip() for title, _ in columns for m in metric_names]
    lines = ["| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for label in labels:
        cells = []
        for _, where in columns:
            means = mean_over_images(records, method=label, **where)
            cells.extend(_cell(means[m], m) for m in metric_names)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def subset_finding(records, methods: list[str], longest: int, subset_sizes) -> str:
    """One line per method: how its best slice subset (by RMSE / focus range) changes the three main metrics."""
    lines = []
    for name in methods:
        full = mean_over_images(records, method=name, region="all", slices=longest)
        options = [(mean_over_images(records, method=f"{name}, {k} of {longest} slices", region="all",
                                     slices=longest), k) for k in subset_sizes if k < longest]
        options = [(o, k) for o, k in options if np.isfinite(o["rmse"])]
        if not options or not full["rmse_range"] > 0:
            continue
        best, k = min(options, key=lambda item: item[0]["rmse_range"])
        changes = {m: 100 * (best[m] / full[m] - 1.0) for m in ("rmse_range", "rmse", "abs_rel")}
        verdict = ("helps" if changes["rmse_range"] < -5 else "hurts" if changes["rmse_range"] > 5
                   else "makes little difference (within 5%)")
        lines.append(f"- {name}: its best subset, {k} of {longest}, changes RMSE/range by "
                     f"{changes['rmse_range']:+.0f}%, RMSE by {changes['rmse']:+.0f}%, "
                     f"AbsRel by {changes['abs_rel']:+.0f}%: choosing slices {verdict}.")
    return "\n".join(lines) if lines else "- (no subset rows)"


def write_csv(path: str, rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def summary_rows(records) -> list[dict]:
    """Every (dataset, method, grouping, group, region) mean, for summary.csv."""
    rows = []
    keys = sorted({(r["dataset"], r["method"], r["region"]) for r in records})
    for dataset, method, region in keys:
        chosen = [r for r in records if r["dataset"] == dataset and r["method"] == method and r["region"] == region]
        groupings = [("all", None)] + [(key, value) for key in ("slices", "camera_family", "camera", "scene_family",
                                                                "spacing", "coverage", "blur_span")
                                       for value in sorted({r.get(key) for r in chosen if r.get(key) is not None},
                                                           key=str)]
        for key, value in groupings:
            where = {} if key == "all" else {key: value}
            rows.append({"dataset": dataset, "method": method, "region": region, "group_by": key,
                         "group": "" if value is None else value, **mean_over_images(chosen, **where)})
    return rows


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def per_count_tables(records, names: list[str], networks: list[str], counts: list[int]) -> list[str]:
    """Markdown lines: RMSE, AbsRel and RMSE / focus range per slice count, and each network against the refined
    classical baseline."""
    lines = []
    for metric, title in (("rmse", "RMSE (m)"), ("abs_rel", "AbsRel"), ("rmse_range", "RMSE / focus range")):
        lines += [f"### {title} per slice count", "", group_table(records, names, metric, "slices", counts), ""]
    if networks and CLASSICAL_REFINED in names:
        lines += ["### Network / refined classical, per slice count (✓: at least 25% below)", "",
                  ratio_table(records, networks, CLASSICAL_REFINED, counts), ""]
    return lines


def report_markdown(records, real_rows, methods: list[Method], sizes: Sizes, command: str, elapsed: float) -> str:
    names = [m.name for m in methods]
    networks = [m.name for m in methods if m.kind == "network"]
    engine = [r for r in records if r["dataset"] == "engine"]
    counts = [c for c in sizes.slice_counts if any(r["slices"] == c for r in engine)]
    longest = max(counts) if counts else None
    per_count = (sizes.stacks_per_count or max((sum(1 for r in engine if r["slices"] == c and r["region"] == "all"
                                                    and r["method"] == names[0]) for c in counts), default=0))
    lines = [
        "# Generalisation: stacks unlike any one training set",
        "",
        f"Written by `{command}` (commit {_commit()}) on {platform.machine()} CPU ({os.cpu_count()} cores, shared "
        f"with other jobs), JAX CPU backend, in {elapsed / 60:.1f} min.",
        "Methods: " + "; ".join(f"**{m.name}** (`{m.source}`{REFINED_NOTE if m.defocus_refinement else ''})"
                                if m.kind == "network" else f"**{m.name}**" for m in methods) + ".",
        "Scored pixels: ground truth inside the stack's focus range (the DFF convention). Per image, then the mean "
        "over images. RMSE and MAE in metres, AbsRel and δ1 unitless, rmse_range = RMSE / (focus range), which "
        "weighs near (macro, phone) and far (DSLR) scenes alike.",
        "",
        f"## Engine test split (`datasets/focal_engine`, {per_count} stacks per slice count)",
        "",
    ]
    lines += per_count_tables(engine, names, networks, counts)
    families = [f for f in CAMERA_FAMILIES if any(r.get("camera_family") == f for r in engine)]
    for metric, title in (("abs_rel", "AbsRel"), ("rmse_range", "RMSE / focus range")):
        lines += [f"### {title} per camera family (all slice counts)", "",
                  group_table(engine, names, metric, "camera_family", families), ""]
    spans = [b for b in BLUR_SPANS if any(r.get("blur_span") == b for r in engine)]
    for metric, title in (("abs_rel", "AbsRel"), ("rmse_range", "RMSE / focus range")):
        lines += [f"### {title} per blur span across the scene (all slice counts)", "",
                  group_table(engine, names, metric, "blur_span", spans), ""]
    scene_families = [f for f in SCENE_FAMILIES if any(r.get("scene_family") == f for r in engine)]
    hard = [f for f in scene_families if f in HARD_FAMILIES]
    lines += [f"### AbsRel per scene family (all slice counts; hard families: {', '.join(HARD_FAMILIES)})", "",
              group_table(engine, names, "abs_rel", "scene_family", hard + [f for f in scene_families
                                                                             if f not in HARD_FAMILIES]), ""]
    lines += ["### Regions (all slice counts): all scored pixels, depth edges, fine texture", "",
              metric_rows_table(engine, names, [(region, {"region": region}) for region in REGIONS],
                                ("rmse_range", "abs_rel")), ""]
    if longest is not None and sizes.subset_sizes:
        subset_labels = [label for name in names for label in
                         [name] + [f"{name}, {k} of {longest} slices" for k in sizes.subset_sizes if k < longest]
                         if any(r["method"] == label for r in engine)]
        lines += [f"### {longest}-slice stacks predicted from evenly chosen slices (first and last kept)", "",
                  metric_rows_table(engine, subset_labels, [("", {"region": "all", "slices": longest})]), "",
                  subset_finding(engine, networks + [n for n in names if n not in networks], longest,
                                 sizes.subset_sizes), ""]
    lines += ["### Median time per stack (s; 128 x 128 unless --quick)", "",
              group_table(engine, names, "seconds", "slices", counts), ""]
    for mode, label in PROTOCOL_LABELS.items():
        protocol = [r for r in records if r["dataset"] == label]
        if protocol:
            title, description = PROTOCOL_DESCRIPTIONS[mode]
            lines += [f"## The engine test scenes rendered by {title}", "",
                      f"The same scenes, focus positions and cameras, rendered by {description}.", "",
                      *per_count_tables(protocol, names, networks,
                                        [c for c in sizes.slice_counts if any(r["slices"] == c for r in protocol)])]
    synthetic = [r for r in records if r["dataset"] == "synthetic_focal"]
    if synthetic:
        images = int(mean_over_images(synthetic, method=names[0], region="all")["images"])
        lines += [f"## synthetic_focal test split ({images} scenes, 5 slices, NYUv2 camera)", "",
                  metric_rows_table(synthetic, names, [("", {"region": "all"})]), "",
                  metric_rows_table(synthetic, names, [(region, {"region": region}) for region in REGIONS[1:]],
                                    ("rmse", "abs_rel")), ""]
    motorcycle = [r for r in records if r["dataset"] == "motorcycle"]
    if motorcycle:
        lines += ["## Motorcycle (Middlebury), rendered as in experiments/evaluate_pretrained.py", "",
                  metric_rows_table(motorcycle, names, [(f"{c} slices", {"region": "all", "slices": c})
                                                        for c in sizes.motorcycle_slices], ("rmse", "abs_rel")), ""]
    if real_rows:
        lines += ["## Real phone stacks (`../shared/data/real_focal_stacks`, no ground truth)", "",
                  "Aligned as the predictor aligns them, at the predictor's working size (longer side "
                  f"{sizes.real_max_size} px). Agreement with each other method: ρ / m, the Spearman rank correlation "
                  "of the two depth maps / their median absolute difference over the focus range. Times: warm "
                  "call, then the first call (which compiles for a new shape; networks of one architecture share "
                  "it). Picture: `real_stacks.png`.", ""]
        for stack in dict.fromkeys(row["stack"] for row in real_rows):
            rows = [row for row in real_rows if row["stack"] == stack]
            others = [row["method"] for row in rows]
            first = rows[0]
            lines += [f"**{stack}**: {first['slices']} slices, {first['size']} px, focus unit {first['focus_unit']}.",
                      "", "| method | warm s | first call s | " + " | ".join(f"vs {o}" for o in others) + " |",
                      "|---" * (len(others) + 3) + "|"]
            for row in rows:
                cells = ["–" if o == row["method"] else
                         f"{row[f'rho vs {o}']:.2f} / {row[f'median |diff|/range vs {o}']:.2f}" for o in others]
                lines.append(f"| {row['method']} | {row['warm_s']:.2f} | {row['first_call_s']:.1f} | "
                             + " | ".join(cells) + " |")
            lines.append("")
    lines += ["Every number above is in summary.csv (also per camera, spacing and coverage); per image in "
              "per_image.csv."]
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m experiments.evaluate_generalisation", doc=__doc__)
    command = "python -m experiments.evaluate_generalisation " + " ".join(argv if argv is not None else sys.argv[1:])
    command = command.strip()
    sizes = QUICK if FLAGS.quick else Sizes()
    skip = set(FLAGS.skip)

    enable_compilation_cache()
    started = time.perf_counter()
    export_root = tempfile.mkdtemp(prefix="generalisation_exports_")
    try:
        specs = [parse_checkpoint_spec(s) for s in (FLAGS.checkpoint or list(DEFAULT_CHECKPOINTS))
                 + FLAGS.add_checkpoint]
        names = [name for name, _ in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"checkpoint names must differ, got {names}.")
        methods = [load_method(name, folder, export_root=export_root, workdir_config=FLAGS.workdir_config,
                               command=command) for name, folder in specs]
        methods = [dataclasses.replace(method, flips=FLAGS.flips, defocus_refinement=FLAGS.defocus_refinement)
                   for method in methods]
        if FLAGS.defocus_refinement:
            methods.insert(1, dataclasses.replace(methods[0], name=methods[0].name + NETWORK_ONLY_SUFFIX,
                                                  defocus_refinement=False))
    except (ValueError, CheckpointError) as error:
        shutil.rmtree(export_root, ignore_errors=True)
        print(f"error: {error}", file=sys.stderr)
        return 1
    shutil.rmtree(export_root, ignore_errors=True)  # loaded into memory
    if FLAGS.classical:
        methods += [Method(CLASSICAL_RAW, "classical", refine=False), Method(CLASSICAL_REFINED, "classical")]
    print("methods: " + ", ".join(m.name for m in methods), flush=True)

    records: list[dict] = []
    inputs = []
    if "engine" not in skip:
        inputs.append(("engine", engine_scenes(sizes, FLAGS.data_dir)))
    for mode, label in PROTOCOL_LABELS.items():
        if PROTOCOL_INPUTS[mode] not in skip:
            inputs.append((label, protocol_rendered_scenes(sizes, FLAGS.data_dir, mode)))
    if "synthetic" not in skip:
        inputs.append(("synthetic_focal", synthetic_scenes(sizes, FLAGS.data_dir, FLAGS.quick)))
    if "motorcycle" not in skip:
        inputs.append(("motorcycle", motorcycle_scenes(sizes)))
    longest = max(sizes.slice_counts)
    for label, scenes in inputs:
        for count, scene in enumerate(scenes, start=1):
            subsets = sizes.subset_sizes if scene.dataset == "engine" and len(scene.focus) == longest else ()
            records += score_scene(scene, methods, subsets)
            print(f"{label} {count}: {scene.example_id} ({len(scene.focus)} slices) "
                  f"[{(time.perf_counter() - started) / 60:.1f} min]", flush=True)
    real_rows, panels = [], []
    if "real" not in skip:
        folders = real_stack_folders(FLAGS.real_dir, sizes.real_stacks)
        if not folders:
            print(f"real stacks: none in {FLAGS.real_dir} (skipped)", flush=True)
        real_rows, panels = evaluate_real_stacks(folders, methods, sizes)

    os.makedirs(FLAGS.out, exist_ok=True)
    text = report_markdown(records, real_rows, methods, sizes, command, time.perf_counter() - started)
    identity = ("dataset", "example", "method", "base_method", "input_slices", "region", "slices", "camera",
                "camera_family", "scene_family", "spacing", "coverage", "blur_span")
    write_csv(os.path.join(FLAGS.out, "per_image.csv"),
              [{k: r[k] for k in identity + PER_IMAGE_METRICS if k in r} for r in records])
    write_csv(os.path.join(FLAGS.out, "summary.csv"), summary_rows(records))
    if real_rows:
        write_csv(os.path.join(FLAGS.out, "real_stacks.csv"), real_rows)
        save_real_picture(panels, os.path.join(FLAGS.out, "real_stacks.png"))
    with open(os.path.join(FLAGS.out, "generalisation.md"), "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    print(text)
    print(f"wrote {FLAGS.out}/generalisation.md, summary.csv, per_image.csv"
          + (", real_stacks.csv, real_stacks.png" if real_rows else ""), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
