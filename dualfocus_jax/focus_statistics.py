"""Statistics of a focus distribution p_n over the focal axis: the expected depth and its spread σ.

One definition for the network's outputs, the classical baseline's uncertainty and the AvgUnc metric.

Two spaces for the expectation (`EXPECTATION_SPACES`):
  focus          D = Σ_n p_n f_n, linear in the focus values themselves.
  inverse_focus  D = 1 / Σ_n p_n / f_n, linear in inverse distance, for focus DISTANCES (> 0). Defocus blur is
                 linear in inverse distance, so when a pixel lies between two slices the split of p between
                 them (which the network reads from blur) maps to the same depth whatever the slices' spacing
                 in metres; linear in metres, evenly-spaced-in-metres stacks come out biased far.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

EXPECTATION_SPACES = ("focus", "inverse_focus")
# How the slices' focus probabilities are weighted before any statistic (DualFocusConfig.slice_prior):
#   none        p_n as the network's softmax (and unimodal projection) gives it.
#   blur_cells  p_n ∝ p_n · w_n, w_n the width of slice n's cell in a blur-linear value (inverse focus distance);
#               see `with_blur_cell_prior`.
SLICE_PRIORS = ("none", "blur_cells")


def expected_depth(prob_BSHW: jax.Array, focus_BS: jax.Array, space: str = "focus") -> jax.Array:
    """D = Σ_n p_n f_n ("focus") or 1 / Σ_n p_n / f_n ("inverse_focus", focus > 0);
    (B, S, H, W), (B, S) → (B, H, W) in the unit of the focus positions."""
    if space == "inverse_focus":
        # Σ p/f ≥ 1/f_max > 0 for positive focus distances, so the inverse is finite and within [f_1, f_S].
        return 1.0 / jnp.einsum("bshw,bs->bhw", prob_BSHW, 1.0 / focus_BS)
    _check_space(space)
    return jnp.einsum("bshw,bs->bhw", prob_BSHW, focus_BS)


def depth_uncertainty(prob_BSHW: jax.Array, focus_BS: jax.Array, depth_BHW: jax.Array,
                      space: str = "focus") -> jax.Array:
    """σ = sqrt(Σ_n p_n (D − f_n)²) ("focus"), or for "inverse_focus" the spread of 1/f propagated to depth,
    σ = sqrt(Σ_n p_n (1/D − 1/f_n)²) · D²; (B, H, W) in the unit of the focus positions.

    The square root is guarded so that σ = 0 (a one-hot p) has a zero, not an infinite, gradient.
    """
    _check_space(space)
    inverse = space == "inverse_focus"
    values = 1.0 / focus_BS if inverse else focus_BS
    mean = 1.0 / depth_BHW if inverse else depth_BHW
    variance = jnp.sum(prob_BSHW * jnp.square(mean[:, None] - values[:, :, None, None]), axis=1)
    positive = variance > 0
    sigma = jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 0.0)
    return sigma * jnp.square(depth_BHW) if inverse else sigma


def blur_cell_widths(blur_values_BS):
    """(B, S) width of each slice's cell along a blur-linear axis (inverse focus distance, diopters, disparity),
    relative to the stack's mean width: half the distance between its two neighbours, the full distance to
    the one neighbour at either end. Values sorted either way; NumPy arrays in, NumPy out, else jnp."""
    xp = np if isinstance(blur_values_BS, np.ndarray) else jnp
    gaps = xp.abs(xp.diff(blur_values_BS, axis=1))
    widths = xp.concatenate([gaps[:, :1], (gaps[:, :-1] + gaps[:, 1:]) / 2, gaps[:, -1:]], axis=1)
    return widths / xp.mean(widths, axis=1, keepdims=True)


def with_blur_cell_prior(prob_BSHW, blur_values_BS):
    """p_n · w_n / Σ_m p_m · w_m, w = `blur_cell_widths` (NumPy in, NumPy out, else jnp).

    Why: the network's costs say how sharp each slice is. Where several slices are about equally sharp (inside
    the depth of field, or between two slices) the depths left possible are spread evenly in blur, i.e. in
    inverse distance, not evenly over the slices; a slice standing for a wider stretch of inverse distance
    carries more of them. Without the weights, a stack spaced evenly in metres (slices crowded at the far end
    in inverse distance) comes out biased far, and one spaced evenly in diopters would not: the network,
    which never sees the focus values, cannot tell the two apart. For evenly blur-spaced stacks w = 1.
    """
    xp = np if isinstance(prob_BSHW, np.ndarray) else jnp
    weighted = prob_BSHW * blur_cell_widths(blur_values_BS)[:, :, None, None]
    return weighted / xp.sum(weighted, axis=1, keepdims=True)


def _check_space(space: str) -> None:
    if space not in EXPECTATION_SPACES:
        raise ValueError(f"expectation space must be one of {EXPECTATION_SPACES}, got {space!r}.")
