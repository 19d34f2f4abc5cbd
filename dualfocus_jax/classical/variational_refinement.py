"""Confidence-weighted Huber-TV depth refinement, solved by unrolled primal-dual iterations.

In the spirit of Moeller, Benning, Schönlieb & Cremers, "Variational Depth from Focus Reconstruction" (IEEE TIP
2015): the raw per-pixel focus peak is noisy where texture is weak, so the depth is re-estimated as the
minimiser of

    E(d) = ½ Σ_x w(x) (d(x) − d0(x))²  +  Σ_x λ(x) H_ε(|∇d(x)|)

  d0     the raw depth (sub-slice focus peak),
  w >= 0 the data weight (the focus curve's confidence: a sharp, high-contrast peak pins d to d0; a flat
         curve lets the neighbours decide),
  λ > 0  the smoothness weight (scalar or per pixel),
  H_ε    the Huber function of the isotropic forward-difference gradient ∇d = (∂x d, ∂y d) (Neumann borders):
         H_ε(t) = t² / (2ε) for t <= ε, t − ε/2 otherwise; ε = 0 gives total variation. Small slopes are
         smoothed quadratically (no staircasing on slanted planes), large ones cost only linearly (depth
         edges survive).

Solver: Chambolle & Pock (2011), Algorithm 1, with θ = 1, K = ∇, F(∇d) = Σ λ H_ε(|∇d|), G(d) = the data term:

    p      ← proj_{|p| <= λ}( (p + σ ∇d̄) / (1 + σ ε / λ) )   (prox of σF*)
    d_new  ← (d + τ div p + τ w d0) / (1 + τ w)               (prox of τG; div = −∇ᵀ)
    d̄      ← 2 d_new − d

where F*(p) = Σ ε|p|²/(2λ) + ι_{|p| <= λ} is the convex conjugate of λ H_ε (the scaling comes from the
quadratic part, the projection from the indicator of the dual ball).

It converges for τ σ ‖∇‖² < 1; with forward differences ‖∇‖² <= 8, and we take τ = σ = 0.99 / √8, so
τ σ ‖∇‖² <= 0.98. The iterations are unrolled in `lax.scan`, so the solver is jit-compiled and differentiable.
Primal-dual is not a descent method, but E(d_k) decreases to the minimum (tested against a dense solve and
L-BFGS on small grids).
"""

from __future__ import annotations

import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# ‖∇‖² <= 8 for 2-D forward differences; τ σ ‖∇‖² = 0.98 < 1.
PRIMAL_STEP = DUAL_STEP = 0.99 / math.sqrt(8.0)


def forward_gradient(d_HW: jax.Array) -> jax.Array:
    """Forward differences with Neumann borders: (H, W) -> (2, H, W) = (∂y d, ∂x d); the last row/column is 0."""
    # Differences then zero padding, rather than scatters into zeros: about 20% faster per primal-dual
    # iteration on CPU at 1 MP, the same values.
    grad_y = jnp.pad(d_HW[1:, :] - d_HW[:-1, :], ((0, 1), (0, 0)))
    grad_x = jnp.pad(d_HW[:, 1:] - d_HW[:, :-1], ((0, 0), (0, 1)))
    return jnp.stack([grad_y, grad_x])


def divergence(p_2HW: jax.Array) -> jax.Array:
    """Negative adjoint of `forward_gradient`: (2, H, W) -> (H, W), so that <∇d, p> = −<d, div p>.

    Per axis, (div q)_i = q_i − q_{i−1} with q_{−1} = 0 and the last entry q_{n−1} ignored (the gradient is
    0 there), i.e. the backward difference of q[:-1] padded by one zero at each end.
    """
    p_y, p_x = p_2HW[0][:-1, :], p_2HW[1][:, :-1]
    div_y = jnp.pad(p_y, ((0, 1), (0, 0))) - jnp.pad(p_y, ((1, 0), (0, 0)))
    div_x = jnp.pad(p_x, ((0, 0), (0, 1))) - jnp.pad(p_x, ((0, 0), (1, 0)))
    return div_y + div_x


def huber_tv_energy(depth_HW, depth0_HW, data_weight_HW, *, smoothness, huber_eps) -> jax.Array:
    """E(d) of the module docstring, a float32 scalar (units: depth unit² for the data term's weight 1)."""
    depth = jnp.asarray(depth_HW, jnp.float32)
    data = 0.5 * jnp.sum(data_weight_HW * (depth - depth0_HW) ** 2)
    magnitude = jnp.sqrt(jnp.sum(forward_gradient(depth) ** 2, axis=0))
    eps = jnp.asarray(huber_eps, jnp.float32)
    quadratic = magnitude**2 / (2.0 * jnp.maximum(eps, jnp.finfo(jnp.float32).tiny))
    huber = jnp.where(magnitude <= eps, quadratic, magnitude - 0.5 * eps)
    return data + jnp.sum(smoothness * huber)


