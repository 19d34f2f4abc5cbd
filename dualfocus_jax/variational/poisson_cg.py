"""Weighted least-squares integration of a gradient field by conjugate gradient, unrolled in `lax.scan`.

Problem: z* = argmin_z Σ w_x (D_x z − g_x)² + Σ w_y (D_y z − g_y)², whose normal equations are
(Pᵀ W P) z = Pᵀ W Γ with W = diag(w_x, w_y) ≥ 0. Pᵀ W P is a weighted graph Laplacian: symmetric positive
semi-definite with the constants in its null space, so conjugate gradient applies on the zero-mean subspace.
The DCT solver (`poisson_dct`) only handles unit weights; this one handles any non-negative weights (e.g.
down-weighting out-of-focus planes or depth edges), at the price of K matrix-free iterations.

Why unrolled CG: the K steps run as one `lax.scan`, so `jit` compiles a single loop body, reverse-mode
autodiff differentiates through the iterations (gradients w.r.t. both the field and the weights), and the
whole solve fuses with the network around it (docs/design/METHOD.md, "The design's own demand").

Convergence: plain CG needs O(√κ) steps, κ ≈ (2 max(H, W) / π)² for unit weights, so K = 50 is tight for
grids up to about 16×16 and loose beyond. `preconditioner="dct"` preconditions with the exact unit-weight
Poisson inverse (`poisson_dct`): then the rate depends only on the spread of the weights (one step for unit
weights) and not on the grid size.

Grid convention: identical to `poisson_dct` (z, grad_x, grad_y, weight_x, weight_y all (..., H, W); the
last column of grad_x / weight_x and the last row of grad_y / weight_y are ignored).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from dualfocus_jax.variational.poisson_dct import (
    forward_differences,
    forward_differences_adjoint,
    solve_neumann_poisson_dct,
    validated_gradient_fields,
    validated_weight,
)

_PRECONDITIONERS = (None, "dct")


def _inner_per_field(a: jax.Array, b: jax.Array) -> jax.Array:
    """⟨a, b⟩ over the last two (H, W) axes; returns (...,)."""
    return jnp.sum(a * b, axis=(-2, -1))


def _safe_ratio(numerator: jax.Array, denominator: jax.Array, use: jax.Array) -> jax.Array:
    """numerator / denominator where `use`, else 0; the double `where` keeps gradients finite at 0/0."""
    safe_denominator = jnp.where(use, denominator, jnp.ones_like(denominator))
    return jnp.where(use, numerator / safe_denominator, jnp.zeros_like(numerator))


def integrate_gradients_cg(
    grad_x,
    grad_y,
    weight_x=None,
    weight_y=None,
    *,
    num_iters: int = 50,
    preconditioner: str | None = None,
) -> jax.Array:
    """Weighted least-squares surface z by `num_iters` steps of (preconditioned) conjugate gradient.

    Args:
      grad_x: (..., H, W) target x-differences, grad_x[..., i, j] ≈ z[i, j+1] − z[i, j] (last column ignored).
      grad_y: (..., H, W) target y-differences, grad_y[..., i, j] ≈ z[i+1, j] − z[i, j] (last row ignored).
      weight_x, weight_y: optional non-negative weights broadcastable to (..., H, W), one per difference;
        None means 1 (then the result converges to `integrate_gradients_dct`).
      num_iters: K, the number of CG steps unrolled in `lax.scan` (static). 0 returns zeros.
      preconditioner: None (plain CG) or "dct" (exact unit-weight Poisson inverse as preconditioner).

    Returns:
      z: (..., H, W), zero mean over (H, W) for every leading index, the K-th CG iterate. With all weights
      positive the minimiser is unique up to the constant and CG converges to it; with zero weights that cut
      the grid into pieces, each piece's offset is not determined by the data and CG returns one minimiser.

    Jit-able (shapes, `num_iters` and `preconditioner` are static), differentiable through the unrolled
    iterations w.r.t. gradients and weights, batched over leading dims. Iterations stop updating (but keep
    the loop shape) once the residual has fallen to float precision, so no 0/0 appears.
    """
    if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 0:
        raise ValueError(f"num_iters must be a non-negative Python int (the unrolled CG steps), got {num_iters!r}.")
    if preconditioner not in _PRECONDITIONERS:
        raise ValueError(f"preconditioner must be one of {_PRECONDITIONERS}, got {preconditioner!r}.")
    grad_x, grad_y = validated_gradient_fields(grad_x, grad_y)
    weight_x = validated_weight(weight_x, grad_x.shape, grad_x.dtype, "weight_x")
    weight_y = validated_weight(weight_y, grad_y.shape, grad_y.dtype, "weight_y")
    return _integrate_gradients_cg_validated(grad_x, grad_y, weight_x, weight_y, num_iters, preconditioner)


@functools.partial(jax.jit, static_argnums=(4, 5))
def _integrate_gradients_cg_validated(grad_x, grad_y, weight_x, weight_y, num_iters, preconditioner) -> jax.Array:
    # Jitted core behind the validating wrapper (weights None or full (..., H, W) arrays).

    def weighted(dx: jax.Array, dy: jax.Array) -> tuple[jax.Array, jax.Array]:
        return (dx if weight_x is None else weight_x * dx, dy if weight_y is None else weight_y * dy)

    def normal_operator(z: jax.Array) -> jax.Array:
        """Pᵀ W P z, matrix-free."""
        return forward_differences_adjoint(*weighted(*forward_differences(z)))

    def precondition(r: jax.Array) -> jax.Array:
        return r if preconditioner is None else solve_neumann_poisson_dct(r)

    rhs = forward_differences_adjoint(*weighted(grad_x, grad_y))
    # 1ᵀPᵀ = 0, so rhs has zero mean in exact arithmetic; removing the rounding keeps the iterates in the
    # zero-mean range of PᵀWP instead of drifting along the null space.
    rhs = rhs - jnp.mean(rhs, axis=(-2, -1), keepdims=True)
    z0 = jnp.zeros_like(rhs)
    s0 = precondition(rhs)
    rs0 = _inner_per_field(rhs, s0)
    # Stop once ⟨r, M⁻¹r⟩ has fallen by eps² (residual at float precision); also covers rhs = 0.
    stop_below = rs0 * jnp.finfo(rhs.dtype).eps ** 2

    def cg_step(carry, _):
        z, r, p, rs = carry
        ap = normal_operator(p)
        p_ap = _inner_per_field(p, ap)
        active = (rs > stop_below) & (p_ap > 0)
        alpha = _safe_ratio(rs, p_ap, active)[..., None, None]
        z = z + alpha * p
        r = r - alpha * ap
        s = precondition(r)
        rs_new = _inner_per_field(r, s)
        beta = _safe_ratio(rs_new, rs, active)[..., None, None]
        # When inactive, alpha = 0 leaves (z, r) unchanged and rs_new = rs, so the state is a fixed point.
        p = s + beta * p
        return (z, r, p, rs_new), None

    (z, _, _, _), _ = jax.lax.scan(cg_step, (z0, rhs, s0, rs0), None, length=num_iters)
    return z - jnp.mean(z, axis=(-2, -1), keepdims=True)
