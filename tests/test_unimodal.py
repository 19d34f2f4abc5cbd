"""Projection onto unimodal distributions: exactness vs an exhaustive SciPy reference, hand cases, invariants."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import isotonic_regression

from dualfocus_jax.variational import focal_unimodality_penalty, project_unimodal


def unimodal_projection_reference(curve):
    """Best of all splits t: SciPy's PAV isotonic fit of curve[:t] (up) and curve[t:] (down), float64."""
    curve = np.asarray(curve, np.float64)
    best_error, best_fit = np.inf, None
    for t in range(len(curve) + 1):
        up = isotonic_regression(curve[:t]).x if t > 0 else np.zeros(0)
        down = isotonic_regression(curve[t:], increasing=False).x if t < len(curve) else np.zeros(0)
        fit = np.concatenate([up, down])
        error = np.sum((fit - curve) ** 2)
        if error < best_error - 1e-15:
            best_error, best_fit = error, fit
    return best_fit


def is_unimodal_np(curve):
    """Exact check: non-decreasing up to the first argmax, non-increasing after."""
    k = int(np.argmax(curve))
    return bool(np.all(np.diff(curve[: k + 1]) >= 0) and np.all(np.diff(curve[k:]) <= 0))


def random_probabilities(seed, shape, scale=2.0, axis=1):
    rng = np.random.default_rng(seed)
    return np.asarray(jax.nn.softmax(scale * rng.normal(size=shape), axis=axis), np.float32)


def test_matches_exhaustive_reference_and_is_a_unimodal_distribution():
    prob = random_probabilities(0, (2, 7, 3, 4))
    projected = np.asarray(project_unimodal(prob))
    assert projected.shape == prob.shape and projected.dtype == np.float32
    for b, row, col in np.ndindex(2, 3, 4):
        expected = unimodal_projection_reference(prob[b, :, row, col])
        np.testing.assert_allclose(projected[b, :, row, col], expected, atol=1e-6)
        assert is_unimodal_np(projected[b, :, row, col])
    np.testing.assert_allclose(projected.sum(axis=1), 1.0, atol=1e-6)
    assert projected.min() >= 0.0
    assert np.all(np.asarray(focal_unimodality_penalty(projected)) == 0.0)
    assert np.any(np.asarray(focal_unimodality_penalty(prob)) > 0)  # the input was not unimodal


@pytest.mark.parametrize("num_slices", [2, 10, 20])
def test_long_and_short_curves_reach_the_reference_distance(num_slices):
    # Flat and peaked curves, plateaus with exact ties: the unimodal set is not convex, so tied splits can
    # give different projections at the same distance; the distance must match and the output be unimodal.
    rng = np.random.default_rng(num_slices)
    curves = [random_probabilities(num_slices, (1, num_slices, 4, 4), scale=s)[0].reshape(num_slices, -1).T
              for s in (0.3, 2.0, 8.0)]
    plateaus = rng.integers(0, 3, size=(16, num_slices)).astype(np.float32) + 1e-3
    curves.append(plateaus / plateaus.sum(-1, keepdims=True))
    curves = np.concatenate(curves)
    projected = np.asarray(project_unimodal(curves, axis=-1))
    for curve, fit in zip(curves, projected):
        reference = unimodal_projection_reference(curve)
        assert np.sum((fit - curve) ** 2) == pytest.approx(np.sum((reference - curve) ** 2), rel=1e-5, abs=1e-9)
        assert is_unimodal_np(fit)