def _check_refinement_inputs(depth0_HW, data_weight_HW, smoothness, huber_eps, num_iters) -> None:
    shape = np.shape(depth0_HW)
    if len(shape) != 2:
        raise ValueError(f"depth0_HW must be a 2-D (H, W) depth map, got shape {shape}; vmap for a batch.")
    if np.shape(data_weight_HW) != shape:
        raise ValueError(
            f"data_weight_HW must have the depth map's shape {shape}, got {np.shape(data_weight_HW)}; "
            "use jnp.full_like(depth0_HW, w) for a constant weight."
        )
    if np.ndim(smoothness) not in (0, 2) or (np.ndim(smoothness) == 2 and np.shape(smoothness) != shape):
        raise ValueError(f"smoothness must be a scalar or an array of shape {shape}, got shape {np.shape(smoothness)}.")
    if np.ndim(huber_eps) != 0:
        raise ValueError(f"huber_eps must be a scalar, got shape {np.shape(huber_eps)}.")
    if isinstance(num_iters, bool) or not isinstance(num_iters, numbers.Integral) or num_iters < 1:
        raise ValueError(f"num_iters must be a positive int, got {num_iters!r}.")

    def concrete(x):
        return not isinstance(x, jax.core.Tracer)

    if concrete(smoothness) and not np.all(np.asarray(smoothness) > 0):
        raise ValueError("smoothness must be > 0 everywhere (the dual update divides by it).")
    if concrete(huber_eps) and not float(huber_eps) >= 0:
        raise ValueError(f"huber_eps must be >= 0 (0 = total variation), got {huber_eps!r}.")
    if concrete(data_weight_HW) and not np.all(np.asarray(data_weight_HW) >= 0):
        raise ValueError("data_weight_HW must be >= 0 everywhere (it weighs a squared error).")


@functools.partial(jax.jit, static_argnames=("num_iters", "record_energy"))
def _primal_dual(depth0_HW, data_weight_HW, smoothness, huber_eps, num_iters, record_energy):
    depth0 = jnp.asarray(depth0_HW, jnp.float32)
    weight = jnp.asarray(data_weight_HW, jnp.float32)
    smoothness = jnp.asarray(smoothness, jnp.float32)
    huber_eps = jnp.asarray(huber_eps, jnp.float32)
    tau, sigma = PRIMAL_STEP, DUAL_STEP

    def step(carry, _):
        depth, depth_bar, dual = carry
        dual = (dual + sigma * forward_gradient(depth_bar)) / (1.0 + sigma * huber_eps / smoothness)
        dual = dual / jnp.maximum(1.0, jnp.sqrt(jnp.sum(dual**2, axis=0)) / smoothness)
        depth_new = (depth + tau * divergence(dual) + tau * weight * depth0) / (1.0 + tau * weight)
        depth_bar = 2.0 * depth_new - depth
        energy = (
            huber_tv_energy(depth_new, depth0, weight, smoothness=smoothness, huber_eps=huber_eps)
            if record_energy
            else None
        )
        return (depth_new, depth_bar, dual), energy

    init = (depth0, depth0, jnp.zeros((2,) + depth0.shape, jnp.float32))
    (depth, _, _), energies = lax.scan(step, init, None, length=num_iters)
    return depth, energies


def refine_depth_variational(
    depth0_HW, data_weight_HW, *, smoothness=0.3, huber_eps=0.03, num_iters: int = 300
) -> jax.Array:
    """Minimise the confidence-weighted Huber-TV energy (module docstring) from the raw depth `depth0_HW`.

    Args:
      depth0_HW: raw depth, any unit.
      data_weight_HW: w >= 0, same shape (e.g. the focus confidence in [0, 1]).
      smoothness: λ > 0, scalar or (H, W). Since E mixes w·depth² and λ·|∇depth|, λ carries depth units;
        `estimate_depth_classical` therefore refines depth normalised to [0, 1].
      huber_eps: ε >= 0, in depth units per pixel (0 = total variation).
      num_iters: primal-dual iterations (unrolled in `lax.scan`).
    Returns:
      depth_HW, float32.
    """
    _check_refinement_inputs(depth0_HW, data_weight_HW, smoothness, huber_eps, num_iters)
    depth, _ = _primal_dual(depth0_HW, data_weight_HW, smoothness, huber_eps, int(num_iters), False)
    return depth


def refine_depth_variational_with_energy(
    depth0_HW, data_weight_HW, *, smoothness=0.3, huber_eps=0.03, num_iters: int = 300
):
    """`refine_depth_variational` that also returns E(d_k) after each iteration: (depth_HW, energy_K)."""
    _check_refinement_inputs(depth0_HW, data_weight_HW, smoothness, huber_eps, num_iters)
    return _primal_dual(depth0_HW, data_weight_HW, smoothness, huber_eps, int(num_iters), True)
