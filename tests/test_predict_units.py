"""The pieces of the prediction command, each against an independent reference (NumPy, hand-computed)."""

import numpy as np
import pytest

from dualfocus_jax.inference import (
    align_focal_stack,
    depth_from_slice_probabilities,
    depth_to_points,
    focus_working_units,
    intrinsics_from_fov,
    parse_focus_distances,
    warp_similarity,
    write_ply,
)
from dualfocus_jax.inference.point_cloud import read_ply


def test_focus_rule_keeps_distances_for_narrow_spans_and_inverts_wide_ones():
    narrow = focus_working_units([0.5, 1.0, 4.9])
    assert narrow.mode == "distance" and narrow.span == pytest.approx(9.8)
    np.testing.assert_allclose(narrow.values_S, [0.5, 1.0, 4.9])
    wide = focus_working_units([10.0, 20.0, 5792.0])
    assert wide.mode == "inverse distance"
    np.testing.assert_allclose(wide.values_S, [0.1, 0.05, 1 / 5792.0])
    assert "inverse distance" in wide.describe("m")


@pytest.mark.parametrize("bad, words", [([1.0, np.inf], "finite"), ([0.0, 1.0], "> 0"), ([2.0, 1.0], "ascending")])
def test_focus_rule_rejects_bad_distances(bad, words):
    with pytest.raises(ValueError, match=words):
        focus_working_units(bad)


def test_expectation_in_distance_and_inverse_distance_matches_hand_computation():
    prob = np.zeros((3, 1, 2))
    prob[:, 0, 0] = [0.5, 0.5, 0.0]
    prob[:, 0, 1] = [0.0, 0.0, 1.0]
    depth, std = depth_from_slice_probabilities(prob, focus_working_units([1.0, 2.0, 4.0]))
    np.testing.assert_allclose(depth[0], [1.5, 4.0], rtol=1e-6)
    np.testing.assert_allclose(std[0], [0.5, 0.0], atol=1e-6)
    # Span 100: the mean is over 1/f. 50/50 of 1 and 100 → 1/((1 + 0.01)/2) = 1.980..., not 50.5.
    depth, std = depth_from_slice_probabilities(prob, focus_working_units([1.0, 100.0, 1000.0]))
    assert depth[0, 0] == pytest.approx(2 / 1.01, rel=1e-6)
    assert depth[0, 1] == pytest.approx(1000.0, rel=1e-5)
    assert std[0, 0] == pytest.approx(0.495 * (2 / 1.01) ** 2, rel=1e-5)  # σ_{1/f} · d²


