"""Exact Euclidean projection of focus probabilities onto unimodal distributions (inference-time L_fv).

The training penalty (`focal_penalty`) only discourages multi-modal focus curves; this projection makes the
focal constraint hold exactly at test time (docs/design/METHOD.md, "The design's own demand", a choice beyond the
paper).

Method (exact, no iterations). A sequence is unimodal iff it is a non-decreasing prefix followed by a
non-increasing suffix, split at some t ∈ {0..S}. For a fixed split the projection separates into an
isotonic (non-decreasing) L2 regression of p[:t] and an antitonic one of p[t:]; the projection onto the
(non-convex) unimodal set is the best of the S+1 splits (Stout's unimodal regression, with the split
searched exhaustively). The isotonic fits of all prefixes come from one left-to-right pass that uses the
structure of pool-adjacent-violators: the last block of the fit of p[:t] is p[a..t−1] with the largest mean
over a (the largest such a), and the blocks before it are exactly the fit of p[:a]. Hence

    err(t) = err(a*(t)) + Σ_{a*(t) ≤ j < t} (p_j − mean(p[a*(t)..t−1]))²

a `lax.scan` of S steps of O(S) work each (O(S²) per pixel, O(S) memory per step), and the fit of the
chosen prefix is rebuilt by following the block starts a*(t), a*(a*(t)), ... back to 0.

Properties, in exact arithmetic and also in floating point where stated:
* unimodal output: a running maximum over each rebuilt fit makes it monotone exactly, even where equal block
  means round differently;
* isotonic fits are block means, so they keep the sum and the non-negativity of their piece: the
  projection of a distribution is a distribution and is therefore also the projection onto unimodal
  *distributions* (the simplex constraint is inactive); a final division by the sum removes rounding drift;
* idempotent: an input that is already unimodal (checked with exact comparisons) is returned unchanged.
The chosen split is a discrete argmin taken under `stop_gradient`; the map is piecewise linear in p and
differentiable almost everywhere (gradients flow through the selected block means).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp


def _prefix_isotonic_blocks(x_S: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The last block of the non-decreasing L2 fit of every prefix of x, and every prefix's squared error.

    Returns (each (..., S + 1), index t = prefix length; entry 0 is the empty prefix):
      start: a*(t), where the fit's last block p[a*..t−1] begins (0 for t = 0).
      value: that block's mean, the fit's value on it (0 for t = 0).
      sq_error: Σ_{i<t} (fit − x_i)² (0 for t = 0).
    """
    num = x_S.shape[-1]
    pos = jnp.arange(num)

    def extend(sq_errors, t):
        # Suffix sums of x[:t + 1] over every start a, as sums of non-negative terms (no cancellation).
        upto = jnp.where(pos <= t, x_S, 0.0)
        suffix_sums = jax.lax.cumsum(upto, axis=upto.ndim - 1, reverse=True)
        means = jnp.where(pos <= t, suffix_sums / jnp.maximum(t + 1 - pos, 1).astype(x_S.dtype), -jnp.inf)
        # Largest maximiser: PAV does not merge blocks of equal mean, so the last block is the shortest.
        start = num - 1 - jnp.argmax(jnp.flip(means, axis=-1), axis=-1)
        start = jax.lax.stop_gradient(start)
        value = jnp.take_along_axis(means, start[..., None], axis=-1)[..., 0]
        in_block = (pos >= start[..., None]) & (pos <= t)
        block_error = jnp.sum(jnp.where(in_block, (x_S - value[..., None]) ** 2, 0.0), axis=-1)
        before = jnp.take_along_axis(sq_errors, start[..., None], axis=-1)[..., 0]
        sq_errors = jnp.where(jnp.arange(num + 1) == t + 1, (before + block_error)[..., None], sq_errors)
        return sq_errors, (start, value)

    initial = jnp.zeros((*x_S.shape[:-1], num + 1), x_S.dtype)
    sq_errors, (starts, values) = jax.lax.scan(extend, initial, pos)  # starts, values: (S, ...)
    zero = jnp.zeros_like(x_S[..., :1])
    starts = jnp.concatenate([zero.astype(starts.dtype), jnp.moveaxis(starts, 0, -1)], axis=-1)
    values = jnp.concatenate([zero, jnp.moveaxis(values, 0, -1)], axis=-1)
    return starts, values, sq_errors


