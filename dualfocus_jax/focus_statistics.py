"""Statistics of a focus distribution p_n over the focal axis: the expected depth and its spread σ.

One definition for the network's outputs, the classical baseline's uncertainty and the AvgUnc metric.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def expected_depth(prob_BSHW: jax.Array, focus_BS: jax.Array) -> jax.Array:
    """D = Σ_n p_n f_n; (B, S, H, W), (B, S) → (B, H, W) in the unit of the focus positions."""
    return jnp.einsum("bshw,bs->bhw", prob_BSHW, focus_BS)


def depth_uncertainty(prob_BSHW: jax.Array, focus_BS: jax.Array, depth_BHW: jax.Array) -> jax.Array:
    """σ = sqrt(Σ_n p_n (D − f_n)²); (B, H, W) in the unit of the focus positions.

    The square root is guarded so that σ = 0 (a one-hot p) has a zero, not an infinite, gradient.
    """
    variance = jnp.sum(prob_BSHW * jnp.square(depth_BHW[:, None] - focus_BS[:, :, None, None]), axis=1)
    positive = variance > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, variance, 1.0)), 0.0)
