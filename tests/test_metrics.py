"""Tests of dualfocus_jax.evaluation.metrics against plain NumPy/SciPy references and hand-computed cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
import skimage.filters

from dualfocus_jax.evaluation import metrics

# The Scharr kernel of docs/design/METRICS.md; its transpose differentiates along the width.
_SCHARR_H = np.array([[3.0, 10.0, 3.0], [0.0, 0.0, 0.0], [-3.0, -10.0, -3.0]]) / 16.0


def _reference_bumpiness(pred, gt, mask, clip=0.05):
    """One image, float64, SciPy 'reflect' border (what scikit-image >= 0.19 uses)."""
    d = pred.astype(np.float64) - gt.astype(np.float64)

    def along_h(x):
        return ndi.convolve(x, _SCHARR_H, mode="reflect")

    def along_w(x):
        return ndi.convolve(x, _SCHARR_H.T, mode="reflect")

    dx, dy = along_w(d), along_h(d)
    hessian = np.sqrt(along_w(dx) ** 2 + along_h(dx) ** 2 + along_h(dy) ** 2 + along_w(dy) ** 2)
    return 100.0 * np.minimum(hessian, clip)[mask].sum() / mask.sum()


def _reference_metrics(pred, gt, mask):
    """One image, float64, with boolean indexing: the DFV/HybridDepth scripts' arithmetic."""
    p, g = pred[mask].astype(np.float64), gt[mask].astype(np.float64)
    n = mask.sum()
    keep_log = p > 0
    ratio = np.where(keep_log, np.maximum(p / g, g / np.where(keep_log, p, 1.0)), np.inf)
    mse = np.mean((p - g) ** 2)
    return {
        "mse": mse,
        "rmse": np.sqrt(mse),
        "log_rmse": np.sqrt(np.sum((np.log(p[keep_log]) - np.log(g[keep_log])) ** 2) / n),
        "abs_rel": np.mean(np.abs(p - g) / g),
        "sq_rel": np.mean((p - g) ** 2 / g),
        "delta1": np.mean(ratio < 1.25),
        "delta2": np.mean(ratio < 1.25 ** 2),
        "delta3": np.mean(ratio < 1.25 ** 3),
        "bump": _reference_bumpiness(pred, gt, mask),
        "mae": np.mean(np.abs(p - g)),
    }


def _random_batch(seed, batch=3, height=17, width=13):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.2, 2.0, (batch, height, width)).astype(np.float32)
    gt[rng.random(gt.shape) < 0.2] = 0.0  # invalid GT pixels
    pred = (gt + rng.normal(0.0, 0.3, gt.shape)).astype(np.float32)
    pred[0, 0, :4] = [-0.1, 0.0, 1e-3, 5.0]  # non-positive predictions exercise the masked log and δ
    mask = (gt > 0) & (rng.random(gt.shape) < 0.8)
    return pred, gt, mask


def test_metric_names_are_the_spec():
    assert metrics.METRIC_NAMES == (
        "mse", "rmse", "log_rmse", "abs_rel", "sq_rel", "delta1", "delta2", "delta3", "bump", "mae")


def test_per_image_matches_numpy_reference_on_random_masked_data():
    pred, gt, mask = _random_batch(0)
    per_image = metrics.depth_metrics_per_image(pred, gt, mask)
    assert set(per_image) == set(metrics.METRIC_NAMES)
    for b in range(pred.shape[0]):
        expected = _reference_metrics(pred[b], gt[b], mask[b])
        for name in metrics.METRIC_NAMES:
            assert per_image[name].shape == (pred.shape[0],)
            np.testing.assert_allclose(per_image[name][b], expected[name], rtol=2e-5, atol=1e-6, err_msg=name)


def test_batch_average_is_mean_of_per_image_values():
    pred, gt, mask = _random_batch(1, batch=4)
    averaged = metrics.depth_metrics(pred, gt, mask)
    for name in metrics.METRIC_NAMES:
        expected = np.mean([_reference_metrics(pred[b], gt[b], mask[b])[name] for b in range(4)])
        assert averaged[name].shape == ()
        np.testing.assert_allclose(averaged[name], expected, rtol=2e-5, atol=1e-6, err_msg=name)


