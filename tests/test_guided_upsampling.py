"""Colour-guided cost upsampling (model/guided_upsampling.py): against a per-pixel NumPy reference, its bilinear
limit, that it keeps a depth edge the colours show, and the network option."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.model import model_config
from dualfocus_jax.model.dualfocus import DualFocusNet, initial_params
from dualfocus_jax.model.guided_upsampling import joint_bilateral_upsample
from dualfocus_jax.model.resampling import resize_bilinear_hw


def _reference(low_Shw, guide_HWC, reach, sigma):
    """Joint bilateral upsampling written out per output pixel: every low-resolution cell within the tent,
    out-of-grid cells read from the nearest border cell."""
    s, h, w = low_Shw.shape
    height, width, _ = guide_HWC.shape
    fy, fx = height // h, width // w
    guide_low = guide_HWC.reshape(h, fy, w, fx, -1).mean(axis=(1, 3))
    out = np.zeros((s, height, width))
    for y in range(height):
        for x in range(width):
            u, v = (y + 0.5) / fy - 0.5, (x + 0.5) / fx - 0.5
            cells = []
            for row in range(int(np.floor(u)) - reach + 1, int(np.floor(u)) + reach + 1):
                for col in range(int(np.floor(v)) - reach + 1, int(np.floor(v)) + reach + 1):
                    tent = max(0.0, 1 - abs(u - row) / reach) * max(0.0, 1 - abs(v - col) / reach)
                    r, c = min(max(row, 0), h - 1), min(max(col, 0), w - 1)
                    cells.append((tent, r, c, np.mean((guide_HWC[y, x] - guide_low[r, c]) ** 2)))
            closest = min(d for tent, _, _, d in cells if tent > 0)
            weights = np.array([tent * np.exp(-(d - closest) / (2 * sigma ** 2)) for tent, _, _, d in cells])
            values = np.stack([low_Shw[:, r, c] for _, r, c, _ in cells], axis=-1)
            out[:, y, x] = values @ weights / weights.sum()
    return out


@pytest.mark.parametrize("reach", [1, 2, 3])
def test_matches_a_per_pixel_reference(reach):
    rng = np.random.default_rng(reach)
    low = rng.normal(size=(1, 3, 4, 5))
    guide = rng.uniform(size=(1, 16, 20, 3))
    got = joint_bilateral_upsample(jnp.asarray(low, jnp.float32), jnp.asarray(guide, jnp.float32), reach=reach,
                                   sigma_colour=0.2)
    np.testing.assert_allclose(np.asarray(got[0]), _reference(low[0], guide[0], reach, 0.2), rtol=1e-4, atol=1e-5)


def test_without_colour_weights_reach_one_is_bilinear():
    rng = np.random.default_rng(0)
    low = jnp.asarray(rng.normal(size=(2, 3, 5, 7)), jnp.float32)
    guide = jnp.asarray(rng.uniform(size=(2, 20, 28, 3)), jnp.float32)
    got = joint_bilateral_upsample(low, guide, reach=1, sigma_colour=np.inf)
    np.testing.assert_allclose(np.asarray(got), np.asarray(resize_bilinear_hw(low, 20, 28, channel_last=False)),
                               atol=1e-5)


def test_keeps_the_edge_the_colours_show():
    # Left half dark with cost 0, right half bright with cost 1; the edge falls inside a low-resolution cell
    # column, so bilinear blends over a cell's width while the guided result stays with each side's value.
    guide = np.zeros((1, 16, 32, 3), np.float32)
    guide[:, :, 14:] = 1.0
    low = np.where(np.arange(8) >= 4, 1.0, 0.0)[None, None, None, :].repeat(4, axis=2).astype(np.float32)
    low[..., 3] = 0.5  # the cell holding the edge has mixed costs, as a decoder's cell there would
    guided = np.asarray(joint_bilateral_upsample(jnp.asarray(low), jnp.asarray(guide), reach=2, sigma_colour=0.05))
    bilinear = np.asarray(resize_bilinear_hw(jnp.asarray(low), 16, 32, channel_last=False))
    left, right = guided[0, 0, :, :14], guided[0, 0, :, 14:]
    assert np.abs(left - 0).max() < np.abs(bilinear[0, 0, :, :14] - 0).max()
    assert np.abs(right - 1).max() < np.abs(bilinear[0, 0, :, 14:] - 1).max()
    assert np.abs(right[:, :4] - 1).max() < 0.3 and np.abs(left[:, -2:]).max() < 0.3


def test_network_option_changes_only_the_finest_upsampling():
    config = model_config("small")
    params = initial_params(config, jax.random.key(0))
    rng = np.random.default_rng(0)
    stack = jnp.asarray(rng.uniform(size=(1, 3, 40, 36, 3)), jnp.float32)
    focus = jnp.asarray([[1.0, 2.0, 3.0]], jnp.float32)
    plain = DualFocusNet(config).apply(params, stack, focus, train=False)
    guided_config = dataclasses.replace(config, cost_upsampling="joint_bilateral", guide_reach=1,
                                        guide_sigma=1e6)
    same = DualFocusNet(guided_config).apply(params, stack, focus, train=False)
    np.testing.assert_allclose(np.asarray(same.depth), np.asarray(plain.depth), rtol=1e-5, atol=1e-5)
    sharp = DualFocusNet(dataclasses.replace(guided_config, guide_sigma=0.02)).apply(params, stack, focus, train=False)
    assert sharp.depth.shape == (1, 40, 36)
    assert not np.allclose(np.asarray(sharp.depth), np.asarray(plain.depth), atol=1e-4)
    for coarse, same_coarse in zip(plain.depth_levels[1:], sharp.depth_levels[1:]):
        np.testing.assert_array_equal(np.asarray(coarse), np.asarray(same_coarse))


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="cost_upsampling"):
        model_config("small", cost_upsampling="bicubic")
    with pytest.raises(ValueError, match="guide_reach"):
        model_config("small", guide_reach=0)
