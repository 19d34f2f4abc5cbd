"""Outputs at the input photos' pixel grid from a prediction made at a smaller working resolution.

Depth and uncertainty are upsampled bilinearly (pixel centres aligned: Pillow's convention). The all-in-focus
image is rebuilt from the full-resolution photos rather than upsampled, so it keeps their detail: each photo is
registered with the slice alignment found at the working resolution (its scale, and its shift scaled to full
pixels; see alignment.py) and blended with its upsampled per-pixel weight, AiF = Σ_s w_s·I_s / Σ_s w_s over
the slices that cover the pixel (a registered slice does not cover a thin border; there the others count).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from dualfocus_jax.focal_stack import FocalStackError, read_image
from dualfocus_jax.inference.alignment import SliceAlignment


def resize_map(array_HW: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """A float map resampled bilinearly to (height, width) (unchanged when the size is already that)."""
    array = np.asarray(array_HW, np.float32)
    if array.shape == tuple(size_hw):
        return array.copy()
    return np.array(Image.fromarray(array).resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR))


def all_in_focus_at_full_resolution(paths_S: Sequence[str], weights_SHW: np.ndarray,
                                    alignment: SliceAlignment | None, size_hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]: the photos in `paths_S` (the stack's order) blended with `weights_SHW`
    (working grid, same order), each registered by `alignment` (working-grid transforms) first."""
    height, width = size_hw
    weights = np.asarray(weights_SHW, np.float32)
    factor_y, factor_x = height / weights.shape[1], width / weights.shape[2]
    numerator = np.zeros((height, width, 3), np.float32)
    scratch = np.empty((height, width, 3), np.float32)
    scratch_hw = np.empty((height, width), np.float32)
    denominator = np.zeros((height, width), np.float32)
    reference = None
    for index, path in enumerate(paths_S):
        # The photos were accepted at load time (at a working size): Pillow's size limit does not apply here.
        pixels = read_image(path, as_float=False, beyond_pillow_limit=True)
        if pixels.shape[:2] != (height, width):
            raise FocalStackError(f"{path!r} is {pixels.shape[1]}x{pixels.shape[0]} px now, {width}x{height} when it "
                                  "was loaded: it changed during the run. Run again.")
        eight_bit_rgb = pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[-1] == 3
        if not eight_bit_rgb:
            pixels = read_image(path, beyond_pillow_limit=True)  # float32 RGB in [0, 1]
        weight = resize_map(weights[index], size_hw)
        if alignment is not None and index != alignment.reference_index:
            scale = float(alignment.scale_S[index])
            shift_y = float(alignment.shift_yx_S2[index][0]) * factor_y
            shift_x = float(alignment.shift_yx_S2[index][1]) * factor_x
            pixels, covered = _warp(pixels, scale, shift_y, shift_x)
            weight *= covered
        # 8-bit pixels enter the sum as they are (float32 products; /255 below): no float copy of each photo,
        # and the products go to one reused buffer (at 12 MP each temporary is 150 MB).
        if eight_bit_rgb:
            weight_scaled = np.multiply(weight, np.float32(1.0 / 255.0), out=scratch_hw)
        else:
            weight_scaled = weight
        np.multiply(pixels, weight_scaled[..., None], out=scratch)
        numerator += scratch
        denominator += weight
        if reference is None and (alignment is None or index == alignment.reference_index):
            reference = (pixels, eight_bit_rgb)
    np.maximum(denominator, 1e-12, out=scratch_hw)
    blended = np.divide(numerator, scratch_hw[..., None], out=numerator)
    uncovered = denominator <= 1e-6
    if np.any(uncovered):
        pixels, eight_bit = reference
        blended[uncovered] = pixels[uncovered].astype(np.float32) / (255.0 if eight_bit else 1.0)
    return np.clip(blended, 0.0, 1.0, out=blended)


def _warp(image_HWC: np.ndarray, scale: float, shift_y: float, shift_x: float):
    """`alignment.warp_similarity` for large images (Pillow's affine resampling, much faster than skimage's
    warp at 12 MP; the same map, checked in the tests), plus the mask of output pixels whose source lies
    inside the photo."""
    height, width = image_HWC.shape[:2]

    def axis(size, shift):
        centre = (size - 1) / 2.0
        # Pillow samples output pixel centre u (pixel i at u = i + 0.5) at input u / s + offset.
        return 1.0 / scale, (-0.5 - centre - shift) / scale + centre + 0.5

    ax, cx = axis(width, shift_x)
    ay, cy = axis(height, shift_y)

    def transform(plane):
        return np.asarray(Image.fromarray(np.ascontiguousarray(plane)).transform(
            (width, height), Image.Transform.AFFINE, (ax, 0.0, cx, 0.0, ay, cy), resample=Image.Resampling.BILINEAR))

    if image_HWC.dtype == np.uint8 and image_HWC.ndim == 3 and image_HWC.shape[-1] in (3, 4):
        warped = transform(image_HWC)  # one call for all channels of an 8-bit RGB(A) image
    else:
        warped = np.stack([transform(image_HWC[..., c]) for c in range(image_HWC.shape[-1])], axis=-1)
    source_x = (np.arange(width) + 0.5) * ax + cx - 0.5  # source pixel index of each output column / row
    source_y = (np.arange(height) + 0.5) * ay + cy - 0.5
    inside = ((source_y >= -0.5) & (source_y <= height - 0.5))[:, None] & \
             ((source_x >= -0.5) & (source_x <= width - 0.5))[None, :]
    return warped, inside.astype(np.float32)
