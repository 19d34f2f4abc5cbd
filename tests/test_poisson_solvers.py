"""Least-squares gradient integration: DCT and CG solvers against dense solves, each other and FD gradients.

Float32 (the default) reaches the 1e-5 agreement with the float64 dense reference on these small grids; the
exactness check of the DCT solver is repeated under `jax.enable_x64` to 1e-10.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.variational import integrability_residual, integrate_gradients_cg, integrate_gradients_dct


def dense_difference_matrix(height, width):
    """Explicit P: rows for the H(W−1) x-differences then the (H−1)W y-differences, in row-major pixel order."""
    index = np.arange(height * width).reshape(height, width)
    rows_x = [(index[i, j + 1], index[i, j]) for i in range(height) for j in range(width - 1)]
    rows_y = [(index[i + 1, j], index[i, j]) for i in range(height - 1) for j in range(width)]
    matrix = np.zeros((len(rows_x) + len(rows_y), height * width))
    for row, (plus, minus) in enumerate(rows_x + rows_y):
        matrix[row, plus] = 1.0
        matrix[row, minus] = -1.0
    return matrix


def stacked_targets(grad_x, grad_y):
    """The targets of P's rows (last column of grad_x and last row of grad_y dropped), float64."""
    return np.concatenate([np.asarray(grad_x)[:, :-1].ravel(), np.asarray(grad_y)[:-1, :].ravel()]).astype(np.float64)


def dense_weighted_lstsq(grad_x, grad_y, weight_x=None, weight_y=None):
    """Minimum-norm (hence zero-mean on a connected grid) weighted least-squares surface, via numpy.lstsq."""
    height, width = grad_x.shape
    matrix = dense_difference_matrix(height, width)
    targets = stacked_targets(grad_x, grad_y)
    if weight_x is not None:
        sqrt_w = np.sqrt(stacked_targets(weight_x, weight_y))
        matrix, targets = matrix * sqrt_w[:, None], targets * sqrt_w
    return np.linalg.lstsq(matrix, targets, rcond=None)[0].reshape(height, width)


def random_field(rng, shape):
    return rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)


# ---------------------------------------------------------------- (a) DCT solver vs the dense solve
@pytest.mark.parametrize("transform", ["fft", "matmul"])
@pytest.mark.parametrize("height,width", [(5, 7), (8, 8), (1, 6), (4, 1)])
def test_dct_matches_dense_lstsq_float32(height, width, transform):
    grad_x, grad_y = random_field(np.random.default_rng(height * 10 + width), (height, width))
    reference = dense_weighted_lstsq(grad_x, grad_y)
    surface = np.asarray(integrate_gradients_dct(grad_x, grad_y, transform=transform))
    assert surface.dtype == np.float32
    np.testing.assert_allclose(surface, reference, atol=1e-5, rtol=0)
    assert abs(surface.mean()) < 1e-6


def test_dct_matches_dense_lstsq_float64_to_1e10():
    grad_x, grad_y = random_field(np.random.default_rng(0), (6, 9))
    reference = dense_weighted_lstsq(grad_x, grad_y)
    with jax.enable_x64(True):
        for transform in ("fft", "matmul"):
            surface = np.asarray(
                integrate_gradients_dct(grad_x.astype(np.float64), grad_y.astype(np.float64), transform=transform)
            )
            assert surface.dtype == np.float64
            np.testing.assert_allclose(surface, reference, atol=1e-10, rtol=0)


def test_dct_batches_over_leading_dims_and_ignores_unused_entries():
    rng = np.random.default_rng(1)
    grad_x, grad_y = random_field(rng, (2, 3, 5, 7))
    batched = np.asarray(jax.jit(integrate_gradients_dct)(grad_x, grad_y))
    for b in range(2):
        for c in range(3):
            np.testing.assert_allclose(batched[b, c], dense_weighted_lstsq(grad_x[b, c], grad_y[b, c]), atol=1e-5)
    # The last column of grad_x and last row of grad_y have no forward difference: changing them is a no-op.
    grad_x[..., :, -1] += 100.0
    grad_y[..., -1, :] -= 100.0
    np.testing.assert_allclose(np.asarray(integrate_gradients_dct(grad_x, grad_y)), batched, atol=1e-5)