def test_bumpiness_matches_scipy_and_scikit_image_scharr():
    pred, gt, mask = _random_batch(2, batch=2, height=12, width=15)
    pred = (gt + np.random.default_rng(3).normal(0, 0.01, gt.shape)).astype(np.float32)  # mostly under the clip
    got = metrics.bumpiness_per_image(pred, gt, mask)
    for b in range(2):
        np.testing.assert_allclose(got[b], _reference_bumpiness(pred[b], gt[b], mask[b]), rtol=2e-5)
        # DFV's own formulation, with the installed scikit-image (>= 0.19: 'reflect' border).
        d = pred[b].astype(np.float64) - gt[b]
        dx, dy = skimage.filters.scharr_v(d), skimage.filters.scharr_h(d)
        hessian = np.sqrt(skimage.filters.scharr_v(dx) ** 2 + skimage.filters.scharr_h(dx) ** 2
                          + skimage.filters.scharr_h(dy) ** 2 + skimage.filters.scharr_v(dy) ** 2)
        dfv = 100.0 * np.clip(hessian, 0, 0.05)[mask[b]].sum() / mask[b].sum()
        np.testing.assert_allclose(got[b], dfv, rtol=2e-5)


def test_perfect_prediction_gives_zero_errors_and_full_accuracy():
    gt = np.random.default_rng(4).uniform(0.5, 3.0, (2, 9, 11)).astype(np.float32)
    out = metrics.depth_metrics(gt, gt, metrics.default_valid_mask(gt))
    for name in ("mse", "rmse", "log_rmse", "abs_rel", "sq_rel", "bump", "mae"):
        assert float(out[name]) == pytest.approx(0.0, abs=1e-6), name
    for name in ("delta1", "delta2", "delta3"):
        assert float(out[name]) == 1.0, name