def test_hand_made_bimodal_curves():
    # [0.5, 0.1, 0.1, 0.3]: splits give errors 0.0267 (all down: 0.5 then the mean 1/6 of the rest),
    # 0.1 (up [0.3, 0.3], down [0.2, 0.2]) and 0.107 (all up): the answer is [0.5, 1/6, 1/6, 1/6].
    # [0.1, 0.3, 0.1, 0.4, 0.1]: mode at 3 pools (0.3, 0.1) to 0.2 (error 0.02), mode at 1 pools
    # (0.1, 0.4) to 0.25 (error 0.045): the answer is [0.1, 0.2, 0.2, 0.4, 0.1].
    first = project_unimodal(np.array([[0.5, 0.1, 0.1, 0.3]], np.float32))
    second = project_unimodal(np.array([[0.1, 0.3, 0.1, 0.4, 0.1]], np.float32))
    np.testing.assert_allclose(np.asarray(first)[0], [0.5, 1 / 6, 1 / 6, 1 / 6], atol=1e-6)
    np.testing.assert_allclose(np.asarray(second)[0], [0.1, 0.2, 0.2, 0.4, 0.1], atol=1e-6)


def test_unimodal_input_is_returned_bit_for_bit_and_projection_is_idempotent():
    rng = np.random.default_rng(1)
    rising = np.sort(rng.uniform(size=(4, 3)), axis=0)
    falling = -np.sort(-rng.uniform(size=(5, 3)), axis=0)
    unimodal = np.concatenate([rising, falling * rising[-1] / falling[0]], axis=0)  # (9, 3), peak at 3 or 4
    unimodal = (unimodal / unimodal.sum(axis=0)).astype(np.float32)[None]  # (1, 9, 3)
    assert all(is_unimodal_np(unimodal[0, :, j]) for j in range(3))
    np.testing.assert_array_equal(np.asarray(project_unimodal(unimodal)), unimodal)
    once = np.asarray(project_unimodal(random_probabilities(2, (3, 6, 5))))
    np.testing.assert_array_equal(np.asarray(project_unimodal(once)), once)


def test_tiny_probabilities_stay_non_negative_and_axis_layouts_agree():
    # Peaked softmax: many probabilities near 1e-20, where cumulative-sum differences would go negative.
    prob = random_probabilities(3, (2, 4, 4, 10), scale=15.0, axis=-1)
    last = np.asarray(project_unimodal(prob, axis=-1))
    assert last.min() >= 0.0
    np.testing.assert_allclose(last.sum(axis=-1), 1.0, atol=1e-6)
    moved = np.asarray(project_unimodal(np.moveaxis(prob, -1, 1), axis=1))
    np.testing.assert_array_equal(np.moveaxis(moved, 1, -1), last)


def test_gradient_is_finite_and_matches_finite_differences():
    prob = random_probabilities(4, (1, 6, 2, 2))
    weights = np.random.default_rng(5).normal(size=prob.shape)
    grad = jax.jit(jax.grad(lambda p: jnp.sum(project_unimodal(p) * weights)))(prob)
    assert bool(jnp.all(jnp.isfinite(grad)))
    with jax.enable_x64(True):
        prob64 = prob.astype(np.float64)
        loss = jax.jit(lambda p: jnp.sum(project_unimodal(p) ** 2 * weights))
        grad64 = np.asarray(jax.grad(loss)(prob64))
        eps = 1e-7  # the map is piecewise linear; a small step stays inside one piece at a generic point
        numeric = np.zeros_like(prob64)
        for idx in np.ndindex(prob64.shape):
            step = np.zeros_like(prob64)
            step[idx] = eps
            numeric[idx] = (float(loss(prob64 + step)) - float(loss(prob64 - step))) / (2 * eps)
    np.testing.assert_allclose(grad64, numeric, atol=1e-6)
    assert np.abs(grad64).max() > 1e-3


def test_bad_inputs_raise_clear_value_errors():
    with pytest.raises(ValueError, match="float"):
        project_unimodal(np.ones((2, 5), np.int32))
    with pytest.raises(ValueError, match="out of range"):
        project_unimodal(np.ones((2, 5), np.float32), axis=2)
    with pytest.raises(ValueError, match="scalar"):
        project_unimodal(np.float32(1.0))
