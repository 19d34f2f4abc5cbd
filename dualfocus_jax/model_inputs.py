"""From dataset records to the network's input: slice selection and the model-input layout (NumPy, host side).

Examples follow `dualfocus_jax.data_features` (stack uint8 (S, H, W, 3) sorted by focus, focus_positions
(S,), depth (H, W) and valid (H, W)). The model input of one example is

    stack    float32 (S', h, w, 3) in [0, 1]  (the model applies the ImageNet mean/std itself, so the input
                                               pipeline only maps uint8 to [0, 1]: one normalisation, one place)
    focus    float32 (S',)                    focus positions × depth_scale, ascending
    depth    float32 (h, w)                   ground truth × depth_scale, same unit as focus
    valid    bool    (h, w)

Training (`dualfocus_jax.training.augment`) and evaluation (`dualfocus_jax.evaluation`) both build it here,
and both stack same-shape inputs into a batch with `stacked_inputs`.
"""

from __future__ import annotations

import numpy as np

from dualfocus_jax import data_features as F

SLICE_SAMPLINGS = ("all", "random_sorted", "linspace")


def slice_indices(num_available: int, num_slices: int, sampling: str,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """Indices (S',) int into a sorted stack of `num_available` slices, ascending (focus order kept)."""
    if num_slices > num_available:
        raise ValueError(f"asked for {num_slices} slices but the stack has {num_available}; lower num_slices.")
    if sampling == "all":
        if num_slices != num_available:
            raise ValueError(f"slice_sampling='all' needs stacks of exactly {num_slices} slices, got "
                             f"{num_available}; use 'random_sorted' or 'linspace' to pick a subset.")
        return np.arange(num_available)
    if sampling == "linspace":
        return np.round(np.linspace(0, num_available - 1, num_slices)).astype(np.int64)
    if sampling == "random_sorted":
        if rng is None:
            raise ValueError("slice_sampling='random_sorted' needs a random generator (training only).")
        return np.sort(rng.choice(num_available, size=num_slices, replace=False))
    raise ValueError(f"slice_sampling must be one of {SLICE_SAMPLINGS}, got {sampling!r}.")


def evaluation_example(example: dict, num_slices: int, slice_sampling: str, depth_scale: float = 1.0) -> dict:
    """The full-size, unaugmented model input of one example (slices by `slice_indices`, no randomness)."""
    stack = np.asarray(example[F.STACK])
    indices = slice_indices(stack.shape[0], num_slices, slice_sampling)
    return model_input(stack[indices], np.asarray(example[F.FOCUS_POSITIONS], np.float32)[indices],
                       np.asarray(example[F.DEPTH], np.float32), np.asarray(example[F.VALID], bool), depth_scale)


def model_input(stack_SHWC_u8, focus_S, depth_HW, valid_HW, depth_scale: float, *,
                normalise_focus_range: bool = False) -> dict:
    """uint8 stack → float32 [0, 1]; depth and focus × depth_scale (÷ the focus range when
    `normalise_focus_range`); contiguous copies (flips are views)."""
    if stack_SHWC_u8.dtype != np.uint8:
        raise ValueError(f"dataset stacks must be uint8 (data_features layout), got {stack_SHWC_u8.dtype}.")
    if normalise_focus_range:
        focus_range = float(np.max(focus_S) - np.min(focus_S))
        depth_scale = depth_scale / focus_range if focus_range > 0 else depth_scale
    return {
        "stack": np.ascontiguousarray(stack_SHWC_u8, np.float32) / np.float32(255.0),
        "focus": (np.asarray(focus_S, np.float32) * np.float32(depth_scale)),
        "depth": np.ascontiguousarray(depth_HW, np.float32) * np.float32(depth_scale),
        "valid": np.ascontiguousarray(valid_HW, bool),
    }


def stacked_inputs(examples, keys=None) -> dict[str, np.ndarray]:
    """Same-shape model inputs stacked into a batch: {key: (b, ...)} for `keys` (default: the first example's)."""
    keys = examples[0].keys() if keys is None else keys
    return {key: np.stack([example[key] for example in examples]) for key in keys}
