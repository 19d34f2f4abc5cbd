"""Exact least-squares integration of a gradient field with a DCT-II Poisson solver (Neumann boundaries).

Problem (docs/design/METHOD.md, "Network" item 3): z* = argmin_z ‖P z − Γ‖², P the forward-difference operator on an
H×W grid. Its normal equations (PᵀP) z = PᵀΓ are a Poisson problem whose matrix PᵀP is the graph Laplacian
of the 4-connected grid, i.e. the 5-point Laplacian with Neumann (reflecting) boundaries. That Laplacian is
the Kronecker sum of two 1D path-graph Laplacians, and the orthonormal DCT-II diagonalises each of them
with eigenvalues 2 − 2 cos(π k / n), k = 0..n−1. So z* = IDCT(DCT(PᵀΓ) / λ): no matrix, O(HW log HW), the
same cost as two FFTs (or, with transform="matmul", two products with the small dense DCT matrices). The
single zero eigenvalue (k = l = 0, the constant surface) is the null space; its coefficient is set to zero,
which pins z* to zero mean and equals the minimum-norm least-squares solution.

Grid convention (shared with `poisson_cg` and the network): z, grad_x, grad_y all have shape (..., H, W);
grad_x[..., i, j] pairs with z[i, j+1] − z[i, j], grad_y[..., i, j] with z[i+1, j] − z[i, j]. The last
column of grad_x and the last row of grad_y have no forward difference and are ignored (any value there
leaves the result unchanged). Any leading dims are batch dims.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def validated_gradient_fields(grad_x, grad_y) -> tuple[jax.Array, jax.Array]:
    """Checks and converts a gradient field pair; returns (grad_x, grad_y) as float arrays of shape (..., H, W).

    Raises ValueError (before any compute) on mismatched shapes, fewer than 2 dims or complex dtypes.
    Integer, bfloat16 and float16 inputs are promoted to float32 (the solve needs its precision); float64
    stays float64 only when jax_enable_x64 is on.
    """
    grad_x = jnp.asarray(grad_x)
    grad_y = jnp.asarray(grad_y)
    if grad_x.shape != grad_y.shape:
        raise ValueError(
            f"grad_x has shape {grad_x.shape} but grad_y has shape {grad_y.shape}; both must be (..., H, W) "
            "with the same shape as the surface (pad the x-gradient with a last column and the y-gradient "
            "with a last row; those entries are ignored)."
        )
    if grad_x.ndim < 2:
        raise ValueError(
            f"gradient fields must have at least 2 dims (..., H, W), got shape {grad_x.shape}; "
            "add the missing spatial axis (e.g. grad[None, :])."
        )
    for name, arr in (("grad_x", grad_x), ("grad_y", grad_y)):
        if jnp.issubdtype(arr.dtype, jnp.complexfloating):
            raise ValueError(f"{name} is complex ({arr.dtype}); pass real gradient fields (take .real).")
    dtype = jnp.result_type(grad_x.dtype, grad_y.dtype, jnp.float32)
    return grad_x.astype(dtype), grad_y.astype(dtype)


def validated_weight(weight, shape: tuple[int, ...], dtype, name: str) -> jax.Array | None:
    """Returns `weight` broadcast to `shape` as `dtype`, or None for None; ValueError if it cannot broadcast.

    Negative weights make the least-squares problem indefinite; they are rejected here when the weight is a
    concrete array (under `jit` the values are not known, and non-negativity is the caller's promise).
    """
    if weight is None:
        return None
    weight = jnp.asarray(weight)
    try:
        shape_out = np.broadcast_shapes(weight.shape, shape)
    except ValueError:
        shape_out = None
    if shape_out != tuple(shape):
        raise ValueError(
            f"{name} has shape {weight.shape}, which does not broadcast to the gradient field shape {shape}; "
            "pass one weight per gradient entry (same shape), a per-field weight (..., 1, 1) or a scalar."
        )
    if not isinstance(weight, jax.core.Tracer) and bool(np.any(np.asarray(weight) < 0)):
        raise ValueError(f"{name} has negative entries; least-squares weights must be >= 0 (clip or exp them).")
    return jnp.broadcast_to(weight.astype(dtype), shape)


def forward_differences(z_HW: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Applies P: returns (dz_x, dz_y), each (..., H, W), zero in the last column / last row respectively."""
    zero_col = jnp.zeros_like(z_HW[..., :, :1])
    zero_row = jnp.zeros_like(z_HW[..., :1, :])
    dz_x = jnp.concatenate([z_HW[..., :, 1:] - z_HW[..., :, :-1], zero_col], axis=-1)
    dz_y = jnp.concatenate([z_HW[..., 1:, :] - z_HW[..., :-1, :], zero_row], axis=-2)
    return dz_x, dz_y


def forward_differences_adjoint(grad_x_HW: jax.Array, grad_y_HW: jax.Array) -> jax.Array:
    """Applies Pᵀ (a negative divergence) to a field in the (..., H, W) convention; returns (..., H, W).

    The last column of grad_x and the last row of grad_y are dropped, as P never produces them.
    """
    gx = grad_x_HW[..., :, :-1]
    gy = grad_y_HW[..., :-1, :]
    pad_x = [(0, 0)] * (gx.ndim - 1)
    pad_y = [(0, 0)] * (gy.ndim - 2)
    # (Dxᵀ g)[j] = g[j−1] − g[j], with g[−1] = g[W−1] = 0: pad one zero on each side and difference.
    adj_x = jnp.pad(gx, pad_x + [(1, 0)]) - jnp.pad(gx, pad_x + [(0, 1)])
    adj_y = jnp.pad(gy, pad_y + [(1, 0), (0, 0)]) - jnp.pad(gy, pad_y + [(0, 1), (0, 0)])
    return adj_x + adj_y


def neumann_laplacian_eigenvalues(height: int, width: int, dtype=jnp.float32) -> jax.Array:
    """Eigenvalues (H, W) of PᵀP in the orthonormal DCT-II basis: λ[k, l] = 4 sin²(πk/2H) + 4 sin²(πl/2W)."""
    # Computed in float64 NumPy (static shapes) so the small eigenvalues near k = l = 0 keep full precision.
    lam_y = 4.0 * np.sin(np.pi * np.arange(height) / (2.0 * height)) ** 2
    lam_x = 4.0 * np.sin(np.pi * np.arange(width) / (2.0 * width)) ** 2
    return jnp.asarray(lam_y[:, None] + lam_x[None, :], dtype=dtype)


def orthonormal_dct_matrix(size: int, dtype=jnp.float32) -> jax.Array:
    """(size, size) orthonormal DCT-II matrix C, C[k, j] = √(2/n) cos(πk(2j+1)/2n), row 0 scaled by 1/√2."""
    k = np.arange(size)[:, None]
    j = np.arange(size)[None, :]
    matrix = np.sqrt(2.0 / size) * np.cos(np.pi * k * (2 * j + 1) / (2.0 * size))
    matrix[0] /= np.sqrt(2.0)
    return jnp.asarray(matrix, dtype=dtype)


TRANSFORMS = ("fft", "matmul")


def solve_neumann_poisson_dct(rhs_HW: jax.Array, transform: str = "fft") -> jax.Array:
    """Returns the zero-mean z (..., H, W) with (PᵀP) z = rhs − mean(rhs), by orthonormal DCT-II.

    Any mean of rhs (which is not in the range of PᵀP) is dropped with the DC coefficient.
    transform="fft" uses `jax.scipy.fft.dctn` (O(HW log HW)); "matmul" multiplies by the dense (H, H) and
    (W, W) DCT matrices (O(HW (H + W)) but matrix units: faster on CPU up to 256² in
    `benchmarks/bench_solvers.py`, and the natural choice on TPUs, whose FFTs are slow).
    """
    height, width = rhs_HW.shape[-2:]
    lam = neumann_laplacian_eigenvalues(height, width, rhs_HW.dtype)
    if transform == "fft":
        coeffs = jax.scipy.fft.dctn(rhs_HW, type=2, axes=(-2, -1), norm="ortho")
    else:
        dct_h = orthonormal_dct_matrix(height, rhs_HW.dtype)
        dct_w = orthonormal_dct_matrix(width, rhs_HW.dtype)
        # HIGHEST: without it GPUs would round the float32 products to TF32 (about 1e-3 relative error).
        coeffs = jnp.einsum("kh,...hw,lw->...kl", dct_h, rhs_HW, dct_w, precision=jax.lax.Precision.HIGHEST)
    is_null = lam == 0
    # Double `where`: dividing by a safe 1 at the null eigenvalue keeps the value *and* its gradient finite.
    safe_lam = jnp.where(is_null, jnp.ones_like(lam), lam)
    coeffs = jnp.where(is_null, jnp.zeros_like(coeffs), coeffs / safe_lam)
    if transform == "fft":
        return jax.scipy.fft.idctn(coeffs, type=2, axes=(-2, -1), norm="ortho")
    return jnp.einsum("kh,...kl,lw->...hw", dct_h, coeffs, dct_w, precision=jax.lax.Precision.HIGHEST)


def integrate_gradients_dct(grad_x_HW, grad_y_HW, *, transform: str = "fft") -> jax.Array:
    """Exact least-squares surface z_HW = argmin_z ‖P z − Γ‖², pinned to zero mean.

    Args:
      grad_x_HW: (..., H, W) target x-differences, grad_x[..., i, j] ≈ z[i, j+1] − z[i, j]; the last column is
        ignored. Unit: whatever unit z should have per pixel step (e.g. the unit of the focus positions).
      grad_y_HW: (..., H, W) target y-differences, grad_y[..., i, j] ≈ z[i+1, j] − z[i, j]; the last row is
        ignored.
      transform: "fft" (default, `jax.scipy.fft.dctn`, O(HW log HW)) or "matmul" (dense DCT matrices,
        O(HW (H + W)), faster for the small grids of the network and on TPUs). Same result to rounding.

    Returns:
      z_HW: (..., H, W), same unit as the gradients times pixels, mean zero over (H, W) for every leading index.
      This is the minimum-norm least-squares solution (the same as `numpy.linalg.lstsq` on the dense P).

    Jit-able, differentiable (the DCT is linear; the null eigenvalue is handled with a safe divisor), and
    batched over leading dims.
    """
    if transform not in TRANSFORMS:
        raise ValueError(f"transform must be one of {TRANSFORMS}, got {transform!r}.")
    grad_x_HW, grad_y_HW = validated_gradient_fields(grad_x_HW, grad_y_HW)
    return _integrate_gradients_dct_validated(grad_x_HW, grad_y_HW, transform)


@functools.partial(jax.jit, static_argnums=2)
def _integrate_gradients_dct_validated(grad_x_HW: jax.Array, grad_y_HW: jax.Array, transform: str) -> jax.Array:
    # Jitted core behind the validating wrapper: eager calls run as one compiled program instead of op by op.
    return solve_neumann_poisson_dct(forward_differences_adjoint(grad_x_HW, grad_y_HW), transform)


def integrability_residual(z, grad_x, grad_y, *, weight_x=None, weight_y=None) -> jax.Array:
    """Squared residual ‖P z − Γ‖² of each field; returns shape (...,) (a scalar for a single (H, W) field).

    With weights (broadcastable to (..., H, W), non-negative) returns
    Σ w_x (D_x z − g_x)² + Σ w_y (D_y z − g_y)²,
    the objective `integrate_gradients_cg` minimises. The ignored last column of grad_x / last row of grad_y
    do not contribute. Unit: (unit of z per pixel)².
    """
    grad_x, grad_y = validated_gradient_fields(grad_x, grad_y)
    z = jnp.asarray(z, dtype=grad_x.dtype)
    if z.shape != grad_x.shape:
        raise ValueError(
            f"z has shape {z.shape} but the gradient fields have shape {grad_x.shape}; they must match "
            "(..., H, W) (see the grid convention in dualfocus_jax.variational.poisson_dct)."
        )
    weight_x = validated_weight(weight_x, z.shape, z.dtype, "weight_x")
    weight_y = validated_weight(weight_y, z.shape, z.dtype, "weight_y")
    return _integrability_residual_validated(z, grad_x, grad_y, weight_x, weight_y)


@jax.jit
def _integrability_residual_validated(z, grad_x, grad_y, weight_x, weight_y) -> jax.Array:
    dz_x, dz_y = forward_differences(z)
    # Only the entries that carry a forward difference count (the ignored column / row are dropped).
    res_x = (dz_x - grad_x)[..., :, :-1]
    res_y = (dz_y - grad_y)[..., :-1, :]
    w_x = 1.0 if weight_x is None else weight_x[..., :, :-1]
    w_y = 1.0 if weight_y is None else weight_y[..., :-1, :]
    return jnp.sum(w_x * res_x**2, axis=(-2, -1)) + jnp.sum(w_y * res_y**2, axis=(-2, -1))
