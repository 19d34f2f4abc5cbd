"""Focal variational loss L_fv of DualFocus: penalise focus probabilities that are not unimodal.

docs/design/METHOD.md ("Losses"): with k(x) = argmax_n p_n(x),
    L_fv = Σ_x [ Σ_{i<k} max(0, p_i − p_{i+1})² + Σ_{i≥k} max(0, p_{i+1} − p_i)² ],
i.e. every drop on the way up to the mode and every rise after it is penalised quadratically. Slices are
indexed 0..S−1 here: the first sum runs over pairs (i, i+1) with i+1 ≤ k, the second over pairs with
i ≥ k and i+1 ≤ S−1. A unimodal p (non-decreasing up to its argmax, non-increasing after) costs exactly 0.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def focal_unimodality_penalty(prob_BSHW, axis: int = 1) -> jax.Array:
    """Per-example focal unimodality penalty; returns (B,), summed over all pixels (unit: probability²).

    Args:
      prob_BSHW: (B, S, H, W) focus probabilities along the focal axis (any number of trailing pixel axes
        works, e.g. (B, S, N) or (B, H, W, S) with axis=-1); the values are not required to sum to 1.
      axis: the focal (slice) axis; must not be 0, the batch axis.

    The mode k(x) = argmax_n p_n(x) is a discrete choice: it is taken under `stop_gradient`, so the gradient
    flows through the penalised differences only, with the mode held fixed (ties pick the first maximum).
    """
    prob = jnp.asarray(prob_BSHW)
    if prob.ndim < 2:
        raise ValueError(f"prob must have a batch axis and a focal axis, e.g. (B, S, H, W); got shape {prob.shape}.")
    if not -prob.ndim <= axis < prob.ndim:
        raise ValueError(f"axis={axis} is out of range for prob of shape {prob.shape}; pass the focal (slice) axis.")
    axis = axis % prob.ndim
    if axis == 0:
        raise ValueError("axis=0 is the batch axis; pass the focal axis (1 for (B, S, H, W)).")
    if not jnp.issubdtype(prob.dtype, jnp.floating):
        raise ValueError(f"prob must be a float array of probabilities, got dtype {prob.dtype}.")

    return _focal_unimodality_penalty_validated(prob, axis)


@functools.partial(jax.jit, static_argnums=1)
def _focal_unimodality_penalty_validated(prob: jax.Array, axis: int) -> jax.Array:
    # Squares of small differences summed over many pixels: accumulate in at least float32 (bf16 inputs).
    prob = jnp.moveaxis(prob, axis, -1).astype(jnp.result_type(prob.dtype, jnp.float32))  # (B, ..., S)
    num_slices = prob.shape[-1]
    mode = jax.lax.stop_gradient(jnp.argmax(prob, axis=-1))[..., None]  # (B, ..., 1)
    pair_index = jnp.arange(num_slices - 1)  # pair (i, i+1)
    rise = prob[..., 1:] - prob[..., :-1]  # p_{i+1} − p_i, (B, ..., S−1)
    before_mode = pair_index < mode  # i < k: a drop (negative rise) violates
    violation = jnp.where(before_mode, jnp.maximum(-rise, 0.0), jnp.maximum(rise, 0.0))
    return jnp.sum(violation**2, axis=tuple(range(1, violation.ndim)))
