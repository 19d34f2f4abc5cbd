"""The focal-stack engine: an endless, seeded source of focal stacks with exact depth.

A draw picks a camera from the catalogue (`cameras.py`), a scene layout and its appearance (`geometry.py`,
`textures.py`), a depth range the camera can resolve, a focus schedule (`focus_schedules.py`), renders the
stack with the occlusion-aware FFT layered renderer (`rendering/fft_layered.py`, disc or Gaussian PSF; a
share of stacks, when asked, with the windowed per-pixel Gaussian of the NYUv2 protocol) and degrades it as a
real capture would be (`degradations.py`). Everything comes from one `numpy.random.Generator`, so a seed gives
the same stack.

The scene's depth range is drawn so that the stack has something to see: the defocus blur between its
nearest and farthest surface (CoC diameter, pixels at the working resolution) is log-uniform in
`EngineSettings.blur_range_px`, within the camera's scene distances. Depth is in metres, ascending focus.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image

from dualfocus_jax import data_features as F
from dualfocus_jax.engine import cameras as cameras_lib
from dualfocus_jax.engine.degradations import degraded_stack
from dualfocus_jax.engine.focus_schedules import COVERAGES, SPACINGS, draw_focus_schedule
from dualfocus_jax.engine.geometry import FAMILY_WEIGHTS, SCENE_FAMILIES, SceneLayout, scene_layout
from dualfocus_jax.rendering.fft_layered import PSF_SHAPES, render_layered_stack
from dualfocus_jax.rendering.window_gaussian import IN_FOCUS_RADIUS_PX, render_window_gaussian_stack

# Extra pixels rendered around the window, so misalignment never samples outside the rendered scene.
_MARGIN_PX = 4
# The renderers a draw may use (meta["renderer"]); the windowed one in the protocol's 7 × 7 window.
RENDERERS = ("layered", "window_gaussian")
WINDOW_KERNEL_PX = 7


@dataclasses.dataclass(frozen=True)
class EngineSettings:
    """What the engine draws from.

    slice_counts: (min, max) slices per stack when a draw does not fix it (inclusive).
    cameras: catalogue names to draw from (uniform over camera families, then over their entries).
    families: scene families (weighted as `geometry.FAMILY_WEIGHTS`).
    spacings, coverages: focus schedules to draw from (see `focus_schedules.py`).
    psf_shapes: PSFs to draw from ("disc", "gaussian").
    blur_range_px: (min, max) CoC diameter across the scene, pixels.
    detail_zoom_range: (min, max) ≥ 1: the scene's layout is drawn on a canvas this many times larger,
      log-uniform, and shrunk to the stack's size. Shapes are drawn relative to the canvas and keep their
      size; textures and pixel-sized details (stripes, text, thin strokes) come out that much finer at the
      same blur. (1, 1), the default, draws nothing and leaves every stack as before.
    sharp_coc_px_range: (min, max) CoC diameter, pixels, below which a surface renders sharp (the slice's depth
      of field), drawn log-uniform per stack. (1, 1), the default, draws nothing: only sub-pixel PSFs are sharp,
      as before. Wider ranges meet renderers and cameras whose stacks show no blur within a pixel or two of
      focus (the protocol renderers of `rendering.thin_lens` render a CoC up to 2 px sharp).
    hard_layer_share: share of stacks rendered with depth quantised into hard layers (their count drawn from
      hard_layer_counts), as the protocol renderers do, instead of the smooth split between two layers.
      0, the default, draws nothing.
    window_gaussian_share: share of stacks rendered by the per-pixel Gaussian protocol renderer
      (`rendering.window_gaussian`: each pixel's Gaussian PSF cut to a 7 × 7 window, no occlusion; the renderer of
      the NYUv2 and ARKitScenes builders) instead of the layered FFT renderer. 0, the default, draws nothing.
    degrade: add misalignment, noise and JPEG; max_layers: the renderer's layer budget.
    """

    slice_counts: tuple[int, int] = (2, 16)
    cameras: tuple[str, ...] = cameras_lib.CAMERA_NAMES
    families: tuple[str, ...] = SCENE_FAMILIES
    spacings: tuple[str, ...] = SPACINGS
    coverages: tuple[str, ...] = COVERAGES
    psf_shapes: tuple[str, ...] = PSF_SHAPES
    blur_range_px: tuple[float, float] = (3.0, 40.0)
    detail_zoom_range: tuple[float, float] = (1.0, 1.0)
    sharp_coc_px_range: tuple[float, float] = (1.0, 1.0)
    hard_layer_share: float = 0.0
    hard_layer_counts: tuple[int, int] = (8, 24)
    window_gaussian_share: float = 0.0
    degrade: bool = True
    max_layers: int = 16

    def __post_init__(self):
        low, high = (int(v) for v in self.slice_counts)
        if low < 2 or high < low:
            raise ValueError(f"slice_counts must be (min, max) with 2 ≤ min ≤ max (a focal stack has at least two "
                             f"slices), got {tuple(self.slice_counts)}.")
        for name, values, known in (("cameras", self.cameras, cameras_lib.CAMERA_NAMES),
                                    ("families", self.families, SCENE_FAMILIES), ("spacings", self.spacings, SPACINGS),
                                    ("coverages", self.coverages, COVERAGES),
                                    ("psf_shapes", self.psf_shapes, PSF_SHAPES)):
            unknown = [value for value in values if value not in known]
            if not values or unknown:
                raise ValueError(f"engine {name} must be a non-empty subset of {list(known)}, got {list(values)}.")
        if not 0 < self.blur_range_px[0] <= self.blur_range_px[1]:
            raise ValueError(f"blur_range_px must be (min, max) with 0 < min ≤ max, got {self.blur_range_px}.")
        if not 1 <= self.detail_zoom_range[0] <= self.detail_zoom_range[1]:
            raise ValueError(f"detail_zoom_range must be (min, max) with 1 ≤ min ≤ max (1 = the layout at the "
                             f"stack's own scale), got {self.detail_zoom_range}.")
        if not 0 < self.sharp_coc_px_range[0] <= self.sharp_coc_px_range[1]:
            raise ValueError(f"sharp_coc_px_range must be (min, max) CoC diameters in pixels with 0 < min ≤ max "
                             f"(1 = only sub-pixel blur renders sharp), got {self.sharp_coc_px_range}.")
        if not 0.0 <= self.hard_layer_share <= 1.0:
            raise ValueError(f"hard_layer_share must be a share in [0, 1], got {self.hard_layer_share}.")
        if not 0.0 <= self.window_gaussian_share <= 1.0:
            raise ValueError(f"window_gaussian_share must be a share in [0, 1], got {self.window_gaussian_share}.")
        if not 2 <= self.hard_layer_counts[0] <= self.hard_layer_counts[1]:
            raise ValueError(f"hard_layer_counts must be (min, max) layer counts with 2 ≤ min ≤ max, got "
                             f"{self.hard_layer_counts}.")
        if self.max_layers < 2:
            raise ValueError(f"max_layers must be ≥ 2, got {self.max_layers}.")


DEFAULT_SETTINGS = EngineSettings()


def _check_custom_camera(model: cameras_lib.CameraModel) -> None:
    for name in ("focal_length_m", "f_number", "scene_distance_m"):
        low, high = getattr(model, name)
        if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
            raise ValueError(f"camera {model.name!r}: {name} must be (min, max) with 0 < min ≤ max, got {(low, high)}; "
                             "an f-number is N of f/N (> 0), lengths are metres.")
    if model.pixel_size_m <= 0 and not 0 < model.sensor_width_m[0] <= model.sensor_width_m[1]:
        raise ValueError(f"camera {model.name!r}: give sensor_width_m (min, max) > 0 or pixel_size_m > 0.")
    if model.scene_distance_m[0] <= 1.5 * model.focal_length_m[1]:
        raise ValueError(f"camera {model.name!r}: the nearest scene distance {model.scene_distance_m[0]} m must lie "
                         f"well beyond the focal length {model.focal_length_m[1]} m (a lens cannot focus inside it).")


def _camera_model(rng: np.random.Generator, settings: EngineSettings) -> cameras_lib.CameraModel:
    models = [cameras_lib.camera_model_named(name) for name in settings.cameras]
    families = sorted({model.family for model in models})
    family = families[rng.integers(len(families))]
    members = [model for model in models if model.family == family]
    return members[rng.integers(len(members))]


def _scene_diopter_range(rng: np.random.Generator, camera: cameras_lib.DrawnCamera, blur_range_px
                         ) -> tuple[float, float]:
    """(far, near) diopters of the scene: a blur span log-uniform in `blur_range_px` within the camera's reach."""
    near_m, far_m = camera.model.scene_distance_m
    lowest, highest = 1.0 / far_m, 1.0 / near_m
    target_px = float(np.exp(rng.uniform(np.log(blur_range_px[0]), np.log(blur_range_px[1]))))
    span = min(target_px / camera.defocus_px_per_diopter, highest - lowest)
    far_diopter = lowest + rng.uniform(0.0, 1.0) * max(highest - lowest - span, 0.0)
    return far_diopter, far_diopter + span


