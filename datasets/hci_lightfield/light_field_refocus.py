"""Shift-and-add refocusing of a 9 x 9 light field into a focal stack, in disparity units.

View (u, v) (row u, column v, centre (c, c)) sees the centre view's pixel (y, x) of disparity d at
(y + s_u d (u - c), x + s_v d (v - c)); the signs (s_u, s_v) are the light field's view-ordering convention.
Refocusing at disparity f averages every view sampled at (y + s_u f (u - c), x + s_v f (v - c)): surfaces
of disparity f add up in register (sharp), others are spread over a baseline proportional to |d - f|,
like a lens of aperture equal to the camera grid.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def translated_along_axis(image: np.ndarray, shift: float, axis: int) -> np.ndarray:
    """image sampled at index + shift along `axis`, linear interpolation, edges replicated."""
    size = image.shape[axis]
    positions = np.clip(np.arange(size, dtype=np.float64) + shift, 0, size - 1)
    low = np.floor(positions).astype(int)
    high = np.minimum(low + 1, size - 1)
    weight_shape = [1] * image.ndim
    weight_shape[axis] = size
    weight = (positions - low).reshape(weight_shape)
    return np.take(image, low, axis=axis) * (1.0 - weight) + np.take(image, high, axis=axis) * weight


def refocused_stack(views_UVHWC: np.ndarray, disparities_S, signs: tuple[int, int]) -> np.ndarray:
    """(S, H, W, C) float32 shift-and-add images of a light field, one per refocus disparity.

    Args:
      views_UVHWC: (U, V, H, W, C) views, float (any range; the output keeps it), U and V odd.
      disparities_S: (S,) refocus disparities, pixels per view step.
      signs: (s_u, s_v), each +1 or -1 (module docstring).
    """
    views = np.asarray(views_UVHWC, np.float32)
    num_u, num_v = views.shape[:2]
    centre_u, centre_v = num_u // 2, num_v // 2
    slices = []
    for disparity in np.asarray(disparities_S, np.float64):
        # Translations are linear: shift each view along x, sum each row of views, then shift the sums along y.
        total = np.zeros(views.shape[2:], np.float64)
        for u in range(num_u):
            row = sum(translated_along_axis(views[u, v], signs[1] * disparity * (v - centre_v), axis=1)
                      for v in range(num_v))
            total += translated_along_axis(row, signs[0] * disparity * (u - centre_u), axis=0)
        slices.append(total / (num_u * num_v))
    return np.stack(slices).astype(np.float32)


def view_ordering_signs(views_UVHWC: np.ndarray, disparity_HW: np.ndarray) -> tuple[int, int]:
    """(s_u, s_v) that best explain the views given the centre view's ground-truth disparity.

    For each axis, the two outermost views on the centre row (or column) are warped to the centre with
    either sign; the sign with the smaller mean absolute photometric error wins. Used so a light field
    whose views are ordered the other way round is still refocused correctly.
    """
    views = np.asarray(views_UVHWC, np.float32)
    num_u, num_v = views.shape[:2]
    centre_u, centre_v = num_u // 2, num_v // 2
    centre = views[centre_u, centre_v]
    disparity = np.asarray(disparity_HW, np.float64)
    known = np.isfinite(disparity)  # pixels without ground truth take no part in the comparison
    if not known.any():
        raise ValueError("The ground-truth disparity has no finite value to measure the view ordering with.")
    disparity = np.where(known, disparity, 0.0)
    height, width = disparity.shape
    rows, cols = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")

    def warp_error(view, row_offset, col_offset):
        coords = [rows + row_offset * disparity, cols + col_offset * disparity]
        warped = np.stack([ndimage.map_coordinates(view[..., c], coords, order=1, mode="nearest")
                           for c in range(view.shape[-1])], -1)
        return float(np.mean(np.abs(warped - centre)[known]))

    signs = []
    for axis in (0, 1):
        errors = {}
        for sign in (1, -1):
            if axis == 0:
                errors[sign] = (warp_error(views[0, centre_v], sign * (0 - centre_u), 0)
                                + warp_error(views[num_u - 1, centre_v], sign * (num_u - 1 - centre_u), 0))
            else:
                errors[sign] = (warp_error(views[centre_u, 0], 0, sign * (0 - centre_v))
                                + warp_error(views[centre_u, num_v - 1], 0, sign * (num_v - 1 - centre_v)))
        signs.append(1 if errors[1] <= errors[-1] else -1)
    return signs[0], signs[1]
