"""Per-example training augmentation of focal-stack examples (NumPy, host side); the result is the model-input
layout of `dualfocus_jax.model_inputs`.

Training recipes (docs/design/METHOD.md "Training recipes", DFV): random crops that keep at least `min_valid_fraction`
valid ground truth (DDFF-12 accepts a crop with ≥ 80 % valid pixels), random horizontal and vertical flips,
and a random subset of the slices kept in focus order (DDFF-12: 5 of 10) or evenly spaced slices
(linspace(0, S − 1, S'), DDFF-12 at test time). Every random choice comes from the generator passed in, so
grain's `random_map` makes the pipeline deterministic for a seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dualfocus_jax import data_features as F
from dualfocus_jax.model_inputs import SLICE_SAMPLINGS, model_input, slice_indices


@dataclasses.dataclass(frozen=True)
class AugmentSettings:
    """How one source's examples become training inputs.

    num_slices: S', slices per training stack.
    slice_sampling: "all" (the source must have exactly S' slices), "random_sorted" (S' of S drawn without
      replacement, kept in focus order), "linspace" (indices round(linspace(0, S − 1, S'))).
    crop_hw: (h, w) of the random crop, pixels; (0, 0) keeps the full image.
    min_valid_fraction: a crop is accepted when at least this share of its pixels has ground truth.
    max_crop_tries: candidate crops drawn before falling back to the candidate with the most valid pixels.
    flip_horizontal, flip_vertical: flip with probability 1/2 each.
    depth_scale: factor on depth and focus positions (DFV scales FoD500 by 0.2 when training with DDFF-12).
    normalise_focus_range: also divide depth and focus by the example's focus range f_S − f_1, so every
      example's depth loss is in fractions of its own range (the engine mixes 5 cm macro stacks with 50 m
      landscapes; in metres the far ones would dominate the loss). The network's focus probabilities do not
      depend on the unit (focus positions enter only the sort and the expectation).
    """

    num_slices: int
    slice_sampling: str = "all"
    crop_hw: tuple[int, int] = (0, 0)
    min_valid_fraction: float = 0.0
    max_crop_tries: int = 10
    flip_horizontal: bool = True
    flip_vertical: bool = True
    depth_scale: float = 1.0
    normalise_focus_range: bool = False

    def __post_init__(self):
        if self.slice_sampling not in SLICE_SAMPLINGS:
            raise ValueError(f"slice_sampling must be one of {SLICE_SAMPLINGS}, got {self.slice_sampling!r}.")
        if self.num_slices < 2:
            raise ValueError(f"num_slices must be ≥ 2 (a focal stack), got {self.num_slices}.")
        if len(self.crop_hw) != 2 or min(self.crop_hw) < 0:
            raise ValueError(f"crop_hw must be (height, width) ≥ 0 (0, 0 = no crop), got {self.crop_hw}.")
        if not 0.0 <= self.min_valid_fraction <= 1.0:
            raise ValueError(f"min_valid_fraction must lie in [0, 1], got {self.min_valid_fraction}.")
        if self.max_crop_tries < 1:
            raise ValueError(f"max_crop_tries must be ≥ 1, got {self.max_crop_tries}.")
        if not self.depth_scale > 0:
            raise ValueError(f"depth_scale must be > 0, got {self.depth_scale}.")


def crop_corner_with_valid_share(valid_HW: np.ndarray, crop_hw: tuple[int, int], min_valid_fraction: float,
                                 max_tries: int, rng: np.random.Generator) -> tuple[int, int]:
    """(top, left) of a random crop whose share of valid pixels is ≥ min_valid_fraction.

    Draws up to `max_tries` uniform corners and returns the first that qualifies; if none does, the
    candidate with the most valid pixels (so a hard example still trains, on its best region). The valid
    share of every candidate comes from a summed-area table, O(1) per candidate.
    """
    height, width = valid_HW.shape
    crop_h, crop_w = crop_hw
    if crop_h > height or crop_w > width:
        raise ValueError(f"crop {crop_hw} is larger than the image ({height}, {width}); lower input.crop_size.")
    table = np.zeros((height + 1, width + 1), np.int64)
    table[1:, 1:] = np.cumsum(np.cumsum(valid_HW.astype(np.int64), axis=0), axis=1)
    best, best_count = (0, 0), -1
    for _ in range(max_tries):
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        count = (table[top + crop_h, left + crop_w] - table[top, left + crop_w]
                 - table[top + crop_h, left] + table[top, left])
        if count >= min_valid_fraction * crop_h * crop_w:
            return top, left
        if count > best_count:
            best, best_count = (top, left), count
    return best


def training_example(example: dict, rng: np.random.Generator, settings: AugmentSettings) -> dict:
    """One augmented training input (layout in the module docstring) from one dataset example."""
    stack = np.asarray(example[F.STACK])
    focus = np.asarray(example[F.FOCUS_POSITIONS], np.float32)
    depth = np.asarray(example[F.DEPTH], np.float32)
    valid = np.asarray(example[F.VALID], bool)
    indices = slice_indices(stack.shape[0], settings.num_slices, settings.slice_sampling, rng)
    stack, focus = stack[indices], focus[indices]

    crop_h, crop_w = settings.crop_hw
    if crop_h and crop_w:
        top, left = crop_corner_with_valid_share(valid, (crop_h, crop_w), settings.min_valid_fraction,
                                                 settings.max_crop_tries, rng)
        rows, cols = slice(top, top + crop_h), slice(left, left + crop_w)
        stack, depth, valid = stack[:, rows, cols], depth[rows, cols], valid[rows, cols]
    stack, focus, depth, valid = flipped_example({F.STACK: stack, F.FOCUS_POSITIONS: focus, F.DEPTH: depth,
                                                  F.VALID: valid}, rng, settings)
    return model_input(stack, focus, depth, valid, settings.depth_scale,
                       normalise_focus_range=settings.normalise_focus_range)


def flipped_example(example: dict, rng: np.random.Generator, settings: AugmentSettings):
    """(stack, focus, depth, valid) of an example after its random flips (settings.flip_*)."""
    stack, focus = example[F.STACK], np.asarray(example[F.FOCUS_POSITIONS], np.float32)
    depth, valid = example[F.DEPTH], example[F.VALID]
    # Flips keep every slice aligned with the depth map: they act on H or W of all arrays alike.
    if settings.flip_horizontal and rng.random() < 0.5:
        stack, depth, valid = stack[:, :, ::-1], depth[:, ::-1], valid[:, ::-1]
    if settings.flip_vertical and rng.random() < 0.5:
        stack, depth, valid = stack[:, ::-1], depth[::-1], valid[::-1]
    return stack, focus, depth, valid
