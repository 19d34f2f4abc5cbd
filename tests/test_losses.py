"""Losses against NumPy references and hand-computed cases (no network involved)."""

import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.model import DualFocusOutput, model_config
from dualfocus_jax.model.losses import (
    depth_loss,
    depth_supervision_mask,
    downsample_depth_with_mask,
    dualfocus_loss,
    focal_variational_loss,
    in_focus_weights,
    spatial_variational_loss,
    unit_free_depth_gradients,
)


def _numpy_smooth_l1(x, beta):
    ax = np.abs(x)
    return np.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)


def test_depth_loss_matches_numpy_smooth_l1_on_a_hand_case():
    rng = np.random.default_rng(0)
    b, h, w = 2, 3, 4
    focus = np.array([[0.5, 1.0, 1.5, 2.0], [1.0, 2.0, 3.0, 4.0]], np.float32)
    gt = rng.uniform(0.4, 4.2, size=(b, h, w)).astype(np.float32)
    gt[0, 0, 0] = np.nan  # invalid and NaN: must be ignored, not propagate
    valid = np.ones((b, h, w), bool)
    valid[0, 0, 0] = False
    valid[1, 2, 3] = False
    # Errors of about ±2 straddle beta=1, so both branches of smooth-L1 are used.
    levels = [gt + rng.normal(scale=2.0, size=gt.shape).astype(np.float32) for _ in range(4)]
    levels = [np.nan_to_num(level, nan=1.0) for level in levels]
    mask = np.asarray(depth_supervision_mask(jnp.asarray(gt), jnp.asarray(valid), jnp.asarray(focus)))

    expected_mask = valid & np.isfinite(gt)
    expected_mask &= (gt >= focus.min(1)[:, None, None]) & (gt <= focus.max(1)[:, None, None])
    np.testing.assert_array_equal(mask, expected_mask)
    assert 0 < expected_mask.sum() < expected_mask.size  # the range test removed some pixels

    weights = [8 / 15, 4 / 15, 2 / 15, 1 / 15]
    expected = sum(wt * _numpy_smooth_l1(level[expected_mask] - gt[expected_mask], 1.0).mean()
                   for wt, level in zip(weights, levels))
    got = depth_loss([jnp.asarray(x) for x in levels], jnp.asarray(gt), jnp.asarray(mask), level_weights=weights)
    np.testing.assert_allclose(float(got), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="level weights"):
        depth_loss([jnp.asarray(x) for x in levels[:3]], jnp.asarray(gt), jnp.asarray(mask), level_weights=weights)


def test_depth_loss_with_an_empty_mask_is_zero():
    gt = jnp.ones((1, 2, 2))
    got = depth_loss([gt * 3] * 4, gt, jnp.zeros((1, 2, 2), bool))
    assert float(got) == 0.0


def test_in_focus_weights_sum_to_one_and_peak_at_the_nearest_focus_position():
    focus = np.array([[0.02, 0.09, 0.16, 0.23, 0.28]], np.float32)  # DDFF-like disparities
    depth = np.array([[[0.03, 0.15, 0.27, 0.2]]], np.float32)  # (1, 1, 4)
    q = np.asarray(in_focus_weights(jnp.asarray(depth), jnp.asarray(focus), tau_rel=0.5))
    assert q.shape == (1, 5, 1, 4)
    np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-6)
    nearest = np.argmin(np.abs(focus[0][:, None] - depth[0, 0][None]), axis=0)
    np.testing.assert_array_equal(q.argmax(axis=1)[0, 0], nearest)
    tau = 0.5 * (0.28 - 0.02) / 4
    logits = -np.abs(focus[0][:, None] - depth[0, 0][None]) / tau
    expected = np.exp(logits) / np.exp(logits).sum(0)
    np.testing.assert_allclose(q[0, :, 0], expected, rtol=1e-5)
    assert q.max() > 0.5  # τ relative to the spacing: not flat even in small units
    q_metres = np.asarray(in_focus_weights(jnp.asarray(depth * 1000), jnp.asarray(focus * 1000), tau_rel=0.5))
    np.testing.assert_allclose(q_metres, q, rtol=1e-4, atol=1e-6)


