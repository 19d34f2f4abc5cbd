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
chosen prefix is rebuilt by following the block starts a*(t), a*(a*(t)), ... back to 0. The slices lie on
the leading axis and every step is elementwise over contiguous rows of pixels: on a CPU that runs 3–4× faster
than the same scan over (pixels, S) rows with reductions and gathers along S (README, "Benchmarks").

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


def _row_at(table_KN: jax.Array, index_N: jax.Array) -> jax.Array:
    """table[index[n], n] for a (K, N) table and (N,) row indices, as a chain of selects.

    K elementwise selects on contiguous pixel rows fuse into one vectorised loop; XLA:CPU runs a per-pixel
    gather along the slice axis several times slower.
    """
    picked = table_KN[0]
    for row in range(1, table_KN.shape[0]):
        picked = jnp.where(index_N == row, table_KN[row], picked)
    return picked


def _first_extreme_row(table_KN: jax.Array, better) -> jax.Array:
    """For each column of a (K, N) table, the first row whose value no later row beats under the strict
    comparison `better(candidate, best)` (jnp.greater: the first argmax; jnp.less: the first argmin), as
    elementwise selects over contiguous rows; (N,) int32."""
    best, index = table_KN[0], jnp.zeros(table_KN.shape[1:], jnp.int32)
    for row in range(1, table_KN.shape[0]):
        wins = better(table_KN[row], best)
        best, index = jnp.where(wins, table_KN[row], best), jnp.where(wins, row, index)
    return index


def _prefix_isotonic_blocks(x_SN: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The last block of the non-decreasing L2 fit of every prefix of each column of x, and its squared error.

    x holds one sequence per column (slices on the leading axis, pixels contiguous). Returns (each (S + 1, N),
    row t = prefix length; row 0 is the empty prefix):
      start: a*(t), where the fit's last block x[a*..t−1] begins (0 for t = 0).
      value: that block's mean, the fit's value on it (0 for t = 0).
      sq_error: Σ_{i<t} (fit − x_i)² (0 for t = 0).
    """
    num, pixels = x_SN.shape

    def extend(tables, t):
        starts, values, sq_errors = tables
        # Block means of x[a..t] for a = t, t−1, …, 0, from suffix sums of non-negative terms (no cancellation);
        # rows past t are masked. The strict comparison keeps the largest maximiser: PAV does not merge blocks
        # of equal mean, so the last block is the shortest.
        suffix_sum = jnp.zeros_like(x_SN[0])
        value = jnp.full_like(x_SN[0], -jnp.inf)
        start = jnp.zeros((pixels,), jnp.int32)
        for a in range(num - 1, -1, -1):
            inside = a <= t
            suffix_sum = jnp.where(inside, suffix_sum + x_SN[a], suffix_sum)
            mean = suffix_sum / jnp.maximum(t + 1 - a, 1).astype(x_SN.dtype)
            larger = inside & (mean > value)
            value = jnp.where(larger, mean, value)
            start = jnp.where(larger, a, start)
        start = jax.lax.stop_gradient(start)
        block_error = jnp.zeros_like(x_SN[0])
        for a in range(num):
            in_block = (start <= a) & (a <= t)
            block_error = block_error + jnp.where(in_block, (x_SN[a] - value) ** 2, 0.0)
        sq_error = _row_at(sq_errors, start) + block_error

        def write(table, row):
            return jax.lax.dynamic_update_index_in_dim(table, row.astype(table.dtype), t + 1, axis=0)

        return (write(starts, start), write(values, value), write(sq_errors, sq_error)), None

    empty = (jnp.zeros((num + 1, pixels), jnp.int32), jnp.zeros((num + 1, pixels), x_SN.dtype),
             jnp.zeros((num + 1, pixels), x_SN.dtype))
    tables, _ = jax.lax.scan(extend, empty, jnp.arange(num))
    return tables


def _prefix_fit(starts: jax.Array, values: jax.Array, length_N: jax.Array, num: int) -> jax.Array:
    """The isotonic fit of each column's prefix of `length` from `_prefix_isotonic_blocks`; 0 beyond it. (S, N)."""
    position = jnp.arange(num)[:, None]

    def fill_block(carry, _):  # fills the block that ends at `end`; at most S blocks
        fit, end = carry
        start, value = _row_at(starts, end), _row_at(values, end)
        fit = jnp.where((position >= start) & (position < end), value, fit)
        return (fit, start), None

    empty = jnp.zeros((num, length_N.shape[0]), values.dtype)
    (fit, _), _ = jax.lax.scan(fill_block, (empty, length_N), None, length=num)
    # Block means are non-decreasing in exact arithmetic; equal ones computed over different windows can
    # round one ulp apart, and the running maximum makes the fit exactly monotone (a no-op otherwise).
    fit = jax.lax.cummax(fit, axis=0)
    return jnp.where(position < length_N, fit, 0.0)


def _is_unimodal_columns(x_SN: jax.Array) -> jax.Array:
    """`is_unimodal` of each column of x (S, N); (N,) bool."""
    mode = _first_extreme_row(x_SN, jnp.greater)
    ok = jnp.ones(x_SN.shape[1:], bool)
    for index in range(x_SN.shape[0] - 1):
        rise = x_SN[index + 1] - x_SN[index]
        ok = ok & jnp.where(index < mode, rise >= 0, rise <= 0)
    return ok


def is_unimodal(x_S: jax.Array) -> jax.Array:
    """True where x (..., S) is non-decreasing up to its first argmax and non-increasing after; (...,) bool."""
    x_S = jnp.asarray(x_S)
    columns = jnp.moveaxis(x_S, -1, 0).reshape(x_S.shape[-1], -1)
    return _is_unimodal_columns(columns).reshape(x_S.shape[:-1])


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
    # (rounding is monotone, so the cast keeps the result unimodal). The slices go to the leading axis and
    # the pixels are flattened behind them, so every step is elementwise over contiguous pixel rows.
    moved = jnp.moveaxis(prob, axis, 0).astype(jnp.result_type(prob.dtype, jnp.float32))
    num = moved.shape[0]
    x = moved.reshape(num, -1)  # (S, N)
    pixels = x.shape[1]
    # A non-increasing fit of x[t:] is a non-decreasing fit of the reversed sequence's prefix of length
    # S − t: both directions go through one call (side by side on the pixel axis) to share the compiled scan.
    starts, values, errors = _prefix_isotonic_blocks(jnp.concatenate([x, jnp.flip(x, axis=0)], axis=1))
    split_err = errors[:, :pixels] + jnp.flip(errors[:, pixels:], axis=0)  # (S + 1, N), row t = prefix length
    split = jax.lax.stop_gradient(_first_extreme_row(split_err, jnp.less))
    prefix = _prefix_fit(starts[:, :pixels], values[:, :pixels], split, num)
    suffix_reversed = _prefix_fit(starts[:, pixels:], values[:, pixels:], num - split, num)
    position = jnp.arange(num)[:, None]
    projected = jnp.where(position < split, prefix, jnp.flip(suffix_reversed, axis=0))

    total = jnp.sum(projected, axis=0, keepdims=True)
    # Scaling by a positive number keeps the order of the entries, so the result stays exactly unimodal.
    projected = projected / jnp.where(total > 0, total, jnp.ones_like(total))
    result = jnp.where(_is_unimodal_columns(x), x, projected)
    return jnp.moveaxis(result.reshape(moved.shape), 0, axis).astype(prob.dtype)