# ---------------------------------------------------------------- (b) integrable fields and the residual
def test_integrable_field_is_reproduced_up_to_a_constant():
    yy, xx = np.meshgrid(np.linspace(0, 1, 12), np.linspace(0, 2, 16), indexing="ij")
    true_surface = (np.sin(3 * xx) * np.cos(2 * yy) + 0.5 * xx * yy + 7.0).astype(np.float32)  # offset 7
    grad_x = np.zeros_like(true_surface)
    grad_y = np.zeros_like(true_surface)
    grad_x[:, :-1] = np.diff(true_surface, axis=1)
    grad_y[:-1, :] = np.diff(true_surface, axis=0)
    surface = np.asarray(integrate_gradients_dct(grad_x, grad_y))
    np.testing.assert_allclose(surface, true_surface - true_surface.mean(), atol=1e-5)
    assert float(integrability_residual(surface, grad_x, grad_y)) < 1e-9
    surface_cg = np.asarray(integrate_gradients_cg(grad_x, grad_y, num_iters=10, preconditioner="dct"))
    np.testing.assert_allclose(surface_cg, true_surface - true_surface.mean(), atol=1e-5)


def test_residual_matches_dense_norm_and_is_minimal_at_the_solution():
    rng = np.random.default_rng(2)
    grad_x, grad_y = random_field(rng, (5, 6))
    surface = np.asarray(integrate_gradients_dct(grad_x, grad_y))
    matrix = dense_difference_matrix(5, 6)
    expected = np.sum((matrix @ surface.ravel().astype(np.float64) - stacked_targets(grad_x, grad_y)) ** 2)
    residual = float(integrability_residual(surface, grad_x, grad_y))
    np.testing.assert_allclose(residual, expected, rtol=1e-5)
    # A non-integrable random field keeps a positive residual, and any perturbation (other than a constant)
    # increases it: the solution is the least-squares minimum.
    assert residual > 1.0
    for _ in range(3):
        bumped = surface + 1e-2 * rng.normal(size=surface.shape).astype(np.float32)
        assert float(integrability_residual(bumped, grad_x, grad_y)) > residual
    np.testing.assert_allclose(float(integrability_residual(surface + 3.0, grad_x, grad_y)), residual, rtol=1e-5)
    weighted = integrability_residual(surface, grad_x, grad_y, weight_x=2.0, weight_y=2.0)
    np.testing.assert_allclose(float(weighted), 2 * residual, rtol=1e-5)
    assert integrability_residual(np.zeros((4, 5, 6)), np.zeros((4, 5, 6)), np.ones((4, 5, 6))).shape == (4,)


# ---------------------------------------------------------------- (c) CG: convergence and weighted solves
def test_cg_unit_weights_converges_to_dct_solution():
    grad_x, grad_y = random_field(np.random.default_rng(3), (8, 8))
    reference = np.asarray(integrate_gradients_dct(grad_x, grad_y))
    errors = [
        np.abs(np.asarray(integrate_gradients_cg(grad_x, grad_y, num_iters=k)) - reference).max()
        for k in (2, 8, 16, 60)
    ]
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors
    assert errors[0] > 1e-1 and errors[-1] < 1e-5, errors
    # Preconditioned by the exact unit-weight inverse, one step is already the solution.
    one_step = np.asarray(integrate_gradients_cg(grad_x, grad_y, num_iters=1, preconditioner="dct"))
    np.testing.assert_allclose(one_step, reference, atol=1e-5)


