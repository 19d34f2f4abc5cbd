"""Focus measures against independent scipy.ndimage implementations, plus their defining property."""

import numpy as np
import pytest
from scipy import ndimage

from dualfocus_jax.classical import focus_measures as fm

WINDOW = 5


def _random_stack_SHWC(seed=0, shape=(3, 17, 23, 3)):
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=shape).astype(np.float32)


def _grey_reference(stack_SHWC):
    return np.tensordot(stack_SHWC.astype(np.float64), np.array([0.299, 0.587, 0.114]), axes=([-1], [0]))


def _per_slice(fn, grey_SHW):
    return np.stack([fn(s) for s in grey_SHW])


def _modified_laplacian_reference(grey_HW, window):
    second_x = ndimage.correlate(grey_HW, np.array([[-1.0, 2.0, -1.0]]), mode="reflect")
    second_y = ndimage.correlate(grey_HW, np.array([[-1.0], [2.0], [-1.0]]), mode="reflect")
    return ndimage.uniform_filter(np.abs(second_x) + np.abs(second_y), size=window, mode="reflect")


def _graylevel_variance_reference(grey_HW, window):
    # Brute force: the variance of every reflected window, an implementation that shares nothing with the
    # box-filter identity the code uses.
    return ndimage.generic_filter(grey_HW, np.var, size=window, mode="reflect")


def _tenengrad_reference(grey_HW, window):
    energy = ndimage.sobel(grey_HW, axis=0, mode="reflect") ** 2 + ndimage.sobel(grey_HW, axis=1, mode="reflect") ** 2
    return ndimage.uniform_filter(energy, size=window, mode="reflect")


REFERENCES = {
    "modified_laplacian": _modified_laplacian_reference,
    "graylevel_variance": _graylevel_variance_reference,
    "tenengrad": _tenengrad_reference,
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_measure_matches_scipy_reference_on_random_rgb_stack(name):
    stack = _random_stack_SHWC()
    got = np.asarray(fm.FOCUS_MEASURES[name](stack, window=WINDOW))
    want = _per_slice(lambda g: REFERENCES[name](g, WINDOW), _grey_reference(stack))
    assert got.shape == stack.shape[:3] and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-5 * np.abs(want).max())


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_measure_matches_reference_on_grey_255_scale_with_window_1(name):
    # One channel on a 0..255 scale: checks the grey path (C = 1 is passed through) and float32 accuracy.
    stack = 255.0 * _random_stack_SHWC(seed=1, shape=(2, 11, 9, 1))
    window = 3 if name == "graylevel_variance" else 1  # variance of a single pixel is identically zero
    got = np.asarray(fm.FOCUS_MEASURES[name](stack, window=window))
    want = _per_slice(lambda g: REFERENCES[name](g, window), stack[..., 0].astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_non_rgb_channel_count_uses_channel_mean():
    stack = _random_stack_SHWC(seed=2, shape=(2, 10, 12, 2))
    got = np.asarray(fm.tenengrad(stack, window=3))
    want = _per_slice(lambda g: _tenengrad_reference(g, 3), stack.astype(np.float64).mean(-1))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * want.max())


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_measure_is_highest_on_the_sharpest_slice(name):
    # Blurring a texture more and more must lower the focus measure monotonically at (almost) every pixel.
    texture = np.random.default_rng(3).uniform(size=(32, 32)).astype(np.float64)
    stack = np.stack([ndimage.gaussian_filter(texture, s, mode="reflect") if s else texture for s in (0, 1, 2, 3)])
    focus = np.asarray(fm.FOCUS_MEASURES[name](stack[..., None].astype(np.float32), window=7))
    assert np.mean(np.argmax(focus, axis=0) == 0) > 0.99
    assert np.mean(np.all(np.diff(focus, axis=0) < 0, axis=0)) > 0.95


@pytest.mark.parametrize(
    "shape, window, match",
    [
        ((4, 8, 8), 3, r"\(S, H, W, C\)"),
        ((2, 8, 8, 3), 4, "odd"),
        ((2, 8, 8, 3), 0, "odd"),
        ((2, 8, 8, 3), 3.0, "int"),
        ((2, 0, 8, 3), 3, "empty"),
    ],
)
def test_bad_input_raises_clear_value_error(shape, window, match):
    with pytest.raises(ValueError, match=match):
        fm.modified_laplacian(np.zeros(shape, np.float32), window=window)
