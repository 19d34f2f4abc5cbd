"""Focal volume: the difference formula of docs/design/METHOD.md item 2 against hand-made arrays."""

import numpy as np
import pytest

from dualfocus_jax.model.focal_volume import enhanced_focal_volume, focal_differences


def _hand_volume():
    # B=1, S=4, h=1, w=2, C=1; slice values chosen so every difference is distinct.
    values = np.array([[1.0, 10.0], [4.0, 30.0], [9.0, 20.0], [7.0, 25.0]], np.float32)  # (S, w)
    return values[None, :, None, :, None]  # (1, 4, 1, 2, 1)


def test_focal_differences_match_hand_computed_values():
    # ΔV_n = V_{n+1} − V_n for n < S and ΔV_S = V_S − V_{S−1}, written out by hand.
    expected = np.array([[3.0, 20.0], [5.0, -10.0], [-2.0, 5.0], [-2.0, 5.0]], np.float32)
    got = np.asarray(focal_differences(_hand_volume()))[0, :, 0, :, 0]
    np.testing.assert_array_equal(got, expected)


def test_concat_volume_puts_features_first_then_differences():
    volume = _hand_volume()
    concat = np.asarray(enhanced_focal_volume(volume, "concat"))
    assert concat.shape == (1, 4, 1, 2, 2)
    np.testing.assert_array_equal(concat[..., 0], volume[..., 0])
    np.testing.assert_array_equal(concat[0, :, 0, :, 1], [[3, 20], [5, -10], [-2, 5], [-2, 5]])


def test_difference_and_plain_modes_have_c_channels():
    volume = np.random.default_rng(0).normal(size=(2, 3, 4, 5, 6)).astype(np.float32)
    diff = np.asarray(enhanced_focal_volume(volume, "difference"))
    plain = np.asarray(enhanced_focal_volume(volume, "plain"))
    assert diff.shape == plain.shape == volume.shape
    np.testing.assert_array_equal(plain, volume)
    np.testing.assert_allclose(diff[:, 0], volume[:, 1] - volume[:, 0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(diff[:, 2], volume[:, 2] - volume[:, 1], rtol=0, atol=1e-6)


def test_two_slices_and_errors():
    volume = np.arange(2, dtype=np.float32).reshape(1, 2, 1, 1, 1) * 3.0
    np.testing.assert_array_equal(np.asarray(focal_differences(volume)).ravel(), [3.0, 3.0])
    with pytest.raises(ValueError, match="at least 2 slices"):
        focal_differences(np.zeros((1, 1, 2, 2, 1), np.float32))
    with pytest.raises(ValueError, match="mode must be one of"):
        enhanced_focal_volume(volume, "sum")