def test_cg_nonuniform_weights_match_dense_weighted_lstsq():
    rng = np.random.default_rng(4)
    grad_x, grad_y = random_field(rng, (6, 7))
    weight_x = rng.uniform(0.1, 3.0, size=(6, 7)).astype(np.float32)
    weight_y = rng.uniform(0.1, 3.0, size=(6, 7)).astype(np.float32)
    reference = dense_weighted_lstsq(grad_x, grad_y, weight_x, weight_y)
    plain = np.asarray(integrate_gradients_cg(grad_x, grad_y, weight_x, weight_y, num_iters=150))
    preconditioned = np.asarray(
        integrate_gradients_cg(grad_x, grad_y, weight_x, weight_y, num_iters=40, preconditioner="dct")
    )
    np.testing.assert_allclose(plain, reference, atol=1e-5)
    np.testing.assert_allclose(preconditioned, reference, atol=1e-5)
    # The weighted solution really differs from the unweighted one (the weights matter).
    assert np.abs(reference - dense_weighted_lstsq(grad_x, grad_y)).max() > 1e-2


def test_cg_zero_weights_reach_the_weighted_minimum_and_batch():
    rng = np.random.default_rng(5)
    grad_x, grad_y = random_field(rng, (2, 5, 6))
    weight_x = rng.uniform(0.5, 2.0, size=(2, 5, 6)).astype(np.float32)
    weight_y = rng.uniform(0.5, 2.0, size=(2, 5, 6)).astype(np.float32)
    weight_x[0, :, 2] = 0.0  # cuts example 0 into a left and a right part: the offset between them is free
    weight_y[1, 1:3, :] = 0.0  # a few ignored rows, still connected through the x-differences
    surfaces = np.asarray(jax.jit(integrate_gradients_cg)(grad_x, grad_y, weight_x, weight_y))
    for b in range(2):
        reference = dense_weighted_lstsq(grad_x[b], grad_y[b], weight_x[b], weight_y[b])
        objective = integrability_residual(
            surfaces[b], grad_x[b], grad_y[b], weight_x=weight_x[b], weight_y=weight_y[b]
        )
        best = integrability_residual(
            reference.astype(np.float32), grad_x[b], grad_y[b], weight_x=weight_x[b], weight_y=weight_y[b]
        )
        np.testing.assert_allclose(float(objective), float(best), rtol=1e-5)
        assert abs(surfaces[b].mean()) < 1e-5
    # Example 1 is still connected, so its minimiser is unique: compare the surfaces themselves.
    reference_1 = dense_weighted_lstsq(grad_x[1], grad_y[1], weight_x[1], weight_y[1])
    np.testing.assert_allclose(surfaces[1], reference_1, atol=1e-4)


def test_cg_zero_field_gives_zero_surface_with_finite_gradient():
    zeros = jnp.zeros((4, 5))
    assert float(jnp.abs(integrate_gradients_cg(zeros, zeros, num_iters=5)).max()) == 0.0
    grad = jax.jit(jax.grad(lambda gx: jnp.sum(integrate_gradients_cg(gx, zeros, num_iters=5) ** 2)))(zeros)
    assert bool(jnp.all(jnp.isfinite(grad)))


# ---------------------------------------------------------------- (d) gradients vs finite differences
def central_difference_gradient(loss, args, which, eps=1e-6):
    """d loss / d args[which] by central differences, float64."""
    base = [np.array(a, dtype=np.float64) for a in args]
    grad = np.zeros_like(base[which])
    for idx in np.ndindex(base[which].shape):
        plus = [a.copy() for a in base]
        minus = [a.copy() for a in base]
        plus[which][idx] += eps
        minus[which][idx] -= eps
        grad[idx] = (float(loss(*plus)) - float(loss(*minus))) / (2 * eps)
    return grad


