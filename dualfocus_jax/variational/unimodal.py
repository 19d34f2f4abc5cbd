"""Exact Euclidean projection of focus probabilities onto unimodal distributions (inference-time L_fv).

The training penalty (`focal_penalty`) only discourages multi-modal focus curves; this projection makes the
focal constraint hold exactly at test time (METHOD.md, "The design's own demand", a choice beyond the paper).

Method (exact, no iterations). A sequence is unimodal iff it is a non-decreasing prefix followed by a
non-increasing suffix, split at some t ∈ {0..S}. For a fixed split the projection separates into an
isotonic (non-decreasing) L2 regression of p[:t] and an antitonic one of p[t:]; the projection onto the
(non-convex) unimodal set is the best of the S+1 splits (Stout's unimodal regression, with the split
searched exhaustively, which is cheap for S ≤ ~20 slices). Each isotonic fit uses the closed form

    q_i = max_{a ≤ i} min_{i ≤ b < t} mean(p[a..b])

evaluated for all prefix lengths t at once by a running minimum over b: a `lax.scan` of S steps of
O(S²) work each, so O(S³) per pixel in time and O(S²) in memory.

Properties, in exact arithmetic and also in floating point where stated:
* unimodal output: the min/max formula makes each fit monotone exactly, even with rounded means;
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
import numpy as np


def _window_means(x_S: jax.Array) -> jax.Array:
    """means[..., a, b] = mean(x[..., a..b]) for a ≤ b (0 elsewhere); (..., S) → (..., S, S).

    A contraction with a constant 0/1 window indicator rather than differences of a cumulative sum: the
    latter cancels catastrophically for tiny probabilities and can even make them negative, while a sum of
    non-negative terms stays non-negative and accurate. `precision="highest"` keeps GPUs from using TF32.
    """
    num = x_S.shape[-1]
    j = np.arange(num)
    inside_jab = (j[:, None, None] >= j[None, :, None]) & (j[:, None, None] <= j[None, None, :])
    count_ab = np.maximum(j[None, :] - j[:, None] + 1, 1)
    sums = jnp.einsum("...j,jab->...ab", x_S, jnp.asarray(inside_jab, x_S.dtype), precision="highest")
    return sums / jnp.asarray(count_ab, x_S.dtype)


def _prefix_isotonic_fits(x_S: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Non-decreasing L2 fits of every prefix of x.

    Returns:
      fits: (..., S, S), fits[..., t − 1, i] = isotonic fit of x[:t] at i (for i < t; 0 for i ≥ t).
      sq_errors: (..., S + 1), sq_errors[..., t] = Σ_{i<t} (fit − x_i)² of the prefix of length t (t = 0: 0).
    """
    num = x_S.shape[-1]
    means = _window_means(x_S)  # (..., a, b)
    pos = jnp.arange(num)

    # One `lax.scan` step per position i, each with fixed (S, S) shapes, so the compiled program does not
    # grow with S; `checkpoint` recomputes a step in the backward pass instead of storing S² per step.
    @jax.checkpoint
    def fit_at_position(_, i):
        # Candidates a ≤ i ≤ b; a running min over the end b gives min_{i≤b≤t−1} for every prefix length t.
        candidates = jnp.where((pos[:, None] <= i) & (i <= pos[None, :]), means, jnp.inf)
        min_over_ends = jax.lax.cummin(candidates, axis=candidates.ndim - 1)  # (..., a, t − 1)
        min_over_ends = jnp.where(pos[:, None] <= i, min_over_ends, -jnp.inf)
        fit = jnp.max(min_over_ends, axis=-2)  # (..., t − 1)
        # Prefixes that end before i do not contain i (their fit is +inf here); zero them before any
        # arithmetic so neither values nor gradients see the infinity.
        return None, jnp.where(pos >= i, fit, 0.0)

    _, fits = jax.lax.scan(fit_at_position, None, pos)  # (i, ..., t − 1)
    fits = jnp.moveaxis(fits, 0, -1)  # (..., t − 1, i)
    in_prefix = pos[None, :] <= pos[:, None]  # (t − 1, i): i < t
    sq = jnp.where(in_prefix, (fits - x_S[..., None, :]) ** 2, 0.0)
    sq_errors = jnp.concatenate([jnp.zeros_like(x_S[..., :1]), jnp.sum(sq, axis=-1)], axis=-1)
    return fits, sq_errors


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
        along it (a softmax output). S ≤ ~20 keeps the O(S³) per-pixel cost small.
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
    fits, errs = _prefix_isotonic_fits(jnp.stack([x, jnp.flip(x, axis=-1)]))
    (prefix_fits, suffix_fits_rev), (prefix_err, suffix_err_rev) = fits, errs
    split_err = prefix_err + jnp.flip(suffix_err_rev, axis=-1)  # (..., S + 1), index t = prefix length
    split = jax.lax.stop_gradient(jnp.argmin(split_err, axis=-1))[..., None, None]  # (..., 1, 1)

    prefix_row = jnp.take_along_axis(prefix_fits, jnp.maximum(split - 1, 0), axis=-2)[..., 0, :]
    suffix_row = jnp.take_along_axis(suffix_fits_rev, jnp.maximum(num - split - 1, 0), axis=-2)[..., 0, :]
    position = jnp.arange(num)
    projected = jnp.where(position < split[..., 0], prefix_row, jnp.flip(suffix_row, axis=-1))

    total = jnp.sum(projected, axis=-1, keepdims=True)
    # Scaling by a positive number keeps the order of the entries, so the result stays exactly unimodal.
    projected = projected / jnp.where(total > 0, total, jnp.ones_like(total))
    result = jnp.where(is_unimodal(x)[..., None], x, projected)
    return jnp.moveaxis(result, -1, axis).astype(prob.dtype)