def _scene_layout_with_detail(family: str, rng: np.random.Generator, size: tuple[int, int],
                              detail_zoom_range: tuple[float, float]) -> SceneLayout:
    """`scene_layout` at `size`, drawn `zoom` times larger and shrunk when the settings ask for finer detail:
    the image by area averaging (what a sensor of larger pixels records), the nearness by the sample nearest
    each output pixel's centre (depth edges stay edges, no depths between the two sides)."""
    low, high = detail_zoom_range
    if high <= 1.0:
        return scene_layout(family, rng, size)  # no draw: the default settings' stacks stay as they were
    zoom = float(np.exp(rng.uniform(np.log(low), np.log(high))))
    height, width = size
    large = (int(round(height * zoom)), int(round(width * zoom)))
    layout = scene_layout(family, rng, large)
    image = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(layout.image[..., c], np.float32)).resize(
        (width, height), Image.Resampling.BOX)) for c in range(3)], axis=-1)
    rows = np.minimum(((np.arange(height) + 0.5) * large[0] / height).astype(int), large[0] - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * large[1] / width).astype(int), large[1] - 1)
    return SceneLayout(np.clip(image, 0, 1).astype(np.float32), layout.nearness[np.ix_(rows, cols)], layout.family)


def _depth_of_field_and_layering(rng: np.random.Generator, settings: EngineSettings) -> tuple[float, int]:
    """(CoC diameter in pixels below which the stack renders sharp, hard layer count or 0 for smooth layers);
    nothing is drawn for the defaults, so their stacks stay as they were."""
    low, high = settings.sharp_coc_px_range
    sharp_coc_px = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else float(low)
    hard_layer_count = 0
    if settings.hard_layer_share > 0 and rng.random() < settings.hard_layer_share:
        hard_layer_count = int(rng.integers(settings.hard_layer_counts[0], settings.hard_layer_counts[1] + 1))
    return sharp_coc_px, hard_layer_count