def _prefix_fit(starts: jax.Array, values: jax.Array, length: jax.Array, num: int) -> jax.Array:
    """The isotonic fit of the prefix of `length` (..., ) from `_prefix_isotonic_blocks`; 0 beyond it. (..., S)."""
    pos = jnp.arange(num)
    fit = jnp.zeros((*length.shape, num), values.dtype)
    end = length
    for _ in range(num):  # at most S blocks; each pass fills the block that ends at `end`
        start = jnp.take_along_axis(starts, end[..., None], axis=-1)[..., 0]
        value = jnp.take_along_axis(values, end[..., None], axis=-1)[..., 0]
        in_block = (pos >= start[..., None]) & (pos < end[..., None])
        fit = jnp.where(in_block, value[..., None], fit)
        end = start
    # Block means are non-decreasing in exact arithmetic; equal ones computed over different windows can
    # round one ulp apart, and the running maximum makes the fit exactly monotone (a no-op otherwise).
    fit = jax.lax.cummax(fit, axis=fit.ndim - 1)
    return jnp.where(pos < length[..., None], fit, 0.0)


def is_unimodal(x_S: jax.Array) -> jax.Array:
    """True where x (..., S) is non-decreasing up to its first argmax and non-increasing after; (...,) bool."""
    mode = jnp.argmax(x_S, axis=-1)[..., None]
    rise = x_S[..., 1:] - x_S[..., :-1]
    ok = jnp.where(jnp.arange(x_S.shape[-1] - 1) < mode, rise >= 0, rise <= 0)
    return jnp.all(ok, axis=-1)


def project_unimodal(prob, axis: int = 1) -> jax.Array:
    """Projects focus probabilities onto unimodal distributions along `axis`; returns the same shape.

    Args:
      prob: focus probabilities, e.g. (B, S, H, W) with the slices on `axis`, non-negative and summing to 1
        along it (a softmax output). The cost is O(S²) per pixel.
      axis: the focal (slice) axis.

    Returns:
      The Euclidean projection of each focus curve onto {non-decreasing up to a mode, non-increasing after},
      which for such inputs is non-negative and sums to 1 (divided by its sum to remove rounding drift).
      Already unimodal curves come back bit-for-bit unchanged. Jit-able and differentiable (see module doc).
    """
    prob = jnp.asarray(prob)
    if prob.ndim < 1:
        raise ValueError("prob must have a focal axis, got a scalar; pass e.g. (B, S, H, W) probabilities.")
    if not -prob.ndim <= axis < prob.ndim:
        raise ValueError(f"axis={axis} is out of range for prob of shape {prob.shape}; pass the focal axis.")
    if not jnp.issubdtype(prob.dtype, jnp.floating):
        raise ValueError(f"prob must be a float array of probabilities, got dtype {prob.dtype}.")

    return _project_unimodal_validated(prob, axis % prob.ndim)


@functools.partial(jax.jit, static_argnums=1)
def _project_unimodal_validated(prob: jax.Array, axis: int) -> jax.Array:
    # Jitted core behind the validating wrapper. Low-precision inputs are fitted in float32 and cast back
    # (rounding is monotone, so the cast keeps the result unimodal).
    x = jnp.moveaxis(prob, axis, -1).astype(jnp.result_type(prob.dtype, jnp.float32))  # (..., S)
    num = x.shape[-1]
    # A non-increasing fit of x[t:] is a non-decreasing fit of the reversed sequence's prefix of length
    # S − t: both directions go through one call (stacked on a leading axis) to share the compiled scan.
    starts, values, errors = _prefix_isotonic_blocks(jnp.stack([x, jnp.flip(x, axis=-1)]))
    split_err = errors[0] + jnp.flip(errors[1], axis=-1)  # (..., S + 1), index t = prefix length
    split = jax.lax.stop_gradient(jnp.argmin(split_err, axis=-1))  # (...,)
    prefix = _prefix_fit(starts[0], values[0], split, num)
    suffix_reversed = _prefix_fit(starts[1], values[1], num - split, num)
    position = jnp.arange(num)
    projected = jnp.where(position < split[..., None], prefix, jnp.flip(suffix_reversed, axis=-1))

    total = jnp.sum(projected, axis=-1, keepdims=True)
    # Scaling by a positive number keeps the order of the entries, so the result stays exactly unimodal.
    projected = projected / jnp.where(total > 0, total, jnp.ones_like(total))
    result = jnp.where(is_unimodal(x)[..., None], x, projected)
    return jnp.moveaxis(result, -1, axis).astype(prob.dtype)
