"""Registration of the slices of a hand-held focal stack: a similarity transform (scale + translation) each.

Real stacks move between shots (hand shake: translation) and magnify slightly with focus (focus breathing:
a scale change of a few per cent about the image centre, larger for near focus). Rotation is negligible for
both, so the model is x' = s·(x − c) + c + t. Each slice is registered to its neighbour towards the
reference slice (the middle one), and the transforms are chained: neighbours differ least in blur, which
keeps phase correlation reliable even between the nearest- and farthest-focused slices.

Estimation runs on a grey, downscaled copy (longer side `work_size` px): the scale by an exhaustive search
over `scale_range` (each candidate warped, then phase-correlated for the translation; the candidate whose
correlation peak is strongest wins, refined by a parabola through its neighbours), the translation by
sub-pixel phase correlation. Warping uses edge padding, so no black borders appear that a focus measure or
the network would read as sharp edges.

Everything is NumPy: the warp, the anti-aliased downscaling and the phase correlation compute what
scikit-image's `warp(order=1, mode="edge")`, `rescale(anti_aliasing=True)` and `phase_cross_correlation`
compute (tests/test_predict_units.py compares them), without the half second their imports (SciPy) cost a
prediction.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class SliceAlignment:
    """The similarity transform mapping slice pixels onto the reference's (per slice).

    scale_S: magnification of each slice relative to the reference (1 = none).
    shift_yx_S2: translation in pixels of the full-size image, (dy, dx), applied after the scale about the
      image centre.
    reference_index: the slice everything was registered to.
    """

    scale_S: np.ndarray
    shift_yx_S2: np.ndarray
    reference_index: int


def align_focal_stack(images_SHWC: np.ndarray, *, reference_index: int | None = None, work_size: int = 256,
                      scale_range: float = 0.04, scale_steps: int = 17) -> tuple[np.ndarray, SliceAlignment]:
    """Registers every slice to the reference slice; returns (aligned images (S, H, W, C) float32, alignment).

    Args:
      images_SHWC: focal stack, float in [0, 1], sorted by focus position.
      reference_index: slice to register to; None = the middle slice.
      work_size: longer side in pixels of the grey copy the transforms are estimated on.
      scale_range: largest relative scale change searched between neighbouring slices (0.04 = ±4 %).
      scale_steps: odd number of scale candidates in [1 − scale_range, 1 + scale_range].
    """
    images = np.asarray(images_SHWC, np.float32)
    if images.ndim != 4 or images.shape[0] < 2:
        raise ValueError(f"images must have shape (S, H, W, C) with S >= 2, got {images.shape}.")
    s, h, w, _ = images.shape
    reference = s // 2 if reference_index is None else int(reference_index)
    if not 0 <= reference < s:
        raise ValueError(f"reference_index must be in [0, {s - 1}], got {reference_index}.")
    factor = min(1.0, work_size / max(h, w))
    grey = [_grey_small(image, factor) for image in images]

    # Transform of each slice onto the reference, chained through the neighbours (small-image pixels).
    scales = np.ones(s)
    shifts = np.zeros((s, 2))
    for direction in (-1, 1):
        index = reference + direction
        while 0 <= index < s:
            step_scale, step_shift = _register_pair(grey[index], grey[index - direction], scale_range, scale_steps)
            previous = index - direction
            # Composition: x → s1(x − c) + c + t1 (to the neighbour), then the neighbour's s0, t0.
            scales[index] = scales[previous] * step_scale
            shifts[index] = scales[previous] * step_shift + shifts[previous]
            index += direction
    shifts_full = shifts / factor
    aligned = np.stack([images[i] if i == reference else warp_similarity(images[i], scales[i], shifts_full[i])
                        for i in range(s)])
    return aligned.astype(np.float32), SliceAlignment(scales, shifts_full, reference)


def warp_similarity(image_HWC: np.ndarray, scale: float, shift_yx: np.ndarray) -> np.ndarray:
    """The image resampled so that its pixel x lands at s·(x − c) + c + t (bilinear, edge padding)."""
    image = np.asarray(image_HWC, np.float32)
    h, w = image.shape[:2]
    # Output pixel x samples the input at (x − c − t) / s + c; without rotation the map is separable, so the
    # bilinear weights are found per row and per column, and source indices beyond the border are clamped.
    rows = _bilinear_taps(h, (np.arange(h) - (h - 1) / 2.0 - shift_yx[0]) / scale + (h - 1) / 2.0)
    columns = _bilinear_taps(w, (np.arange(w) - (w - 1) / 2.0 - shift_yx[1]) / scale + (w - 1) / 2.0)
    return _resample(image, rows, columns)


def _bilinear_taps(size: int, source: np.ndarray):
    """(lower index, upper index, weight of the upper) of linear interpolation at `source` positions of an
    axis of `size` samples, indices clamped to the axis (edge padding)."""
    lower = np.floor(source)
    weight = (source - lower).astype(np.float32)
    lower = lower.astype(np.int64)
    return np.clip(lower, 0, size - 1), np.clip(lower + 1, 0, size - 1), weight


def _resample(image: np.ndarray, rows, columns) -> np.ndarray:
    """Separable linear interpolation of the first two axes of `image` at the taps of `_bilinear_taps`."""
    low, high, weight = rows
    weight = weight.reshape((-1,) + (1,) * (image.ndim - 1))
    along_rows = image[low] * (1 - weight) + image[high] * weight
    low, high, weight = columns
    weight = weight.reshape((-1,) + (1,) * (image.ndim - 2))
    return (along_rows[:, low] * (1 - weight) + along_rows[:, high] * weight).astype(np.float32)


def _grey_small(image_HWC: np.ndarray, factor: float) -> np.ndarray:
    grey = image_HWC.mean(axis=-1)
    if factor < 1.0:
        grey = _rescale_anti_aliased(grey, factor)
    # Zero mean and a smooth window stop the image borders from dominating the phase correlation.
    window = np.outer(np.hanning(grey.shape[0]), np.hanning(grey.shape[1]))
    return ((grey - grey.mean()) * window).astype(np.float32)


def _rescale_anti_aliased(image_HW: np.ndarray, factor: float) -> np.ndarray:
    """A grey image scaled by `factor` < 1 as skimage's rescale(anti_aliasing=True) does it: a Gaussian of
    standard deviation (in/out − 1)/2 pixels per axis, then linear interpolation at the output pixel centres,
    mirrored at the borders."""
    image = np.asarray(image_HW, np.float64)
    out_shape = [max(1, round(factor * n)) for n in image.shape]
    blurred = image
    for axis, (size, out) in enumerate(zip(image.shape, out_shape)):
        sigma = max(0.0, (size / out - 1.0) / 2.0)
        if sigma > 1e-15:
            blurred = _gaussian_along(blurred, sigma, axis)
    taps = [_mirrored_taps(size, (np.arange(out) + 0.5) * size / out - 0.5)
            for size, out in zip(image.shape, out_shape)]
    low, high, weight = taps[0]
    rows = blurred[low] * (1 - weight[:, None]) + blurred[high] * weight[:, None]
    low, high, weight = taps[1]
    scaled = rows[:, low] * (1 - weight) + rows[:, high] * weight
    return np.clip(scaled, image.min(), image.max())


def _gaussian_along(image: np.ndarray, sigma: float, axis: int) -> np.ndarray:
    """SciPy's gaussian_filter1d (truncated at 4 sigma) with mode "mirror" (d c b | a b c d | c b a, NumPy's
    "reflect" padding)."""
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    size = image.shape[axis]
    moved = np.moveaxis(image, axis, 0)
    if size > radius:
        padded = np.pad(moved, [(radius, radius)] + [(0, 0)] * (moved.ndim - 1), mode="reflect")
    else:  # too short to pad by reflection once: index the mirrored positions
        padded = moved[_mirror(np.arange(-radius, size + radius), size)]
    result = np.zeros_like(moved)
    for tap, weight in enumerate(kernel):
        result += weight * padded[tap:tap + size]
    return np.moveaxis(result, 0, axis)


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    index = np.abs(index) % period
    return np.where(index >= size, period - index, index)


def _mirrored_taps(size: int, source: np.ndarray):
    """`_bilinear_taps` with the positions mirrored into the axis instead of clamped."""
    if size > 1:
        period = 2.0 * (size - 1)
        source = np.abs(source) % period
        source = np.where(source > size - 1, period - source, source)
    else:
        source = np.zeros_like(source)
    lower = np.floor(source)
    weight = source - lower
    lower = lower.astype(np.int64)
    return lower, np.minimum(lower + 1, size - 1), weight


def _register_pair(moving: np.ndarray, fixed: np.ndarray, scale_range: float, scale_steps: int):
    """(scale, (dy, dx)) mapping `moving` onto `fixed` (both small grey images), by scale search + phase
    correlation; the translation is in small-image pixels."""
    candidates = np.linspace(1.0 - scale_range, 1.0 + scale_range, int(scale_steps) | 1)
    fixed_half = np.fft.rfft2(fixed)
    fixed_energy = float(np.sum(np.square(fixed, dtype=np.float64)))
    peaks = []
    for scale in candidates:
        scaled = warp_similarity(moving[..., None], scale, np.zeros(2))[..., 0]
        # The integer-pixel peak of the cross-correlation (skimage's phase_cross_correlation without
        # upsampling, by real FFTs: the same correlation at half the cost) and its normalised height.
        correlation = np.fft.irfft2(fixed_half * np.fft.rfft2(scaled).conj(), s=fixed.shape)
        height = float(np.max(np.abs(correlation)))
        energy = fixed_energy * float(np.sum(np.square(scaled, dtype=np.float64)))
        error = math.sqrt(abs(1.0 - height * height / energy)) if energy > 0 else math.nan
        peaks.append(1.0 - error)  # error = 1 − normalised cross-power peak: larger peak = better match
    peaks = np.asarray(peaks)
    best = int(np.argmax(peaks))
    scale = candidates[best]
    if 0 < best < len(candidates) - 1:
        # Parabola through the peak and its neighbours: sub-step scale.
        left, centre, right = peaks[best - 1:best + 2]
        denominator = left - 2 * centre + right
        if denominator < 0:
            scale += 0.5 * (left - right) / denominator * (candidates[1] - candidates[0])
    scaled = warp_similarity(moving[..., None], scale, np.zeros(2))[..., 0]
    shift, _ = _phase_correlation(np.fft.fft2(fixed), np.fft.fft2(scaled), upsample_factor=20)
    return float(scale), np.asarray(shift, np.float64)


def _phase_correlation(fixed_spectrum: np.ndarray, moving_spectrum: np.ndarray, *, upsample_factor: int = 1):
    """(shift (dy, dx) that registers the moving image to the fixed one, error) from their 2-D FFTs: skimage's
    `phase_cross_correlation(fixed, moving, upsample_factor=..., normalization=None)` (Guizar-Sicairos et
    al. 2008: the integer peak of the cross-correlation, refined on a grid `upsample_factor` times finer by a
    matrix-multiply DFT around it). error = sqrt(|1 − |peak|² / (energy_fixed · energy_moving)|)."""
    shape = fixed_spectrum.shape
    product = fixed_spectrum * moving_spectrum.conj()
    correlation = np.fft.ifft2(product)
    peak = np.unravel_index(int(np.argmax(np.abs(correlation))), shape)
    float_dtype = product.real.dtype
    shift = np.array(peak, float_dtype)
    midpoint = np.array([math.trunc(n / 2) for n in shape])
    wrap = shift > midpoint
    shift[wrap] -= np.array(shape, float_dtype)[wrap]
    fixed_energy = np.sum(np.real(fixed_spectrum * fixed_spectrum.conj()))
    moving_energy = np.sum(np.real(moving_spectrum * moving_spectrum.conj()))
    if upsample_factor == 1:
        fixed_energy, moving_energy = fixed_energy / fixed_spectrum.size, moving_energy / moving_spectrum.size
        peak_value = correlation[peak]
    else:
        factor = float_dtype.type(upsample_factor)
        shift = np.round(shift * factor) / factor
        region = math.ceil(upsample_factor * 1.5)
        centre = math.trunc(region / 2.0)
        offsets = centre - shift * factor
        refined = _upsampled_dft(product.conj(), region, factor, offsets).conj()
        peak = np.unravel_index(int(np.argmax(np.abs(refined))), refined.shape)
        peak_value = refined[peak]
        shift = shift + (np.array(peak, float_dtype) - centre) / factor
    for axis, size in enumerate(shape):
        if size == 1:
            shift[axis] = 0
    with np.errstate(invalid="ignore", divide="ignore"):
        error = 1.0 - peak_value * peak_value.conj() / (fixed_energy * moving_energy)
    return shift, float(np.sqrt(np.abs(error)))


def _upsampled_dft(data: np.ndarray, region: int, factor, offsets) -> np.ndarray:
    """The `region`² samples, starting at `offsets`, of the DFT of `data` zero-padded `factor` times (by
    matrix multiplication, as skimage's _upsampled_dft)."""
    for size, offset in list(zip(data.shape, offsets))[::-1]:
        kernel = (np.arange(region) - offset)[:, None] * np.fft.fftfreq(size, factor)
        kernel = np.exp(-2j * np.pi * kernel).astype(data.dtype, copy=False)
        data = np.tensordot(kernel, data, axes=(1, -1))
    return data
