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

EXPECTATION_SPACES = ("focus", "inverse_focus")


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


def _check_space(space: str) -> None:
    if space not in EXPECTATION_SPACES:
        raise ValueError(f"expectation space must be one of {EXPECTATION_SPACES}, got {space!r}.")