def _renderer(rng: np.random.Generator, settings: EngineSettings) -> str:
    """RENDERERS[0] (the layered FFT renderer) or RENDERERS[1] (the windowed per-pixel Gaussian); nothing is
    drawn for the defaults, so their stacks stay as they were."""
    if settings.window_gaussian_share > 0 and rng.random() < settings.window_gaussian_share:
        return RENDERERS[1]
    return RENDERERS[0]


def draw_focal_stack(rng: np.random.Generator, settings: EngineSettings = DEFAULT_SETTINGS, *,
                     num_slices: int | None = None, size: tuple[int, int] = (96, 96), family: str | None = None,
                     camera_model: cameras_lib.CameraModel | None = None, focus_m=None,
                     depth_m: float | None = None) -> dict:
    """One focal stack with exact depth, in the `data_features` layout plus `aif` and `meta`.

    Args:
      rng: the generator every choice comes from.
      settings: what to draw from.
      num_slices: S (None draws it from settings.slice_counts).
      size: (H, W) of the stack, pixels.
      family: a scene family (None draws one).
      camera_model: a catalogue entry or a custom `CameraModel` (None draws one from settings.cameras).
      focus_m: explicit (S,) focus distances, metres (None draws a schedule).
      depth_m: for family "plane", its depth in metres (None draws it).

    Returns:
      {stack (S, H, W, 3) uint8, focus_positions (S,) float32 metres ascending, depth (H, W) float32 metres,
       valid (H, W) bool, aif (H, W, 3) uint8, meta: dict of the draw (camera, focus spacing and coverage,
       scene family, PSF, depth range)}.
    """
    height, width = (int(size[0]), int(size[1]))
    if min(height, width) < 8:
        raise ValueError(f"size must be at least 8×8 pixels, got {size}.")
    if num_slices is not None and int(num_slices) < 2:
        raise ValueError(f"num_slices must be ≥ 2 (a focal stack), got {num_slices}.")
    if camera_model is not None:
        _check_custom_camera(camera_model)
    model = camera_model or _camera_model(rng, settings)
    camera = cameras_lib.draw_camera(rng, model)
    far_diopter, near_diopter = _scene_diopter_range(rng, camera, settings.blur_range_px)
    if focus_m is not None:
        focus_m = np.sort(np.asarray(focus_m, np.float64).reshape(-1))
        if focus_m.size < 2 or not np.all(np.isfinite(focus_m)) or np.any(focus_m <= camera.lens.focal_length_m):
            raise ValueError(f"focus_m needs ≥ 2 finite focus distances beyond the focal length "
                             f"({camera.lens.focal_length_m} m; a lens cannot focus inside it), "
                             f"got {focus_m.tolist()}.")
        spacing, coverage = "given", "given"
    else:
        count = int(num_slices) if num_slices is not None else int(rng.integers(settings.slice_counts[0],
                                                                                settings.slice_counts[1] + 1))
        schedule = draw_focus_schedule(rng, far_diopter, near_diopter, count,
                                       max_diopter=1.0 / (1.5 * camera.lens.focal_length_m),
                                       spacing=str(rng.choice(settings.spacings)),
                                       coverage=str(rng.choice(settings.coverages)))
        focus_m, spacing, coverage = schedule.focus_m, schedule.spacing, schedule.coverage

    families = [name for name in SCENE_FAMILIES if name in settings.families]
    weights = np.array([FAMILY_WEIGHTS[SCENE_FAMILIES.index(name)] for name in families])
    family = family or str(rng.choice(families, p=weights / weights.sum()))
    margin = _MARGIN_PX if settings.degrade else 0
    layout = _scene_layout_with_detail(family, rng, (height + 2 * margin, width + 2 * margin),
                                       settings.detail_zoom_range)
    if depth_m is not None and family == "plane":
        depth_m = np.full(layout.nearness.shape, float(depth_m))
    else:
        depth_m = 1.0 / (far_diopter + layout.nearness.astype(np.float64) * (near_diopter - far_diopter))
    psf = str(rng.choice(settings.psf_shapes))
    sharp_coc_px, hard_layer_count = _depth_of_field_and_layering(rng, settings)
    renderer = _renderer(rng, settings)
    if renderer == RENDERERS[1]:
        # the protocol's own renderer: its Gaussian PSF and 2 px depth of field whatever psf and sharp_coc_px say
        stack = render_window_gaussian_stack(layout.image, depth_m, focus_m, camera.lens,
                                             kernel_size=WINDOW_KERNEL_PX)
        psf, sharp_coc_px, hard_layer_count = "gaussian", 2.0 * IN_FOCUS_RADIUS_PX, 0  # what meta reports
    else:
        stack = render_layered_stack(layout.image, depth_m, focus_m, camera.lens, psf=psf,
                                     max_layers=hard_layer_count or settings.max_layers,
                                     sharp_radius_px=0.5 * sharp_coc_px, hard_layers=hard_layer_count > 0)
    if settings.degrade:
        stack_u8 = degraded_stack(rng, np.clip(stack, 0, 1))
    else:
        stack_u8 = np.clip(np.round(stack * 255.0), 0, 255).astype(np.uint8)
    window = (slice(margin, margin + height), slice(margin, margin + width))
    meta = {**camera.describe(), "family": family, "spacing": spacing, "coverage": coverage, "psf": psf,
            "sharp_coc_px": sharp_coc_px, "hard_layers": hard_layer_count, "renderer": renderer,
            "num_slices": int(len(focus_m)), "scene_near_m": float(1.0 / near_diopter),
            "scene_far_m": float(1.0 / far_diopter)}
    return {
        F.STACK: np.ascontiguousarray(stack_u8[:, window[0], window[1]]),
        F.FOCUS_POSITIONS: np.asarray(focus_m, np.float32),
        F.DEPTH: np.ascontiguousarray(depth_m[window], np.float32),
        F.VALID: np.ones((height, width), bool),
        F.AIF: np.clip(np.round(layout.image[window] * 255.0), 0, 255).astype(np.uint8),
        "meta": meta,
    }


class EngineRecords:
    """An endless random-access 'dataset' for grain: record i is just its index. The stack is drawn later, in
    the input pipeline's augmentation step, once the batch's slice count and crop size are known."""

    def __init__(self, length: int = 2 ** 31 - 1):
        self._length = int(length)

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict:
        return {"engine_index": int(index)}


def is_engine_record(record) -> bool:
    return isinstance(record, dict) and "engine_index" in record
