"""The FFT layered renderer's depth of field (sharp_radius_px) and hard layers, against hand-made references."""

import numpy as np
import pytest

from dualfocus_jax.rendering.fft_layered import (
    coc_radius_px,
    hard_inverse_depth_layers,
    render_layered_stack,
    soft_inverse_depth_layers,
)
from dualfocus_jax.rendering.thin_lens import NYUV2_CAMERA


def _plane_focus_with_radius(depth_m, radius_px):
    """A focus distance (beyond depth_m) at which a plane at depth_m has a CoC radius of radius_px, by bisection
    on the thin-lens radius (increasing with the focus distance beyond the plane)."""
    low, high = depth_m, 1e3
    for _ in range(200):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if coc_radius_px(depth_m, middle, NYUV2_CAMERA) < radius_px else (low, middle)
    return 0.5 * (low + high)


def test_a_plane_inside_the_depth_of_field_renders_sharp_and_outside_it_blurs():
    rng = np.random.default_rng(1)
    image = rng.random((40, 40, 3)).astype(np.float32)
    depth = np.full((40, 40), 2.0)
    focus = np.array([_plane_focus_with_radius(2.0, 0.8), _plane_focus_with_radius(2.0, 1.3)])
    np.testing.assert_allclose(coc_radius_px(2.0, focus, NYUV2_CAMERA), [0.8, 1.3], rtol=1e-6)
    points_only = render_layered_stack(image, depth, focus, NYUV2_CAMERA)  # default: radius < 0.5 is sharp
    with_dof = render_layered_stack(image, depth, focus, NYUV2_CAMERA, sharp_radius_px=1.0)
    assert np.max(np.abs(points_only[0] - image)) > 0.05  # a 0.8 px disc blurs by default
    np.testing.assert_allclose(with_dof[0], image, atol=1e-5)  # within the 1 px depth of field: untouched
    np.testing.assert_allclose(with_dof[1], points_only[1], atol=1e-6)  # beyond it: the same blur


def test_hard_layers_put_every_pixel_wholly_in_its_nearest_inverse_depth_layer():
    depth = 1.0 / np.linspace(0.2, 1.0, 37)[None].repeat(2, 0)
    weights, layer_depth = hard_inverse_depth_layers(depth, 5)
    _, soft_depth = soft_inverse_depth_layers(depth, 5)
    np.testing.assert_allclose(layer_depth, soft_depth)
    assert set(np.unique(weights)) == {0.0, 1.0}
    np.testing.assert_allclose(weights.sum(0), 1.0)
    # Reference: the layer whose inverse-depth centre is nearest to each pixel's inverse depth.
    centres = np.linspace(0.2, 1.0, 5)
    nearest = np.argmin(np.abs(1.0 / depth[None] - centres[:, None, None]), axis=0)
    np.testing.assert_array_equal(np.argmax(weights, 0), nearest)


def test_hard_layers_blur_a_slanted_surface_in_steps():
    rng = np.random.default_rng(2)
    image = rng.random((32, 64, 3)).astype(np.float32)
    depth = 1.0 / np.linspace(0.4, 0.6, 64)[None].repeat(32, 0)
    stack = render_layered_stack(image, depth, np.array([1.0]), NYUV2_CAMERA, max_layers=2, hard_layers=True)
    # Two hard layers at inverse depths 0.4 and 0.6: the left half blurs as one plane at 1/0.4 m.
    plane = render_layered_stack(image, np.full((32, 64), 1 / 0.4), np.array([1.0]), NYUV2_CAMERA)
    # (tolerance: the FFT disc's ringing across the far layer's edge, ~5e-4)
    np.testing.assert_allclose(stack[0, 8:-8, 4:20], plane[0, 8:-8, 4:20], atol=2e-3)
    # Smooth layers blur the same columns as the slant they are, visibly less than the far plane.
    soft = render_layered_stack(image, depth, np.array([1.0]), NYUV2_CAMERA, max_layers=2)
    assert np.max(np.abs(soft[0, 8:-8, 4:20] - plane[0, 8:-8, 4:20])) > 2e-2


def test_a_non_positive_sharp_radius_is_refused():
    with pytest.raises(ValueError, match="sharp_radius_px"):
        render_layered_stack(np.zeros((8, 8, 3)), np.full((8, 8), 1.0), np.array([1.0]), NYUV2_CAMERA,
                             sharp_radius_px=0.0)
