"""Outputs at the photos' pixel grid from a working-resolution prediction (full_resolution.py), against
independent references: the alignment's NumPy warp (alignment.warp_similarity, itself checked against
scikit-image's warp in test_predict_units.py) and plain NumPy blends."""

import numpy as np
import pytest
from PIL import Image

from dualfocus_jax.inference.alignment import SliceAlignment, warp_similarity
from dualfocus_jax.inference.full_resolution import _warp, all_in_focus_at_full_resolution, resize_map


def _photo(height, width, seed):
    rng = np.random.default_rng(seed)
    smooth = np.asarray(Image.fromarray((rng.random((height // 8, width // 8, 3)) * 255).astype(np.uint8))
                        .resize((width, height), Image.Resampling.BICUBIC))
    return smooth


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_pillow_warp_matches_the_alignment_warp(dtype):
    image = _photo(96, 120, 0)
    image = image if dtype == np.uint8 else image.astype(np.float32) / 255.0
    scale, shift = 1.03, np.array([2.5, -3.25])
    expected = warp_similarity(image.astype(np.float32), scale, shift)
    warped, covered = _warp(image, scale, shift[0], shift[1])
    inner = (slice(8, -8), slice(8, -8))
    tolerance = 1.5 if dtype == np.uint8 else 1.5 / 255
    assert np.abs(warped.astype(np.float32)[inner] - expected[inner]).max() <= tolerance
    assert covered[inner].min() == 1.0 and covered.min() == 0.0  # the shifted border is not covered


def test_all_in_focus_blend_matches_numpy(tmp_path):
    height, width = 60, 80
    photos = [_photo(height, width, seed) for seed in range(3)]
    paths = []
    for index, photo in enumerate(photos):
        paths.append(str(tmp_path / f"p{index}.png"))
        Image.fromarray(photo).save(paths[-1])
    # One-hot weights at the working grid (30×40): the photo of each region, unchanged.
    weights = np.zeros((3, 30, 40), np.float32)
    weights[0, :, :20], weights[1, :, 20:], weights[2] = 1.0, 1.0, 0.0
    aif = all_in_focus_at_full_resolution(paths, weights, None, (height, width))
    assert aif.shape == (height, width, 3) and aif.dtype == np.float32
    np.testing.assert_allclose(aif[:, :36], photos[0][:, :36] / 255.0, atol=1e-6)
    np.testing.assert_allclose(aif[:, 44:], photos[1][:, 44:] / 255.0, atol=1e-6)
    # Arbitrary weights: Σ w_s I_s / Σ w_s with the weights upsampled bilinearly.
    weights = np.random.default_rng(1).random((3, 30, 40)).astype(np.float32)
    aif = all_in_focus_at_full_resolution(paths, weights, None, (height, width))
    full = np.stack([resize_map(w, (height, width)) for w in weights])
    expected = np.einsum("shw,shwc->hwc", full, np.stack(photos) / 255.0) / full.sum(0)[..., None]
    np.testing.assert_allclose(aif, expected, atol=1e-5)


def test_all_in_focus_registers_the_photos_and_fills_uncovered_borders(tmp_path):
    height, width = 64, 80
    reference = _photo(height, width, 3)
    moved = np.asarray(np.clip(np.round(warp_similarity(reference.astype(np.float32), 1 / 1.02,
                                                         np.array([-3.0, 2.0]) / 1.02)), 0, 255), np.uint8)
    paths = [str(tmp_path / "moved.png"), str(tmp_path / "reference.png")]
    Image.fromarray(moved).save(paths[0])
    Image.fromarray(reference).save(paths[1])
    # At the working grid (half size) the alignment found scale 1.02 and shift (1.5, -1): (3, -2) full pixels.
    alignment = SliceAlignment(np.array([1.02, 1.0]), np.array([[1.5, -1.0], [0.0, 0.0]]), 1)
    weights = np.stack([np.ones((32, 40), np.float32), np.zeros((32, 40), np.float32)])
    aif = all_in_focus_at_full_resolution(paths, weights, alignment, (height, width))
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(aif[inner] * 255 - reference[inner]).mean() < 2.0  # the moved photo, registered back
    assert np.all(np.isfinite(aif)) and aif.min() >= 0 and aif.max() <= 1
