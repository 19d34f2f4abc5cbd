"""Evaluation protocols (masks, clipping, slice selection, unit scaling) and the evaluation loop, checked
against hand-made cases and plain NumPy metrics; the network is replaced by known predictions."""

import numpy as np
import pytest
from ml_collections import ConfigDict

from dualfocus_jax import data_features as F
from dualfocus_jax.evaluation.evaluate import evaluate_model, evaluation_batches, mean_over_images
from dualfocus_jax.evaluation.protocols import PROTOCOLS, clipped_for_metrics, evaluation_mask, protocol_named


def eval_config(**overrides):
    values = dict(num_slices=5, batch_size=2, max_examples=0, depth_scale=1.0)
    values.update(overrides)
    return ConfigDict(values)


def record(slices=5, size=(6, 8), seed=0, focus=None, name="r"):
    rng = np.random.default_rng(seed)
    focus = np.linspace(1.0, 2.0, slices) if focus is None else np.asarray(focus)
    depth = rng.uniform(1.0, 2.0, size).astype(np.float32)
    valid = rng.uniform(size=size) > 0.2
    return {F.STACK: rng.integers(0, 256, (slices, *size, 3), dtype=np.uint8),
            F.FOCUS_POSITIONS: focus.astype(np.float32), F.DEPTH: np.where(valid, depth, 0).astype(np.float32),
            F.VALID: valid, F.ID: name.encode()}


def test_masks_follow_each_dataset_rule():
    gt = np.array([[[0.0, 5e-4, 0.5, 9.9, 12.0, -1.0]]], np.float32)
    valid = np.ones_like(gt, bool)
    valid[0, 0, 2] = False
    assert evaluation_mask(PROTOCOLS["synthetic_focal"], gt, valid).tolist() == [[[1, 1, 0, 1, 1, 1]]]
    assert evaluation_mask(PROTOCOLS["fod500"], gt, valid).tolist() == [[[0, 1, 0, 1, 1, 0]]]
    assert evaluation_mask(PROTOCOLS["nyuv2"], gt, valid).tolist() == [[[0, 0, 0, 1, 0, 0]]]
    assert evaluation_mask(PROTOCOLS["arkitscenes"], gt, valid).tolist() == [[[0, 1, 0, 1, 1, 1]]]
    with pytest.raises(ValueError, match="choose one of"):
        protocol_named("kitti")


def test_fod500_clips_prediction_and_ground_truth_to_1_5_m():
    assert clipped_for_metrics(PROTOCOLS["fod500"], np.array([-0.2, 0.7, 2.4])).tolist() == pytest.approx(
        [0.0, 0.7, 1.5])
    np.testing.assert_array_equal(clipped_for_metrics(PROTOCOLS["nyuv2"], np.array([12.0])), [12.0])


def test_batches_group_by_shape_pad_the_last_and_respect_max_examples():
    records = [record(seed=0, name="a"), record(seed=1, name="b"), record(seed=2, name="c"),
               record(seed=3, size=(7, 8), name="d")]
    batches = list(evaluation_batches(records, eval_config(batch_size=2), PROTOCOLS["synthetic_focal"]))
    assert [(ids, real) for ids, _, real in batches] == [(["a", "b"], 2), (["c"], 1), (["d"], 1)]
    _, padded, _ = batches[1]
    assert padded["stack"].shape == (2, 5, 6, 8, 3)
    np.testing.assert_array_equal(padded["depth"][0], padded["depth"][1])
    limited = list(evaluation_batches(records, eval_config(batch_size=2, max_examples=3), PROTOCOLS["synthetic_focal"]))
    assert sum(real for _, _, real in limited) == 3


def test_ddff_protocol_feeds_linspace_slices():
    focus = np.linspace(0.28248, 0.02018, 10)[::-1]  # ascending, as stored
    batches = list(evaluation_batches([record(slices=10, focus=focus)], eval_config(), PROTOCOLS["ddff12"]))
    np.testing.assert_allclose(batches[0][1]["focus"][0], focus[[0, 2, 4, 7, 9]], rtol=1e-6)


def numpy_rmse_mae_absrel(pred, gt, mask):
    diff = (pred - gt)[mask]
    return np.sqrt(np.mean(diff ** 2)), np.mean(np.abs(diff)), np.mean(np.abs(diff) / gt[mask])


@pytest.mark.parametrize("depth_scale", [1.0, 0.2])
def test_evaluate_model_matches_numpy_metrics_in_the_dataset_unit(depth_scale):
    records = [record(seed=s, name=f"r{s}") for s in range(3)]
    seen_focus = []

    def constant_predict(params, stack, focus):
        # Predicts the middle focus position everywhere, with p peaked on the middle slice.
        seen_focus.append(np.asarray(focus))
        b, s, h, w, _ = stack.shape
        prob = np.zeros((b, s, h, w), np.float32)
        prob[:, s // 2] = 1.0
        return {"depth": np.broadcast_to(focus[:, s // 2, None, None], (b, h, w)).astype(np.float32),
                "uncertainty": np.zeros((b, h, w), np.float32), "prob": prob}

    result = evaluate_model(None, None, records, eval_config(depth_scale=depth_scale), PROTOCOLS["synthetic_focal"],
                            keep_examples=2, predict=constant_predict)
    assert np.allclose(seen_focus[0][0], np.linspace(1, 2, 5) * depth_scale)
    per_image = []
    for rec in records:
        pred = np.full(rec[F.DEPTH].shape, 1.5, np.float32)
        per_image.append(numpy_rmse_mae_absrel(pred, rec[F.DEPTH], rec[F.VALID]))
    expected = np.mean(per_image, axis=0)
    assert result.metrics["rmse"] == pytest.approx(expected[0], rel=1e-5)
    assert result.metrics["mae"] == pytest.approx(expected[1], rel=1e-5)
    assert result.metrics["abs_rel"] == pytest.approx(expected[2], rel=1e-5)
    assert result.metrics["avg_unc"] == pytest.approx(0.0, abs=1e-6)  # one-hot p at the predicted depth
    assert result.ids == ["r0", "r1", "r2"] and len(result.examples) == 2
    assert result.examples[0].depth_HW == pytest.approx(1.5)  # back in the dataset's unit


def test_mean_over_images_skips_images_without_scored_pixels():
    assert mean_over_images({"rmse": np.array([1.0, np.nan, 3.0])}) == {"rmse": 2.0}
