"""Occlusion-aware layered defocus with FFT blurs: the fast renderer of the focal-stack engine (NumPy, host side).

The same lens model and compositing as `layered.py` (depth cut into layers uniform in inverse depth, each
layer's premultiplied colour and alpha blurred by its own PSF, composited far to near with the "over"
operator, divided by the accumulated alpha), with three differences that make it fast and smooth enough to
feed training:

* blurs are products in the Fourier domain (`scipy.fft.rfft2`): O(HW log HW) per layer and slice whatever
  the PSF size, instead of dense (H × H) and (W × W) matrices;
* the PSF is a disc (pillbox, the geometric-optics PSF of a thin lens with a round aperture) or a Gaussian
  (σ = r / 2, the HybridDepth convention of `thin_lens`), both analytic in the Fourier domain;
* pixels are split between the two nearest layers in inverse depth (linear weights), so a slanted surface
  blurs smoothly instead of in bands, and the number of layers adapts to the blur range: adjacent layers
  differ by at most `max_radius_step_px` of blur in every slice.

The image is treated as empty outside its border (zero padding of colour and alpha, no wrap-around), and the
normalisation by accumulated alpha keeps the border from darkening.

Two options reproduce what other renderers (and lenses) do, for training a model that meets them:

* `sharp_radius_px`: PSFs of a smaller radius render sharp. 0.5 px (the default) is a point; a larger value
  gives every slice a depth of field inside which defocus leaves no trace, as in the protocol renderers of
  `thin_lens` (radius ≤ 1 px is in focus) and, softly, in real captures where sensor sampling, demosaicing and
  noise hide sub-pixel blur;
* `hard_layers`: every pixel wholly in its nearest of exactly `max_layers` layers (the quantised layering of
  `layered.py`), so blur changes in steps across a slanted surface.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.special

from dualfocus_jax.rendering.thin_lens import ThinLensCamera

PSF_SHAPES = ("disc", "gaussian")
# A PSF radius below this many pixels is a point: the slice is sharp there.
_SHARP_RADIUS_PX = 0.5
# Below this accumulated alpha no layer reached the pixel; it keeps the all-in-focus colour.
_MIN_ACCUMULATED_ALPHA = 1e-6
# jinc(x) = 2 J1(x) / x on [0, 2π · 300 · 0.71]: discs up to 300 px radius at every rfft2 frequency; the step
# keeps the linear interpolation error below 1e-5.
_JINC_ARGUMENTS = np.linspace(0.0, 2.0 * np.pi * 300.0 * 0.71, 400_001)
_JINC_STEP = float(_JINC_ARGUMENTS[1])
_JINC_VALUES = np.where(_JINC_ARGUMENTS > 0, 2.0 * scipy.special.j1(np.maximum(_JINC_ARGUMENTS, 1e-12))
                        / np.maximum(_JINC_ARGUMENTS, 1e-12), 1.0)
_JINC_SLOPES = np.append(np.diff(_JINC_VALUES), 0.0)


def coc_radius_px(depth_m, focus_m, camera: ThinLensCamera) -> np.ndarray:
    """Radius of the circle of confusion in pixels, r = c / 2 with the thin-lens c of `thin_lens` (broadcasts)."""
    depth_m = np.asarray(depth_m, np.float64)
    focus_m = np.asarray(focus_m, np.float64)
    focal = camera.focal_length_m
    diameter_m = camera.aperture_diameter_m * np.abs(depth_m - focus_m) / depth_m * focal / (focus_m - focal)
    return 0.5 * diameter_m / camera.pixel_size_m


def psf_transfer(radius_px: np.ndarray, shape: str, freq_y: np.ndarray, freq_x: np.ndarray,
                 sharp_radius_px: float = _SHARP_RADIUS_PX) -> np.ndarray:
    """Fourier transform of unit-area PSFs of the given radii on an rfft2 grid.

    Args:
      radius_px: (...,) radii in pixels (disc radius, or 2σ for the Gaussian); < sharp_radius_px gives the
        identity.
      shape: "disc" or "gaussian".
      freq_y, freq_x: (h, 1) and (1, w') frequencies in cycles per pixel (`scipy.fft.fftfreq`, `rfftfreq`).

    Returns:
      (..., h, w') float32 real transfer functions (both PSFs are symmetric, so their transforms are real).
    """
    radius = np.asarray(radius_px, np.float32)[..., None, None]
    rho = np.sqrt(np.square(freq_y) + np.square(freq_x)).astype(np.float32)
    if shape == "gaussian":
        sigma = 0.5 * radius
        transfer = np.exp(-2.0 * np.pi ** 2 * np.square(sigma) * np.square(rho))
    elif shape == "disc":
        # The pillbox's transform is the jinc 2 J1(x) / x; tabulated once, since Bessel calls dominate otherwise.
        position = np.minimum(2.0 * np.pi * radius * rho / _JINC_STEP, _JINC_VALUES.size - 2)
        index = position.astype(np.int64)
        transfer = _JINC_VALUES[index] + (position - index) * _JINC_SLOPES[index]
    else:
        raise ValueError(f"psf must be one of {PSF_SHAPES}, got {shape!r}.")
    return np.where(radius < sharp_radius_px, 1.0, transfer).astype(np.float32)


def soft_inverse_depth_layers(depth_HW: np.ndarray, num_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Splits every pixel between the two nearest of `num_layers` layers uniform in inverse depth.

    Returns:
      weights_LHW: (L, H, W) float32, ≥ 0, summing to 1 over L at every pixel; layer 0 is the farthest.
      layer_depth_L: (L,) float64 depth of each layer (the reciprocal of its inverse-depth centre).
    """
    inverse_HW = 1.0 / np.asarray(depth_HW, np.float64)
    low, high = float(inverse_HW.min()), float(inverse_HW.max())
    if num_layers == 1 or high - low < 1e-12 * high:
        return np.ones((1,) + inverse_HW.shape, np.float32), np.array([1.0 / (0.5 * (low + high))])
    centres_L = np.linspace(low, high, num_layers)
    position_HW = (inverse_HW - low) / (high - low) * (num_layers - 1)
    lower_HW = np.clip(np.floor(position_HW).astype(np.int64), 0, num_layers - 2)
    upper_share_HW = (position_HW - lower_HW).astype(np.float32)
    weights_LHW = np.zeros((num_layers,) + inverse_HW.shape, np.float32)
    rows, cols = np.indices(inverse_HW.shape)
    weights_LHW[lower_HW, rows, cols] = 1.0 - upper_share_HW
    weights_LHW[lower_HW + 1, rows, cols] += upper_share_HW
    return weights_LHW, 1.0 / centres_L


def hard_inverse_depth_layers(depth_HW: np.ndarray, num_layers: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pixel wholly in the nearest of `num_layers` layers uniform in inverse depth (quantised depth, as
    `layered.assign_inverse_depth_layers`); same returns as `soft_inverse_depth_layers`."""
    soft_LHW, layer_depth_L = soft_inverse_depth_layers(depth_HW, num_layers)
    nearest_HW = np.argmax(soft_LHW, axis=0)  # the larger of the two shares is the nearer layer
    hard_LHW = (np.arange(soft_LHW.shape[0])[:, None, None] == nearest_HW[None]).astype(np.float32)
    return hard_LHW, layer_depth_L


def layer_count_for(depth_HW: np.ndarray, focus_S: np.ndarray, camera: ThinLensCamera, max_layers: int,
                    max_radius_step_px: float) -> int:
    """Fewest layers (2..max_layers) with adjacent layers at most `max_radius_step_px` of blur apart in every
    slice: the CoC radius is linear in inverse depth, r = k_s · |1/f_s − 1/d|, so the step is k_s · Δ(1/d)."""
    inverse = 1.0 / np.asarray(depth_HW, np.float64)
    span = float(inverse.max() - inverse.min())
    focal = camera.focal_length_m
    focus_S = np.asarray(focus_S, np.float64)
    slope_S = 0.5 * camera.aperture_diameter_m * focal * focus_S / (focus_S - focal) / camera.pixel_size_m
    needed = int(np.ceil(span * float(slope_S.max()) / max_radius_step_px)) + 1
    return int(np.clip(needed, 2, max_layers))


def render_layered_stack(image_HWC, depth_HW, focus_S, camera: ThinLensCamera, *, psf: str = "disc",
                         max_layers: int = 24, max_radius_step_px: float = 1.0,
                         sharp_radius_px: float = _SHARP_RADIUS_PX, hard_layers: bool = False) -> np.ndarray:
    """A focal stack from an all-in-focus image and its depth (metres), occlusion-aware, any PSF size.

    Args:
      image_HWC: (H, W, C) all-in-focus image, any range (the output keeps it).
      depth_HW: (H, W) metres, finite and > the focal length everywhere.
      focus_S: (S,) focus distances, metres, each > the focal length.
      camera: the lens (`ThinLensCamera`).
      psf: "disc" or "gaussian".
      max_layers, max_radius_step_px: the layer budget (see `layer_count_for`).
      sharp_radius_px: PSFs of a smaller radius render sharp (the depth of field; 0.5 = only points).
      hard_layers: quantise depth into exactly `max_layers` layers instead of splitting pixels between two.

    Returns:
      (S, H, W, C) float32, slice s focused at focus_S[s].
    """
    image_HWC = np.asarray(image_HWC, np.float32)
    depth_HW = np.asarray(depth_HW, np.float64)
    focus_S = np.asarray(focus_S, np.float64).reshape(-1)
    _check_arguments(image_HWC, depth_HW, focus_S, camera, psf, max_layers, max_radius_step_px, sharp_radius_px)
    height, width, channels = image_HWC.shape
    if hard_layers:
        weights_LHW, layer_depth_L = hard_inverse_depth_layers(depth_HW, max_layers)
    else:
        num_layers = layer_count_for(depth_HW, focus_S, camera, max_layers, max_radius_step_px)
        weights_LHW, layer_depth_L = soft_inverse_depth_layers(depth_HW, num_layers)
    # Layers no pixel belongs to (the gaps between the depths of a stepped scene) change nothing: skip them.
    occupied_L = weights_LHW.reshape(weights_LHW.shape[0], -1).max(axis=1) > 0
    weights_LHW, layer_depth_L = weights_LHW[occupied_L], layer_depth_L[occupied_L]
    num_layers = weights_LHW.shape[0]
    radius_SL = coc_radius_px(layer_depth_L[None], focus_S[:, None], camera)

    # Zero padding as wide as the largest PSF: no blur wraps around the periodic FFT domain.
    pad = int(np.ceil(float(radius_SL.max()))) + 2
    padded_h = scipy.fft.next_fast_len(height + 2 * pad, real=True)
    padded_w = scipy.fft.next_fast_len(width + 2 * pad, real=True)
    layers_LKHW = np.zeros((num_layers, channels + 1, padded_h, padded_w), np.float32)
    layers_LKHW[:, :channels, :height, :width] = weights_LHW[:, None] * np.moveaxis(image_HWC, -1, 0)[None]
    layers_LKHW[:, channels, :height, :width] = weights_LHW
    spectra_LKhw = scipy.fft.rfft2(layers_LKHW, axes=(-2, -1))
    freq_y = scipy.fft.fftfreq(padded_h)[:, None]
    freq_x = scipy.fft.rfftfreq(padded_w)[None, :]

    stack_SHWC = np.empty((focus_S.size, height, width, channels), np.float32)
    for s in range(focus_S.size):
        transfer_Lhw = psf_transfer(radius_SL[s], psf, freq_y, freq_x, sharp_radius_px)
        blurred_LKHW = scipy.fft.irfft2(spectra_LKhw * transfer_Lhw[:, None], s=(padded_h, padded_w),
                                        axes=(-2, -1))[:, :, :height, :width]
        colour_CHW = np.zeros((channels, height, width), np.float32)
        alpha_HW = np.zeros((height, width), np.float32)
        for layer in range(num_layers):  # far to near: the nearer layer goes over what is behind it
            layer_alpha_HW = np.clip(blurred_LKHW[layer, channels], 0.0, 1.0)
            colour_CHW = colour_CHW * (1.0 - layer_alpha_HW) + blurred_LKHW[layer, :channels]
            alpha_HW = alpha_HW * (1.0 - layer_alpha_HW) + layer_alpha_HW
        covered_HW = alpha_HW > _MIN_ACCUMULATED_ALPHA
        normalised_CHW = colour_CHW / np.where(covered_HW, alpha_HW, 1.0)
        stack_SHWC[s] = np.where(covered_HW[..., None], np.moveaxis(normalised_CHW, 0, -1), image_HWC)
    return stack_SHWC


def _check_arguments(image_HWC, depth_HW, focus_S, camera, psf, max_layers, max_radius_step_px,
                     sharp_radius_px) -> None:
    if not isinstance(camera, ThinLensCamera):
        raise ValueError(f"camera must be a ThinLensCamera, got {type(camera).__name__}.")
    if psf not in PSF_SHAPES:
        raise ValueError(f"psf must be one of {PSF_SHAPES}, got {psf!r}.")
    if image_HWC.ndim != 3 or depth_HW.shape != image_HWC.shape[:2]:
        raise ValueError(f"image must be (H, W, C) and depth (H, W) of the same size, got {image_HWC.shape} "
                         f"and {depth_HW.shape}.")
    if focus_S.size < 1:
        raise ValueError("focus_S needs at least one focus distance.")
    if not (np.all(np.isfinite(depth_HW)) and np.all(depth_HW > camera.focal_length_m)):
        raise ValueError(f"depth must be finite and beyond the focal length ({camera.focal_length_m} m) "
                         "everywhere; fill invalid pixels (e.g. with their nearest valid depth) before rendering.")
    if not (np.all(np.isfinite(focus_S)) and np.all(focus_S > camera.focal_length_m)):
        raise ValueError(f"every focus distance must be finite and beyond the focal length "
                         f"({camera.focal_length_m} m): a thin lens cannot focus closer; got {focus_S.tolist()}.")
    if not (isinstance(max_layers, (int, np.integer)) and max_layers >= 2):
        raise ValueError(f"max_layers must be an integer ≥ 2, got {max_layers!r}.")
    if not max_radius_step_px > 0:
        raise ValueError(f"max_radius_step_px must be > 0, got {max_radius_step_px!r}.")
    if not (np.isfinite(sharp_radius_px) and sharp_radius_px > 0):
        raise ValueError(f"sharp_radius_px must be a finite radius > 0 pixels (0.5 = only points render sharp), "
                         f"got {sharp_radius_px!r}.")
