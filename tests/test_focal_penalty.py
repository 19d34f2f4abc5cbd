"""Focal unimodality penalty L_fv: hand-computed values, a NumPy loop reference, zero on unimodal curves."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.variational import focal_unimodality_penalty


def penalty_reference(prob_BSHW):
    """Literal transcription of docs/design/METHOD.md's L_fv with Python loops, per example."""
    batch, slices, height, width = prob_BSHW.shape
    total = np.zeros(batch)
    for b in range(batch):
        for i_row in range(height):
            for i_col in range(width):
                p = prob_BSHW[b, :, i_row, i_col]
                k = int(np.argmax(p))
                for i in range(slices - 1):
                    if i < k:
                        total[b] += max(0.0, p[i] - p[i + 1]) ** 2
                    else:
                        total[b] += max(0.0, p[i + 1] - p[i]) ** 2
    return total


def curves_as_BSHW(*curves):
    """(S,) curves → one example (1, S, 1, N)."""
    return np.stack(curves, axis=-1)[None, :, None, :].astype(np.float32)


def test_hand_computed_penalty():
    # Pixel 1: mode k=1; after it 0.4→0.2 is fine, 0.2→0.3 rises by 0.1: 0.1² = 0.01.
    # Pixel 2: mode k=2; before it 0.3→0.1 drops by 0.2: 0.2² = 0.04; the rest is monotone.
    prob = curves_as_BSHW([0.1, 0.4, 0.2, 0.3], [0.3, 0.1, 0.5, 0.1])
    np.testing.assert_allclose(np.asarray(focal_unimodality_penalty(prob)), [0.05], rtol=1e-5)


def test_zero_on_unimodal_and_positive_on_bimodal():
    unimodal = curves_as_BSHW([0.1, 0.2, 0.4, 0.2, 0.1], [0.5, 0.3, 0.1, 0.1, 0.0], [0.0, 0.1, 0.2, 0.3, 0.4])
    bimodal = curves_as_BSHW([0.3, 0.05, 0.05, 0.3, 0.3], [0.1, 0.35, 0.1, 0.35, 0.1], [0.2, 0.2, 0.2, 0.2, 0.2])
    penalty = np.asarray(focal_unimodality_penalty(np.concatenate([unimodal, bimodal])))
    assert penalty.shape == (2,)
    assert penalty[0] == 0.0
    # Bimodal example: first curve has mode 0 and rises 0.25 after it; second has mode 1 and rises 0.25.
    np.testing.assert_allclose(penalty[1], 2 * 0.25**2, rtol=1e-5)


def test_matches_loop_reference_and_axis_layouts():
    rng = np.random.default_rng(0)
    prob = np.asarray(jax.nn.softmax(rng.normal(size=(3, 6, 4, 5)), axis=1), dtype=np.float32)
    expected = penalty_reference(prob.astype(np.float64))
    np.testing.assert_allclose(np.asarray(focal_unimodality_penalty(prob)), expected, rtol=1e-5)
    channels_last = np.moveaxis(prob, 1, -1)  # (B, H, W, S)
    np.testing.assert_allclose(np.asarray(focal_unimodality_penalty(channels_last, axis=-1)), expected, rtol=1e-5)
    assert np.all(expected > 0)


def test_gradient_is_the_hand_derivative_with_the_mode_held_fixed():
    prob = jnp.asarray(curves_as_BSHW([0.1, 0.4, 0.2, 0.3]))
    grad = np.asarray(jax.jit(jax.grad(lambda p: focal_unimodality_penalty(p).sum()))(prob))[0, :, 0, 0]
    # Only the pair (2, 3) violates: d/dp (p3 − p2)² = ±2 · 0.1.
    np.testing.assert_allclose(grad, [0.0, 0.0, -0.2, 0.2], atol=1e-6)
    rng = np.random.default_rng(1)
    random_prob = jax.nn.softmax(jnp.asarray(rng.normal(size=(2, 5, 3, 3)), jnp.float32), axis=1)
    random_grad = jax.grad(lambda p: focal_unimodality_penalty(p).sum())(random_prob)
    assert bool(jnp.all(jnp.isfinite(random_grad))) and float(jnp.abs(random_grad).max()) > 0


def test_bad_inputs_raise_clear_value_errors():
    with pytest.raises(ValueError, match="batch axis"):
        focal_unimodality_penalty(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="batch axis"):
        focal_unimodality_penalty(np.zeros((2, 5), np.float32), axis=0)
    with pytest.raises(ValueError, match="out of range"):
        focal_unimodality_penalty(np.zeros((2, 5), np.float32), axis=3)
    with pytest.raises(ValueError, match="float"):
        focal_unimodality_penalty(np.zeros((2, 5), np.int32))
