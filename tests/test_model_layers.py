"""Building blocks of the network against NumPy references: 3D convolution, pooling, resizing, padding, norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.model.conv3d import Conv3x3x3, conv3x3x3_lax, conv3x3x3_slices
from dualfocus_jax.model.norms import StackGroupNorm, group_count
from dualfocus_jax.model.padding import crop_spatial, pad_spatial, padding_to_multiple
from dualfocus_jax.model.resampling import adaptive_avg_pool, adaptive_pool_matrix, resize_bilinear_hw


def _numpy_conv3x3x3(x, kernel):
    """Direct 'SAME' cross-correlation with zero padding, (B, S, H, W, C) · (3, 3, 3, C, O)."""
    b, s, h, w, c = x.shape
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((b, s, h, w, kernel.shape[-1]), np.float64)
    for ds in range(3):
        for dh in range(3):
            for dw in range(3):
                window = padded[:, ds : ds + s, dh : dh + h, dw : dw + w]
                out += np.einsum("bshwc,co->bshwo", window, kernel[ds, dh, dw])
    return out


@pytest.mark.parametrize("num_slices", [1, 2, 3])
def test_conv3x3x3_implementations_match_numpy(num_slices):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, num_slices, 5, 4, 3)).astype(np.float32)
    kernel = rng.normal(size=(3, 3, 3, 3, 2)).astype(np.float32)
    reference = _numpy_conv3x3x3(x, kernel)
    np.testing.assert_allclose(np.asarray(conv3x3x3_slices(x, kernel)), reference, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(np.asarray(conv3x3x3_lax(x, kernel)), reference, rtol=1e-5, atol=1e-4)


def test_conv3x3x3_module_impls_share_parameters():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(1, 4, 6, 6, 2)), jnp.float32)
    params = Conv3x3x3(3, use_bias=True).init(jax.random.key(0), x)
    assert params["params"]["kernel"].shape == (3, 3, 3, 2, 3)
    slices = Conv3x3x3(3, use_bias=True, impl="slices").apply(params, x)
    native = Conv3x3x3(3, use_bias=True, impl="lax").apply(params, x)
    np.testing.assert_allclose(np.asarray(slices), np.asarray(native), rtol=1e-5, atol=1e-5)


def test_adaptive_pool_matches_bin_means():
    # PyTorch's rule: bin i covers [floor(i·n/o), ceil((i+1)·n/o)); 5 → 3 gives [0,2), [1,4), [3,5).
    np.testing.assert_allclose(adaptive_pool_matrix(5, 3), [[.5, .5, 0, 0, 0], [0, 1 / 3, 1 / 3, 1 / 3, 0],
                                                            [0, 0, 0, .5, .5]], atol=1e-7)
    x = np.random.default_rng(2).normal(size=(2, 5, 7, 3)).astype(np.float32)
    got = np.asarray(adaptive_avg_pool(jnp.asarray(x), 3, 2))
    rows, cols = [(0, 2), (1, 4), (3, 5)], [(0, 4), (3, 7)]
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            np.testing.assert_allclose(got[:, i, j], x[:, r0:r1, c0:c1].mean(axis=(1, 2)), rtol=1e-5, atol=1e-6)


def test_bilinear_upsampling_uses_half_pixel_centres():
    # align_corners=False: [0, 1] upsampled ×2 is [0, 0.25, 0.75, 1] (edges clamp).
    x = jnp.asarray([[0.0, 1.0]])  # (h=1, w=2)
    got = np.asarray(resize_bilinear_hw(x, 1, 4, channel_last=False))
    np.testing.assert_allclose(got, [[0.0, 0.25, 0.75, 1.0]], atol=1e-6)


def test_padding_to_multiple_splits_evenly_and_crops_back():
    assert padding_to_multiple(45, 61, 32) == ((9, 10), (1, 2))
    assert padding_to_multiple(64, 32, 32) == ((0, 0), (0, 0))
    with pytest.raises(ValueError):
        padding_to_multiple(0, 5, 32)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(1, 2, 45, 61, 3)), jnp.float32)
    pads = padding_to_multiple(45, 61, 32)
    for mode in ("edge", "reflect"):
        padded = pad_spatial(x, pads, spatial_axes=(2, 3), mode=mode)
        assert padded.shape == (1, 2, 64, 64, 3)
        np.testing.assert_array_equal(np.asarray(crop_spatial(padded, pads, spatial_axes=(2, 3))), np.asarray(x))
    edge = np.asarray(pad_spatial(x, pads, spatial_axes=(2, 3), mode="edge"))
    np.testing.assert_array_equal(edge[:, :, 0, 1:62], np.asarray(x)[:, :, 0])  # top rows repeat the first row
    reflect = np.asarray(pad_spatial(x, pads, spatial_axes=(2, 3), mode="reflect"))
    np.testing.assert_array_equal(reflect[:, :, 8, 1:62], np.asarray(x)[:, :, 1])  # row above the image mirrors row 1
    # A pad wider than the image cannot reflect; it falls back to edge padding.
    tiny = jnp.ones((1, 3, 2, 1))
    assert pad_spatial(tiny, padding_to_multiple(3, 2, 32), spatial_axes=(1, 2), mode="reflect").shape == (1, 32, 32, 1)


def test_stack_group_norm_shares_statistics_across_slices():
    rng = np.random.default_rng(4)
    b, s, h, w, c = 2, 3, 4, 5, 6
    x = rng.normal(size=(b, s, h, w, c)).astype(np.float32)
    x[:, 1] *= 10.0  # one much stronger slice: per-slice statistics would erase this difference
    module = StackGroupNorm(num_slices=s, max_groups=4)  # 6 channels → 2 groups of 3
    assert group_count(c, 4) == 2
    params = module.init(jax.random.key(0), jnp.asarray(x.reshape(b * s, h, w, c)))
    got = np.asarray(module.apply(params, jnp.asarray(x.reshape(b * s, h, w, c)))).reshape(b, s, h, w, c)
    grouped = x.reshape(b, s, h, w, 2, 3)
    mean = grouped.mean(axis=(1, 2, 3, 5), keepdims=True)
    var = grouped.var(axis=(1, 2, 3, 5), keepdims=True)
    expected = ((grouped - mean) / np.sqrt(var + 1e-5)).reshape(b, s, h, w, c)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(got[:, 1]).mean() > 3 * np.abs(got[:, 0]).mean()