def _textured_image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.random((height // 4, width // 4, 3))
    image = np.kron(noise, np.ones((4, 4, 1)))  # blocks: sharp edges everywhere, like a real scene
    y, x = np.mgrid[0:height, 0:width]
    return (0.6 * image + 0.4 * (0.5 + 0.5 * np.sin(x / 5.0) * np.cos(y / 7.0))[..., None]).astype(np.float32)


def test_alignment_recovers_a_known_scale_and_shift():
    reference = _textured_image(128, 160)
    # Slice 0 is magnified 2 % and shifted: its pixel x sits at 1.02·(x − c) + c + (3, −2) of the reference.
    moved = warp_similarity(reference, 1 / 1.02, np.array([-3.0, 2.0]) / 1.02)
    stack = np.stack([moved, reference, reference])
    aligned, alignment = align_focal_stack(stack, reference_index=1)
    assert alignment.reference_index == 1
    assert alignment.scale_S[0] == pytest.approx(1.02, abs=0.003)
    np.testing.assert_allclose(alignment.shift_yx_S2[0], [3.0, -2.0], atol=0.5)
    np.testing.assert_allclose(alignment.scale_S[1:], 1.0, atol=1e-3)  # slice 2 is the reference itself
    inner = (slice(16, -16), slice(16, -16))
    before = np.abs(moved - reference)[inner].mean()
    after = np.abs(aligned[0] - reference)[inner].mean()
    assert after < 0.25 * before, (before, after)


def test_alignment_recovers_a_known_scale_and_shift_on_a_downscaled_copy():
    # 240×320 photos are registered on a 192×256 grey copy (work_size 256): the anti-aliased downscaling path.
    reference = _textured_image(240, 320, seed=1)
    # Slice 1's pixel x sits at 1.015·(x − c) + c + (−4, 5) of the reference (as in the test above).
    moved = warp_similarity(reference, 1 / 1.015, np.array([4.0, -5.0]) / 1.015)
    _, alignment = align_focal_stack(np.stack([reference, moved]), reference_index=0)
    assert alignment.scale_S[1] == pytest.approx(1.015, abs=0.003)
    np.testing.assert_allclose(alignment.shift_yx_S2[1], [-4.0, 5.0], atol=0.5)


def test_alignment_pieces_compute_what_scikit_image_computes():
    """The NumPy warp, anti-aliased downscaling and phase correlation against the scikit-image functions they
    replace (imported here only: the predictor does not import scikit-image)."""
    from skimage.registration import phase_cross_correlation
    from skimage.transform import AffineTransform, rescale, warp

    from dualfocus_jax.inference import alignment

    image = np.random.default_rng(2).random((57, 83, 3)).astype(np.float32)
    for scale, shift in [(1.03, (2.5, -3.25)), (0.96, (-7.1, 4.4)), (1.2, (30.0, -40.0))]:
        h, w = image.shape[:2]
        centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
        forward = AffineTransform(scale=scale, translation=centre - scale * centre + np.array([shift[1], shift[0]]))
        expected = warp(image, forward.inverse, order=1, mode="edge", preserve_range=True)
        np.testing.assert_allclose(warp_similarity(image, scale, np.array(shift)), expected, atol=1e-4)
    grey = image.mean(-1)
    for factor in (0.4, 0.37, 0.9):
        expected = rescale(grey, factor, anti_aliasing=True, preserve_range=True)
        np.testing.assert_allclose(alignment._rescale_anti_aliased(grey, factor), expected, atol=1e-5)
    fixed = alignment._grey_small(_textured_image(96, 128, seed=3), 1.0)
    moving = warp_similarity(fixed[..., None], 1.01, np.array([1.3, -2.6]))[..., 0]
    for upsample in (1, 20):
        shift, error, _ = phase_cross_correlation(fixed, moving, upsample_factor=upsample, normalization=None)
        ours, our_error = alignment._phase_correlation(np.fft.fft2(fixed), np.fft.fft2(moving),
                                                       upsample_factor=upsample)
        np.testing.assert_allclose(ours, shift, atol=1e-6)
        assert our_error == pytest.approx(error, abs=1e-5)


def test_alignment_rejects_a_single_slice():
    with pytest.raises(ValueError, match="S >= 2"):
        align_focal_stack(np.zeros((1, 8, 8, 3), np.float32))


def test_intrinsics_and_back_projection_match_the_pinhole_model():
    fx, fy, cx, cy = intrinsics_from_fov(3, 5, fov_deg=90.0)
    assert fx == pytest.approx(2.5) and fy == pytest.approx(2.5) and (cx, cy) == (2.0, 1.0)
    depth = np.full((3, 5), 2.0, np.float32)
    points = depth_to_points(depth, (fx, fy, cx, cy)).reshape(3, 5, 3)
    np.testing.assert_allclose(points[1, 4], [(4 - 2) / 2.5 * 2, 0.0, 2.0], rtol=1e-6)  # x = (u − cx)/fx · z
    np.testing.assert_allclose(points[0, 0], [-1.6, -0.8, 2.0], rtol=1e-6)
    with pytest.raises(ValueError, match="fov_deg"):
        intrinsics_from_fov(3, 5, fov_deg=180.0)


def test_ply_round_trip_drops_non_finite_points(tmp_path):
    points = np.array([[0, 0, 1], [1, 2, 3], [np.nan, 0, 1]], np.float32)
    colours = np.array([[0, 0.5, 1], [1, 1, 1], [0, 0, 0]], np.float32)
    path = write_ply(str(tmp_path / "p.ply"), points, colours)
    assert open(path, "rb").read(3) == b"ply"
    read_points, read_colours = read_ply(path)
    np.testing.assert_array_equal(read_points, points[:2])
    np.testing.assert_array_equal(read_colours, [[0, 128, 255], [255, 255, 255]])


def test_parse_focus_distances(tmp_path):
    assert parse_focus_distances(None) is None
    assert parse_focus_distances("0.5, 1,2e0") == [0.5, 1.0, 2.0]
    path = tmp_path / "f.txt"
    path.write_text("1\n2\n")
    assert parse_focus_distances(str(path)) == str(path)
    with pytest.raises(ValueError, match="comma-separated list of numbers or the path"):
        parse_focus_distances("0.5,far")
