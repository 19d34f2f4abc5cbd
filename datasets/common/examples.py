"""Assembles one focal-stack example in the layout of `dualfocus_jax.data_features`, checking it first.

Every builder goes through `focal_example`, so every dataset stores the same dtypes, sorts its slices by
focus position the same way, and zeroes its invalid ground truth the same way.
"""

from __future__ import annotations

import numpy as np

from dualfocus_jax import data_features as F


def as_uint8_image(image: np.ndarray) -> np.ndarray:
    """uint8 as is; float in [0, 1] scaled by 255 and rounded (values outside are clipped)."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind != "f":
        raise ValueError(f"Expected uint8 or float in [0, 1] pixels, got dtype {image.dtype}.")
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def focal_example(stack_SHWC: np.ndarray, focus_positions_S, depth_HW: np.ndarray | None,
                  valid_HW: np.ndarray | None, example_id: str, *, aif_HWC: np.ndarray | None = None,
                  has_aif: bool | None = None) -> dict:
    """One example dict ready for `tfds` (keys of `dualfocus_jax.data_features`).

    Args:
      stack_SHWC: (S, H, W, 3) uint8, or float in [0, 1]; any slice order.
      focus_positions_S: (S,) finite, distinct; slices are sorted so these ascend.
      depth_HW: (H, W) ground truth in the unit of the focus positions, or None when there is none
        (stored as zeros with an all-False mask).
      valid_HW: (H, W) bool, True where `depth_HW` is ground truth; None means finite and > 0. Depth is
        set to 0 outside the mask, so no NaN or inf reaches the files.
      example_id: stable identifier, non-empty.
      aif_HWC: (H, W, 3) all-in-focus image (uint8 or float in [0, 1]), for datasets with an `aif` feature.
      has_aif: value of the `has_aif` flag, for datasets with that feature.
    """
    stack = as_uint8_image(stack_SHWC)
    if stack.ndim != 4 or stack.shape[-1] != 3 or stack.shape[0] < 2:
        raise ValueError(f"{example_id}: stack must be (S >= 2, H, W, 3), got {stack.shape}.")
    focus = np.asarray(focus_positions_S, np.float64)
    if focus.shape != (stack.shape[0],):
        raise ValueError(f"{example_id}: {focus.shape} focus positions for {stack.shape[0]} slices.")
    if not np.all(np.isfinite(focus)) or len(np.unique(focus)) != focus.size:
        raise ValueError(f"{example_id}: focus positions must be finite and distinct, got {focus.tolist()}.")
    if not example_id:
        raise ValueError("Every example needs a non-empty id.")
    order = np.argsort(focus, kind="stable")
    height, width = stack.shape[1:3]

    if depth_HW is None:
        depth = np.zeros((height, width), np.float32)
        valid = np.zeros((height, width), bool)
    else:
        depth = np.asarray(depth_HW, np.float32)
        if depth.shape != (height, width):
            raise ValueError(f"{example_id}: depth is {depth.shape}, the stack's slices are {(height, width)}.")
        finite = np.isfinite(depth)
        valid = finite & (depth > 0) if valid_HW is None else (np.asarray(valid_HW, bool) & finite)
        if valid.shape != (height, width):
            raise ValueError(f"{example_id}: valid mask is {valid.shape}, the stack's slices are {(height, width)}.")
        depth = np.where(valid, depth, 0.0).astype(np.float32)

    example = {
        F.STACK: np.ascontiguousarray(stack[order]),
        F.FOCUS_POSITIONS: focus[order].astype(np.float32),
        F.DEPTH: depth,
        F.VALID: valid,
        F.ID: example_id,
    }
    if aif_HWC is not None:
        aif = as_uint8_image(aif_HWC)
        if aif.shape != (height, width, 3):
            raise ValueError(f"{example_id}: AiF image is {aif.shape}, expected {(height, width, 3)}.")
        example[F.AIF] = aif
    if has_aif is not None:
        example[F.HAS_AIF] = np.bool_(has_aif)
    return example
