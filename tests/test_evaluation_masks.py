"""Depth-edge and fine-texture masks on hand-built scenes whose answer is known pixel by pixel."""

import numpy as np
import pytest

from dualfocus_jax.evaluation.regions import (
    depth_edge_mask,
    fine_texture_mask,
    luminance_gradient,
    region_masks,
    region_metrics_per_image,
)


def step_depth(height=12, width=16, column=8, near=1.0, far=2.0):
    depth = np.full((height, width), near)
    depth[:, column:] = far
    return depth


def test_depth_step_marks_a_band_of_radius_on_both_sides():
    depth = step_depth()
    mask = depth_edge_mask(depth, np.ones(depth.shape, bool), depth_range=1.0, radius=2)
    # The jump lies between columns 7 and 8; both are marked, then widened by 2 px: columns 5..10.
    expected = np.zeros(depth.shape, bool)
    expected[:, 5:11] = True
    np.testing.assert_array_equal(mask, expected)


def test_small_jumps_and_slopes_are_not_edges():
    height, width = 10, 10
    slope = np.tile(np.linspace(1.0, 2.0, width), (height, 1))  # 0.11 per pixel, 11% of the range 1.0
    assert not depth_edge_mask(slope, np.ones((height, width), bool), depth_range=10.0).any()
    assert depth_edge_mask(slope, np.ones((height, width), bool), depth_range=1.0).all()


def test_jump_to_an_invalid_pixel_is_not_an_edge():
    depth = step_depth()
    valid = np.ones(depth.shape, bool)
    valid[:, 8:] = False  # the far side has no ground truth (e.g. a hole with a placeholder value)
    assert not depth_edge_mask(depth, valid, depth_range=1.0).any()


def test_luminance_gradient_of_a_ramp():
    ramp = np.tile(np.linspace(0, 255, 6, dtype=np.float64), (4, 1))
    image = np.repeat(ramp[..., None], 3, axis=-1).astype(np.uint8)
    gradient = luminance_gradient(image)
    np.testing.assert_allclose(gradient[:, 1:-1], 51 / 255, atol=1e-6)


def test_checkerboard_on_flat_depth_is_texture_and_not_edge():
    height, width = 16, 16
    depth = np.full((height, width), 1.5)
    checker = ((np.indices((height, width)).sum(0) // 2) % 2).astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    image[:, :8] = checker[:, :8, None]  # textured left half, flat grey right half
    image[:, 8:] = 0.5
    masks = region_masks(depth, np.ones((height, width), bool), image, depth_range=1.0)
    assert not masks["depth_edges"].any()
    assert masks["fine_texture"][1:-1, 1:6].all()  # borders: one-sided differences may see a flat pair
    assert not masks["fine_texture"][:, 10:].any()


def test_texture_excludes_depth_edges_and_invalid_pixels():
    depth = step_depth(16, 16, column=8)
    rng = np.random.default_rng(0)
    image = rng.random((16, 16, 3)).astype(np.float32)  # strong gradients everywhere
    valid = np.ones((16, 16), bool)
    valid[0] = False
    masks = region_masks(depth, valid, image, depth_range=1.0)
    assert masks["depth_edges"].any() and masks["fine_texture"].any()
    assert not (masks["depth_edges"] & masks["fine_texture"]).any()
    assert not masks["fine_texture"][0].any() and not masks["depth_edges"][0].any()
    np.testing.assert_array_equal(masks["all"], valid)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="depth_range"):
        depth_edge_mask(step_depth(), np.ones((12, 16), bool), depth_range=0.0)
    with pytest.raises(ValueError, match="same shape"):
        depth_edge_mask(step_depth(), np.ones((3, 3), bool), depth_range=1.0)
    with pytest.raises(ValueError, match="RGB"):
        luminance_gradient(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="share"):
        fine_texture_mask(np.zeros((4, 4, 3)), np.ones((5, 5), bool), np.zeros((5, 5), bool))


def test_region_metrics_per_image_match_numpy_on_each_mask_and_empty_regions_are_nan():
    rng = np.random.default_rng(3)
    gt = rng.uniform(1.0, 3.0, (2, 6, 7)).astype(np.float32)
    pred = gt + rng.normal(0, 0.2, gt.shape).astype(np.float32)
    left = np.zeros(gt.shape, bool)
    left[:, :, :3] = True
    empty_in_second = left.copy()
    empty_in_second[1] = False
    scores = region_metrics_per_image(pred, gt, {"left": left, "partly_empty": empty_in_second})
    for image in range(2):
        error = (pred[image] - gt[image])[left[image]]
        assert scores["left"]["rmse"][image] == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-5)
        assert scores["left"]["abs_rel"][image] == pytest.approx(
            np.mean(np.abs(error) / gt[image][left[image]]), rel=1e-5)
    np.testing.assert_array_equal(scores["left"]["pixels"], [18, 18])
    np.testing.assert_array_equal(scores["partly_empty"]["pixels"], [18, 0])
    assert np.isnan(scores["partly_empty"]["rmse"][1]) and np.isfinite(scores["partly_empty"]["rmse"][0])