def test_validity_aware_downsampling_matches_numpy():
    rng = np.random.default_rng(1)
    depth = rng.uniform(1, 2, size=(1, 4, 6)).astype(np.float32)
    valid = rng.random((1, 4, 6)) > 0.4
    valid[0, :2, :2] = False  # one empty cell
    low, low_valid = downsample_depth_with_mask(jnp.asarray(depth), jnp.asarray(valid), 2, 0.5)
    for i in range(2):
        for j in range(3):
            cell_valid = valid[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            cell = depth[0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            assert bool(low_valid[0, i, j]) == (cell_valid.sum() >= 2)
            if cell_valid.any():
                np.testing.assert_allclose(float(low[0, i, j]), cell[cell_valid].mean(), rtol=1e-6)


def _plane(h, w, a, b, c):
    rows, cols = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
    return (c + a * cols + b * rows).astype(np.float32)[None]


def test_spatial_loss_is_zero_when_theta_equals_the_ground_truth_gradient():
    # A plane D* = c + a·x + b·y (pixels, input resolution) on a 64×64 image, solver stride 16:
    # block means are the plane at the block centres, so the per-solver-pixel gradient is (16a, 16b),
    # divided by the focus range. Hand-computed, independent of the loss's helpers.
    a, b, c, stride = 0.01, -0.004, 1.5, 16
    depth = _plane(64, 64, a, b, c)
    focus = np.linspace(0.5, 3.0, 5, dtype=np.float32)[None]
    focus_range = 2.5
    target = np.array([stride * a, stride * b], np.float32) / focus_range
    theta = np.broadcast_to(target, (1, 5, 4, 4, 2)).astype(np.float32)
    valid = np.ones((1, 64, 64), bool)
    kwargs = dict(stride=stride, tau_rel=0.5)
    got = spatial_variational_loss(jnp.asarray(theta), jnp.asarray(depth), jnp.asarray(valid), jnp.asarray(focus),
                                   **kwargs)
    assert abs(float(got)) < 1e-6
    # Offset both components by δ: q sums to 1, so every valid component costs δ and the per-pixel L1 norm
    # of the 2-vector is 2δ.
    delta = 0.03
    got = spatial_variational_loss(jnp.asarray(theta + delta), jnp.asarray(depth), jnp.asarray(valid),
                                   jnp.asarray(focus), **kwargs)
    np.testing.assert_allclose(float(got), 2 * delta, rtol=1e-4)
    # Offset x only: 4 rows × 3 valid x-differences err, out of 12 x + 12 y valid components.
    offset = np.zeros(2, np.float32)
    offset[0] = delta
    got = spatial_variational_loss(jnp.asarray(theta + offset), jnp.asarray(depth), jnp.asarray(valid),
                                   jnp.asarray(focus), **kwargs)
    np.testing.assert_allclose(float(got), 2 * delta * 12 / 24, rtol=1e-4)
    # Unit-free: metres → millimetres (depth and focus ×1000) leaves L_sv unchanged.
    got_mm = spatial_variational_loss(jnp.asarray(theta + offset), jnp.asarray(depth * 1000), jnp.asarray(valid),
                                      jnp.asarray(focus * 1000), **kwargs)
    np.testing.assert_allclose(float(got_mm), float(got), rtol=1e-3)


def test_spatial_loss_pads_odd_ground_truth_like_the_model():
    # 45×61 input → padded 64×64 → 4×4 at stride 16; a wrong solver grid must be refused.
    depth = np.ones((1, 45, 61), np.float32)
    valid = np.ones((1, 45, 61), bool)
    focus = jnp.asarray([[0.0, 1.0, 2.0]])
    got = spatial_variational_loss(jnp.zeros((1, 3, 4, 4, 2)), jnp.asarray(depth), jnp.asarray(valid), focus,
                                   stride=16, tau_rel=0.5)
    assert abs(float(got)) < 1e-7  # constant depth: zero gradient; padding cells do not count
    with pytest.raises(ValueError, match="surface_gradients has shape"):
        spatial_variational_loss(jnp.zeros((1, 3, 3, 4, 2)), jnp.asarray(depth), jnp.asarray(valid), focus,
                                 stride=16, tau_rel=0.5)


def test_unit_free_gradients_follow_the_solver_convention():
    depth = np.array([[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]], np.float32)
    grad, valid = unit_free_depth_gradients(jnp.asarray(depth), jnp.ones((1, 2, 3), bool), jnp.asarray([2.0]))
    np.testing.assert_allclose(np.asarray(grad[0, :, :, 0]), [[0.5, 1.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(np.asarray(grad[0, :, :, 1]), [[1.0, 0.5, -0.5], [0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(valid[0, :, :, 0]), [[1, 1, 0], [1, 1, 0]])
    np.testing.assert_array_equal(np.asarray(valid[0, :, :, 1]), [[1, 1, 1], [0, 0, 0]])


def test_focal_loss_hand_case():
    # Per pixel p = [0.5, 0.1, 0.4]: mode 0, then the rise 0.1 → 0.4 violates: 0.3² = 0.09 per pixel.
    prob = np.broadcast_to(np.array([0.5, 0.1, 0.4], np.float32)[None, :, None, None], (2, 3, 2, 5))
    np.testing.assert_allclose(float(focal_variational_loss(jnp.asarray(prob))), 0.09, rtol=1e-5)
    unimodal = np.broadcast_to(np.array([0.1, 0.6, 0.3], np.float32)[None, :, None, None], (1, 3, 2, 2))
    assert float(focal_variational_loss(jnp.asarray(unimodal))) == 0.0


def _fake_outputs(rng, b=1, s=3, h=32, w=32, spatial=True):
    focus = np.array([[1.0, 2.0, 3.0]] * b, np.float32)
    logits = rng.normal(size=(b, s, h, w)).astype(np.float32)
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    depth = np.einsum("bshw,bs->bhw", prob, focus)
    gradients = jnp.asarray(rng.normal(size=(b, s, 2, 2, 2)).astype(np.float32)) if spatial else None
    # uncertainty and all_in_focus are not read by the loss: zeros of the right shapes.
    return DualFocusOutput(depth=jnp.asarray(depth), uncertainty=jnp.zeros((b, h, w)), prob=jnp.asarray(prob),
                           all_in_focus=jnp.zeros((b, h, w, 3)),
                           depth_levels=[jnp.asarray(depth + 0.1 * i) for i in range(4)],
                           focus_positions=jnp.asarray(focus), surface_gradients=gradients)


def test_total_loss_is_the_weighted_sum_of_its_components():
    rng = np.random.default_rng(2)
    config = model_config("small", "dualfocus", lambda_sv=0.3, lambda_fv=2.0)
    outputs = _fake_outputs(rng)
    gt = jnp.asarray(rng.uniform(1.0, 3.0, size=(1, 32, 32)).astype(np.float32))
    valid = jnp.ones((1, 32, 32), bool)
    total, parts = dualfocus_loss(outputs, gt, valid, config)
    assert set(parts) == {"depth", "spatial", "focal", "total"}
    assert all(float(parts[k]) > 0 for k in ("depth", "spatial", "focal"))
    np.testing.assert_allclose(float(total), float(parts["depth"] + 0.3 * parts["spatial"] + 2.0 * parts["focal"]),
                               rtol=1e-6)
    total_nf, parts_nf = dualfocus_loss(outputs, gt, valid, model_config("small", "no_focal", lambda_sv=0.3))
    np.testing.assert_allclose(float(total - total_nf), float(2.0 * parts["focal"]), rtol=1e-5)
    _, parts_ns = dualfocus_loss(_fake_outputs(rng, spatial=False), gt, valid, model_config("small", "no_spatial"))
    assert "spatial" not in parts_ns
    with pytest.raises(ValueError, match="depth_gt has shape"):
        dualfocus_loss(outputs, gt[:, :16], valid, config)
    with pytest.raises(ValueError, match="surface_gradients"):
        dualfocus_loss(_fake_outputs(rng, spatial=False), gt, valid, config)
