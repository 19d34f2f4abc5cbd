"""Thin-lens focal-stack synthesis from an all-in-focus image and a depth map.

Two renderers share one camera model:

* ``mode="gaussian"`` reproduces the protocol HybridDepth (Ganj et al., WACV 2025) uses to synthesise
  its NYUv2 and ARKitScenes focal stacks on the fly (its `camera_lib.ThinLenCamera` + the `GaussPSF`
  CUDA kernel it inherits from the DFV / AiFDepthNet code). What is matched, point by point:

  - circle of confusion: c = A · |d − f| / d · F / (f − F) metres on the sensor (A = F / N), the same
    quantity HybridDepth writes as A · s · |1/F − 1/s − 1/d| with s = f F / (f − F);
  - the PSF width: HybridDepth passes c / (2 · pixel size), the CoC *radius* r in pixels, to a kernel
    that weights offset (dx, dy) by (1 / r²) · exp(−2 (dx² + dy²) / r²): a Gaussian of standard
    deviation r / 2 (a quarter of the CoC diameter) whose 1/r² factor keeps each source's
    weights proportional to its own unit-area PSF;
  - a square window of `kernel_size` = 7 pixels, offsets outside the image skipped (no padding);
  - how the spatially varying blur is applied: output(p) = Σ_q w_q(p − q) I(q) / Σ_q w_q(p − q), where
    the weight uses the PSF of the *source* pixel q (its radius r_q), summed over the window and
    normalised by the sum of weights at p;
  - pixels with r ≤ 1 (CoC diameter ≤ 2 px) count as in focus: such a pixel is copied unchanged to the
    output, and it contributes nothing to its neighbours' sums;
  - depth ≤ 0 (invalid) uses 1 / (d + 1e-8) in the reference, i.e. a huge CoC: such a pixel is blurred
    from its neighbourhood and its own weight (∝ 1/r²) is negligible in its neighbours' sums. Here the
    depth of such a pixel is set to 1e-8 m, which gives the same CoC to float32 precision, and the radius
    is capped at 1e6 px (weights below 1e-12) so nothing overflows.

  Everything is differentiable (the reference hand-writes a backward pass; here autodiff does it).

  A consequence of the protocol worth knowing: the 7-pixel window truncates every PSF, so blur stops
  growing once the Gaussian is wider than the window. Beyond a CoC diameter of about 8 px the weights
  flatten towards a 7×7 box mean and the output gets no blurrier (its Laplacian energy even rises a
  little, a box passing more high frequencies than a Gaussian of σ ≈ 2 px). NYUv2 CoCs reach ~50 px,
  so strongly defocused slices of the protocol all look alike; the layered mode has no such cap.

* ``mode="layered"`` is occlusion-aware (see `layered.py`): depth is cut into layers uniform in inverse
  depth, each layer is blurred with a Gaussian of the same width convention (standard deviation r / 2,
  0 when r ≤ 1) but of any size, and the layers are composited far to near, so a blurred foreground
  spills over a sharp background, which per-pixel blurring cannot do. Gradients w.r.t. depth flow
  only through each layer's mean depth, not through which layer a pixel belongs to (a discrete choice).

Depth and focus positions are in metres for these cameras; the image may have any range (the output
keeps it, both renderers being normalised weighted means of input values).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dualfocus_jax.rendering import layered

# Depth used in place of invalid depth (<= 0 or non-finite): the reference's 1 / (d + 1e-8) at d = 0.
_INVALID_DEPTH_M = 1e-8
# Radii (pixels) at or below this are in focus (the reference kernel's `weight > 1` test).
IN_FOCUS_RADIUS_PX = 1.0
# Cap on the CoC radius in the Gaussian renderer: keeps 1 / r² a normal float32 (far from 0 or inf)
# while leaving such a pixel's weight negligible next to any real blur (r ≲ 1e3 px).
MAX_RADIUS_PX = 1e6
# ARKitScenes "wide" camera as HybridDepth models it.
_ARKIT_FOCAL_LENGTH_M = 2.9e-3
_ARKIT_F_NUMBER = 0.5
_ARKIT_SENSOR_WIDTH_M = 3.1e-3
RENDER_MODES = ("gaussian", "layered")


@dataclasses.dataclass(frozen=True)
class ThinLensCamera:
    """An ideal thin lens. Frozen (hashable), so it can be a static argument of `jax.jit`.

    Attributes:
      focal_length_m: F, metres.
      f_number: N (aperture diameter A = F / N).
      pixel_size_m: pixel pitch on the sensor, metres.
    """

    focal_length_m: float
    f_number: float
    pixel_size_m: float

    def __post_init__(self):
        for name in ("focal_length_m", "f_number", "pixel_size_m"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.floating, np.integer)) and np.isfinite(value) and value > 0):
                raise ValueError(
                    f"ThinLensCamera.{name} must be a finite positive number, got {value!r}. Give lengths in "
                    "metres (e.g. focal_length_m=50e-3, pixel_size_m=1.2e-5) and the f-number as N of f/N.")

    @property
    def aperture_diameter_m(self) -> float:
        """A = F / N, metres."""
        return self.focal_length_m / self.f_number

    @property
    def defocus_px_per_diopter(self) -> float:
        """CoC diameter in pixels per diopter of defocus, A·F / pixel = F² / (N·pixel): the thin lens focused far
        beyond its focal length."""
        return self.aperture_diameter_m * self.focal_length_m / self.pixel_size_m


NYUV2_CAMERA = ThinLensCamera(focal_length_m=50e-3, f_number=8.0, pixel_size_m=1.2e-5)


def arkitscenes_camera(image_width_px: int) -> ThinLensCamera:
    """The ARKitScenes camera of HybridDepth: F = 2.9 mm, f/0.5, a 3.1 mm wide sensor.

    Args:
      image_width_px: width of the image the stack is rendered at; pixel size = 3.1 mm / width. Note that
        HybridDepth's loader builds its camera with `img_size=560` whatever the image size, i.e. a pixel
        of 3.1 mm / 560; call `arkitscenes_camera(560)` to reproduce that exactly.
    """
    if isinstance(image_width_px, bool) or not isinstance(image_width_px, (int, np.integer)) or image_width_px < 1:
        raise ValueError(
            f"image_width_px must be a positive integer (the rendered image's width), got {image_width_px!r}.")
    return ThinLensCamera(
        focal_length_m=_ARKIT_FOCAL_LENGTH_M,
        f_number=_ARKIT_F_NUMBER,
        pixel_size_m=_ARKIT_SENSOR_WIDTH_M / int(image_width_px),
    )


def circle_of_confusion_m(depth_m, focus_m, camera: ThinLensCamera) -> jnp.ndarray:
    """Diameter of the circle of confusion on the sensor, metres.

    c = A · |d − f| / d · F / (f − F), A = F / N. Broadcasts `depth_m` against `focus_m`.

    Args:
      depth_m: object distance(s) d, metres. Invalid values (<= 0 or non-finite) are taken as 1e-8 m (the
        reference's 1 / (d + 1e-8)), giving a very large, finite CoC.
      focus_m: focus distance(s) f, metres; must exceed the focal length F (not checked under `jit`).
      camera: the lens.

    Returns:
      float32 array of the broadcast shape.
    """
    depth_m = jnp.asarray(depth_m, jnp.float32)
    focus_m = jnp.asarray(focus_m, jnp.float32)
    valid = jnp.isfinite(depth_m) & (depth_m > 0)
    safe_depth_m = jnp.where(valid, depth_m, _INVALID_DEPTH_M)
    focal = camera.focal_length_m
    return camera.aperture_diameter_m * jnp.abs(safe_depth_m - focus_m) / safe_depth_m * focal / (focus_m - focal)


def circle_of_confusion_px(depth_m, focus_m, camera: ThinLensCamera) -> jnp.ndarray:
    """Diameter of the circle of confusion in pixels: `circle_of_confusion_m` / pixel size."""
    return circle_of_confusion_m(depth_m, focus_m, camera) / camera.pixel_size_m


def render_focal_stack(
    image_HWC,
    depth_HW,
    focus_positions_S,
    camera: ThinLensCamera,
    *,
    mode: str = "gaussian",
    kernel_size: int = 7,
    num_layers: int = 16,
) -> jnp.ndarray:
    """Synthesises a focal stack from an all-in-focus image and its depth.

    Args:
      image_HWC: (H, W, C) all-in-focus image, any range (e.g. [0, 1]); cast to float32.
      depth_HW: (H, W) depth, metres; <= 0 or non-finite marks invalid pixels (they never produce NaN).
      focus_positions_S: (S,) focus distances, metres, each > camera.focal_length_m.
      camera: a `ThinLensCamera` (e.g. `NYUV2_CAMERA`, `arkitscenes_camera(640)`).
      mode: "gaussian" (HybridDepth protocol, per-pixel PSF in a `kernel_size` window) or "layered"
        (occlusion-aware, `num_layers` inverse-depth layers, PSFs of any size).
      kernel_size: odd window size of the Gaussian mode (7 in the protocol); unused by "layered".
      num_layers: number of depth layers of the layered mode; unused by "gaussian".

    Returns:
      stack_SHWC: (S, H, W, C) float32, slice s focused at focus_positions_S[s], same range as the image.

    Works under `jax.jit` with camera, mode, kernel_size and num_layers static, and under `jax.vmap` over
    a batch of images, depths and focus positions. Shapes and options are checked here, before any
    compute; focus values are checked only when they are concrete (outside `jit`).
    """
    image_HWC = jnp.asarray(image_HWC)
    depth_HW = jnp.asarray(depth_HW)
    focus_positions_S = jnp.asarray(focus_positions_S)
    _check_render_arguments(image_HWC, depth_HW, focus_positions_S, camera, mode, kernel_size, num_layers)
    image_HWC = image_HWC.astype(jnp.float32)
    depth_HW = depth_HW.astype(jnp.float32)
    focus_positions_S = focus_positions_S.astype(jnp.float32)
    if mode == "gaussian":
        return _render_gaussian(image_HWC, depth_HW, focus_positions_S, camera, kernel_size)
    return _render_layered(image_HWC, depth_HW, focus_positions_S, camera, num_layers)


@functools.partial(jax.jit, static_argnames=("camera", "kernel_size"))
def _render_gaussian(image_HWC, depth_HW, focus_positions_S, camera, kernel_size):
    """Per-pixel Gaussian PSF stack (see the module docstring); shapes as in `render_focal_stack`."""
    height, width, _ = image_HWC.shape
    half = kernel_size // 2
    radius_SHW = 0.5 * circle_of_confusion_px(depth_HW[None], focus_positions_S[:, None, None], camera)
    radius_SHW = jnp.minimum(radius_SHW, MAX_RADIUS_PX)
    # Pad the radius with 0 (= in focus = contributes nothing): offsets outside the image drop out of both
    # sums, exactly as the reference skips them.
    radius_pad_SHW = jnp.pad(radius_SHW, ((0, 0), (half, half), (half, half)))
    image_pad_HWC = jnp.pad(image_HWC, ((half, half), (half, half), (0, 0)))
    spreads_pad_SHW = radius_pad_SHW > IN_FOCUS_RADIUS_PX
    inverse_r2_pad_SHW = jnp.where(spreads_pad_SHW,
                                   1.0 / jnp.square(jnp.where(spreads_pad_SHW, radius_pad_SHW, 1.0)), 0.0)

    num_slices, channels = radius_SHW.shape[0], image_HWC.shape[-1]

    def add_offset(offset_index, sums):
        weighted_sum_SHWC, weight_sum_SHW = sums
        dy, dx = offset_index // kernel_size, offset_index % kernel_size
        squared_offset = ((dy - half) ** 2 + (dx - half) ** 2).astype(jnp.float32)
        inverse_r2_SHW = jax.lax.dynamic_slice(inverse_r2_pad_SHW, (0, dy, dx), (num_slices, height, width))
        source_HWC = jax.lax.dynamic_slice(image_pad_HWC, (dy, dx, 0), (height, width, channels))
        weight_SHW = inverse_r2_SHW * jnp.exp(-2.0 * squared_offset * inverse_r2_SHW)
        return weighted_sum_SHWC + weight_SHW[..., None] * source_HWC[None], weight_sum_SHW + weight_SHW

    # A loop over the k² window offsets, each a shifted view of the padded arrays: memory stays at one
    # stack, and (unlike a Python-unrolled loop) compile time does not grow with k².
    initial_sums = (jnp.zeros(radius_SHW.shape + (channels,), jnp.float32), jnp.zeros(radius_SHW.shape, jnp.float32))
    weighted_sum_SHWC, weight_sum_SHW = jax.lax.fori_loop(0, kernel_size * kernel_size, add_offset, initial_sums)
    # A blurred centre pixel is its own neighbour, so its weight sum is > 0; the guard only protects the
    # in-focus pixels, whose value is discarded below.
    blurred_SHWC = weighted_sum_SHWC / jnp.where(weight_sum_SHW > 0, weight_sum_SHW, 1.0)[..., None]
    in_focus_SHW = radius_SHW <= IN_FOCUS_RADIUS_PX
    return jnp.where(in_focus_SHW[..., None], image_HWC[None], blurred_SHWC)


@functools.partial(jax.jit, static_argnames=("camera", "num_layers"))
def _render_layered(image_HWC, depth_HW, focus_positions_S, camera, num_layers):
    """Layered occlusion-aware stack (see `layered.py`); shapes as in `render_focal_stack`."""
    layer_index_HW, layer_depth_L = layered.assign_inverse_depth_layers(depth_HW, num_layers)
    radius_SL = 0.5 * circle_of_confusion_px(layer_depth_L[None], focus_positions_S[:, None], camera)
    # Same width convention as the Gaussian mode: σ = r / 2, and r <= 1 px is in focus.
    sigma_px_SL = jnp.where(radius_SL > IN_FOCUS_RADIUS_PX, 0.5 * radius_SL, 0.0)
    return layered.composite_blurred_layers(image_HWC, layer_index_HW, sigma_px_SL, num_layers)


def _check_render_arguments(image_HWC, depth_HW, focus_positions_S, camera, mode, kernel_size, num_layers):
    """Raises ValueError naming the problem and the fix; only shapes, options and concrete values."""
    if not isinstance(camera, ThinLensCamera):
        raise ValueError(
            f"camera must be a ThinLensCamera, got {type(camera).__name__}. Use NYUV2_CAMERA, "
            "arkitscenes_camera(width) or ThinLensCamera(focal_length_m, f_number, pixel_size_m).")
    if mode not in RENDER_MODES:
        raise ValueError(f"mode must be one of {RENDER_MODES}, got {mode!r}.")
    if (isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)) or kernel_size < 1
            or kernel_size % 2 == 0):
        raise ValueError(f"kernel_size must be an odd positive integer (7 in the HybridDepth protocol), "
                         f"got {kernel_size!r}.")
    if isinstance(num_layers, bool) or not isinstance(num_layers, (int, np.integer)) or num_layers < 1:
        raise ValueError(f"num_layers must be a positive integer (e.g. 16), got {num_layers!r}.")
    if image_HWC.ndim != 3:
        raise ValueError(
            f"image_HWC must have shape (H, W, C), got {image_HWC.shape}. Add a channel axis to a grey image "
            "(image[..., None]); for a batch, use jax.vmap over render_focal_stack.")
    if depth_HW.shape != image_HWC.shape[:2]:
        raise ValueError(
            f"depth_HW must have shape {image_HWC.shape[:2]} (the image's H, W), got {depth_HW.shape}. "
            "Drop a trailing channel axis (depth[..., 0]) or resize the depth to the image.")
    if focus_positions_S.ndim != 1 or focus_positions_S.shape[0] < 1:
        raise ValueError(f"focus_positions_S must be a 1-D array of S >= 1 distances, "
                         f"got shape {focus_positions_S.shape}.")
    for name, array in (("image_HWC", image_HWC), ("depth_HW", depth_HW), ("focus_positions_S", focus_positions_S)):
        if not (jnp.issubdtype(array.dtype, jnp.floating) or jnp.issubdtype(array.dtype, jnp.integer)):
            raise ValueError(f"{name} must be a real number array, got dtype {array.dtype}.")
    if not isinstance(focus_positions_S, jax.core.Tracer):
        focus = np.asarray(focus_positions_S, np.float64)
        if not np.all(np.isfinite(focus)) or np.any(focus <= camera.focal_length_m):
            raise ValueError(
                f"every focus position must be finite and beyond the focal length {camera.focal_length_m} m "
                f"(a thin lens cannot focus closer), got {focus.tolist()}. Give focus distances in metres.")