def test_constant_offset_gives_hand_computed_values():
    # gt = 2 everywhere, pred = 2.5: error 0.5, MSE 0.25, AbsRel 0.25, SqRel 0.125, ratio 1.25 (not < 1.25),
    # logRMSE = log(1.25) = 0.22314355; a constant error has zero Hessian, so Bump = 0.
    gt = np.full((1, 8, 8), 2.0, np.float32)
    pred = gt + 0.5
    out = metrics.depth_metrics_per_image(pred, gt, gt > 0)
    expected = {"mse": 0.25, "rmse": 0.5, "mae": 0.5, "abs_rel": 0.25, "sq_rel": 0.125,
                "log_rmse": 0.22314355, "delta1": 0.0, "delta2": 1.0, "delta3": 1.0, "bump": 0.0}
    for name, value in expected.items():
        np.testing.assert_allclose(out[name][0], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_planar_error_has_zero_bumpiness_away_from_the_border():
    rows, cols = np.mgrid[0:16, 0:20].astype(np.float32)
    gt = np.full((1, 16, 20), 1.0, np.float32)
    pred = gt + (0.03 * rows + 0.02 * cols + 0.1)[None]
    interior = np.zeros_like(gt, bool)
    interior[:, 2:-2, 2:-2] = True  # the reflected border bends a plane within 2 px of the edge
    assert float(metrics.bumpiness_per_image(pred, gt, interior)[0]) == pytest.approx(0.0, abs=1e-4)
    assert float(metrics.bumpiness_per_image(pred, gt, np.ones_like(gt, bool))[0]) > 0.01


@pytest.mark.parametrize(
    "curvature, expected_bump",
    [
        # d = a x²: the Scharr derivative is an un-halved central difference, dx = 4 a x, dxx = 8 a, all
        # other terms 0, so H = 8 a = 0.008 and Bump = 100 · 0.008 = 0.8.
        ("xx", 0.8),
        # d = a x y: dx = 2 a y, dy = 2 a x, dxy = dyx = 4 a, dxx = dyy = 0, H = 4 √2 a, Bump = 0.4 √2.
        ("xy", 0.4 * np.sqrt(2.0)),
    ],
)
def test_quadratic_error_has_hand_computed_bumpiness(curvature, expected_bump):
    a = 1e-3
    rows, cols = np.mgrid[0:14, 0:18].astype(np.float32)
    error = a * cols ** 2 if curvature == "xx" else a * cols * rows
    gt = np.full((1, 14, 18), 1.0, np.float32)
    interior = np.zeros_like(gt, bool)
    interior[:, 2:-2, 2:-2] = True
    got = metrics.bumpiness_per_image(gt + error[None], gt, interior)
    np.testing.assert_allclose(got[0], expected_bump, rtol=1e-3)


def test_bumpiness_clips_the_hessian_norm():
    # d = 0.01 x²: H = 0.08 > 0.05, so every interior pixel contributes 100 · 0.05 = 5.
    cols = np.mgrid[0:10, 0:12][1].astype(np.float32)
    gt = np.ones((1, 10, 12), np.float32)
    interior = np.zeros_like(gt, bool)
    interior[:, 2:-2, 2:-2] = True
    np.testing.assert_allclose(metrics.bumpiness_per_image(gt + 0.01 * cols ** 2, gt, interior)[0], 5.0, rtol=1e-5)


def test_empty_image_is_nan_per_image_and_left_out_of_the_average():
    pred, gt, mask = _random_batch(5, batch=3)
    mask[1] = False
    per_image = metrics.depth_metrics_per_image(pred, gt, mask)
    averaged = metrics.depth_metrics(pred, gt, mask)
    for name in metrics.METRIC_NAMES:
        assert np.isnan(per_image[name][1]), name
        expected = np.mean([_reference_metrics(pred[b], gt[b], mask[b])[name] for b in (0, 2)])
        np.testing.assert_allclose(averaged[name], expected, rtol=2e-5, atol=1e-6, err_msg=name)
    all_empty = metrics.depth_metrics(pred, gt, np.zeros_like(mask))
    assert all(float(v) == 0.0 for v in all_empty.values())


def test_invalid_pixels_cannot_leak_nan_into_pixel_metrics():
    pred, gt, mask = _random_batch(6, batch=1)
    pred[~mask] = np.nan
    gt[~mask] = np.nan
    out = metrics.depth_metrics_per_image(pred, gt, mask)
    for name in metrics.METRIC_NAMES:
        assert np.isfinite(out[name]).all(), name


def test_default_valid_mask_is_positive_ground_truth():
    gt = np.array([[[0.0, 1.0], [-1.0, np.nan]]], np.float32)
    np.testing.assert_array_equal(metrics.default_valid_mask(gt), [[[False, True], [False, False]]])


def test_average_uncertainty_matches_numpy():
    rng = np.random.default_rng(7)
    logits = rng.normal(size=(2, 5, 6, 7)).astype(np.float32)
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    focus = np.sort(rng.uniform(0.1, 1.5, (2, 5)), axis=1).astype(np.float32)
    pred = np.einsum("bshw,bs->bhw", prob, focus)
    expected = np.sqrt(np.einsum("bshw,bshw->bhw", prob, (pred[:, None] - focus[:, :, None, None]) ** 2)).mean((1, 2))
    np.testing.assert_allclose(metrics.average_uncertainty(prob, focus, pred), expected, rtol=1e-5)
    # A one-hot distribution predicting its own focus position is certain.
    one_hot = np.zeros((1, 3, 2, 2), np.float32)
    one_hot[:, 1] = 1.0
    certain = metrics.average_uncertainty(one_hot, np.array([[1.0, 2.0, 3.0]]), np.full((1, 2, 2), 2.0))
    np.testing.assert_allclose(certain, [0.0], atol=1e-7)
    # Half the mass at 1 and at 3 around pred 2: σ = 1 everywhere; the mask picks pixels.
    split = np.zeros((1, 3, 2, 2), np.float32)
    split[:, 0] = split[:, 2] = 0.5
    masked = metrics.average_uncertainty(split, np.array([[1.0, 2.0, 3.0]]), np.full((1, 2, 2), 2.0),
                                         np.array([[[True, False], [False, False]]]))
    np.testing.assert_allclose(masked, [1.0], rtol=1e-6)


def test_jit_of_the_batched_call_matches_eager_and_compiles_once():
    pred, gt, mask = _random_batch(8)
    traces = []

    def traced(p, g, m):
        traces.append(1)
        return metrics.depth_metrics(p, g, m)

    compiled = jax.jit(traced)
    first = compiled(jnp.asarray(pred), jnp.asarray(gt), jnp.asarray(mask))
    second = compiled(jnp.asarray(pred) + 0.1, jnp.asarray(gt), jnp.asarray(mask))
    assert len(traces) == 1
    with jax.disable_jit():
        eager = metrics.depth_metrics(pred, gt, mask)
    for name in metrics.METRIC_NAMES:
        np.testing.assert_allclose(first[name], eager[name], rtol=1e-5, atol=1e-7, err_msg=name)
    assert float(second["mse"]) != float(first["mse"])


@pytest.mark.parametrize(
    "pred_shape, gt_shape, mask_shape, match",
    [
        ((8, 8), (8, 8), (8, 8), "pred_BHW must have shape"),
        ((1, 8, 8), (1, 8, 7), (1, 8, 8), "same"),
        ((1, 8, 8), (1, 8, 8), (2, 8, 8), "same"),
    ],
)
def test_bad_shapes_raise_value_error(pred_shape, gt_shape, mask_shape, match):
    with pytest.raises(ValueError, match=match):
        metrics.depth_metrics(np.ones(pred_shape), np.ones(gt_shape), np.ones(mask_shape, bool))


def test_average_uncertainty_rejects_mismatched_focus():
    with pytest.raises(ValueError, match="focus_BS"):
        metrics.average_uncertainty(np.ones((2, 5, 4, 4)), np.ones((5,)), np.ones((2, 4, 4)))