def test_gradients_match_finite_differences_float64():
    rng = np.random.default_rng(6)
    shape = (3, 4)
    grad_x, grad_y = rng.normal(size=shape), rng.normal(size=shape)
    weight_x, weight_y = rng.uniform(0.5, 2.0, size=shape), rng.uniform(0.5, 2.0, size=shape)
    target = rng.normal(size=shape)
    with jax.enable_x64(True):

        def dct_loss(gx, gy):
            return jnp.sum(jnp.sin(integrate_gradients_dct(gx, gy)) * target)

        def dct_matmul_loss(gx, gy):
            return jnp.sum(jnp.sin(integrate_gradients_dct(gx, gy, transform="matmul")) * target)

        def cg_loss(gx, gy, wx, wy):
            # 4 steps < 11 unknowns: a genuinely unfinished, nonlinear-in-weights unrolled iteration.
            return jnp.sum(jnp.sin(integrate_gradients_cg(gx, gy, wx, wy, num_iters=4)) * target)

        dct_grads = jax.jit(jax.grad(dct_loss, argnums=(0, 1)))(grad_x, grad_y)
        matmul_grads = jax.jit(jax.grad(dct_matmul_loss, argnums=(0, 1)))(grad_x, grad_y)
        for exact, matmul in zip(dct_grads, matmul_grads):
            np.testing.assert_allclose(matmul, exact, atol=1e-12)
        cg_grads = jax.jit(jax.grad(cg_loss, argnums=(0, 1, 2, 3)))(grad_x, grad_y, weight_x, weight_y)
        dct_loss_jit, cg_loss_jit = jax.jit(dct_loss), jax.jit(cg_loss)  # compiled once, evaluated per probe
        for which in range(2):
            np.testing.assert_allclose(
                dct_grads[which], central_difference_gradient(dct_loss_jit, (grad_x, grad_y), which), atol=1e-7
            )
        for which in range(4):
            numeric = central_difference_gradient(cg_loss_jit, (grad_x, grad_y, weight_x, weight_y), which)
            np.testing.assert_allclose(cg_grads[which], numeric, atol=1e-6)
        # Gradients only reach the entries that carry a forward difference.
        assert np.all(np.asarray(dct_grads[0])[:, -1] == 0) and np.all(np.asarray(dct_grads[1])[-1, :] == 0)
        # Converged CG differentiates like the exact solver.
        def converged_cg_loss(gx):
            return jnp.sum(jnp.sin(integrate_gradients_cg(gx, grad_y, num_iters=40)) * target)

        np.testing.assert_allclose(jax.jit(jax.grad(converged_cg_loss))(grad_x), dct_grads[0], atol=1e-8)


def test_float32_gradients_are_finite():
    grad_x, grad_y = random_field(np.random.default_rng(7), (2, 6, 6))
    for solver in (integrate_gradients_dct, lambda gx, gy: integrate_gradients_cg(gx, gy, num_iters=60)):
        def loss(gx, gy, solver=solver):
            return jnp.sum(solver(gx, gy) ** 2)

        grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(grad_x, grad_y)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in grads)


# ---------------------------------------------------------------- bad input
def test_bad_inputs_raise_clear_value_errors():
    field = np.zeros((4, 5), np.float32)
    with pytest.raises(ValueError, match="same shape"):
        integrate_gradients_dct(field, np.zeros((4, 6)))
    with pytest.raises(ValueError, match="at least 2 dims"):
        integrate_gradients_dct(np.zeros(5), np.zeros(5))
    with pytest.raises(ValueError, match="transform"):
        integrate_gradients_dct(field, field, transform="dst")
    with pytest.raises(ValueError, match="complex"):
        integrate_gradients_dct(field.astype(np.complex64), field)
    with pytest.raises(ValueError, match="negative"):
        integrate_gradients_cg(field, field, -np.ones((4, 5)), None)
    with pytest.raises(ValueError, match="does not broadcast"):
        integrate_gradients_cg(field, field, np.ones((3, 5)), None)
    with pytest.raises(ValueError, match="num_iters"):
        integrate_gradients_cg(field, field, num_iters=2.5)
    with pytest.raises(ValueError, match="preconditioner"):
        integrate_gradients_cg(field, field, preconditioner="jacobi")
    with pytest.raises(ValueError, match="z has shape"):
        integrability_residual(np.zeros((4, 4)), field, field)
