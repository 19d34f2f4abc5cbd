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
"""

from __future__ import annotations

import dataclasses

import numpy as np
from skimage.registration import phase_cross_correlation
from skimage.transform import AffineTransform, rescale, warp


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
    h, w = image_HWC.shape[:2]
    centre_xy = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    translation_xy = centre_xy - scale * centre_xy + np.array([shift_yx[1], shift_yx[0]])
    forward = AffineTransform(scale=scale, translation=translation_xy)
    # skimage's warp takes the inverse map (output coordinates → input coordinates).
    return warp(image_HWC, forward.inverse, order=1, mode="edge", preserve_range=True).astype(np.float32)


def _grey_small(image_HWC: np.ndarray, factor: float) -> np.ndarray:
    grey = image_HWC.mean(axis=-1)
    if factor < 1.0:
        grey = rescale(grey, factor, anti_aliasing=True, preserve_range=True)
    # Zero mean and a smooth window stop the image borders from dominating the phase correlation.
    window = np.outer(np.hanning(grey.shape[0]), np.hanning(grey.shape[1]))
    return ((grey - grey.mean()) * window).astype(np.float32)


def _register_pair(moving: np.ndarray, fixed: np.ndarray, scale_range: float, scale_steps: int):
    """(scale, (dy, dx)) mapping `moving` onto `fixed` (both small grey images), by scale search + phase
    correlation; the translation is in small-image pixels."""
    candidates = np.linspace(1.0 - scale_range, 1.0 + scale_range, int(scale_steps) | 1)
    peaks = []
    for scale in candidates:
        scaled = warp_similarity(moving[..., None], scale, np.zeros(2))[..., 0]
        shift, error, _ = phase_cross_correlation(fixed, scaled, normalization=None)
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
    shift, _, _ = phase_cross_correlation(fixed, scaled, upsample_factor=20, normalization=None)
    return float(scale), np.asarray(shift, np.float64)
