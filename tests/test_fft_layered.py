"""The FFT layered renderer against direct spatial references (convolution, compositing by hand)."""

import numpy as np
import pytest
import scipy.ndimage
import scipy.signal

from dualfocus_jax.rendering.fft_layered import (
    coc_radius_px,
    psf_transfer,
    render_layered_stack,
    soft_inverse_depth_layers,
)
from dualfocus_jax.rendering.thin_lens import NYUV2_CAMERA, ThinLensCamera, circle_of_confusion_px


def _disc_kernel(radius, supersample=15):
    """Pillbox of `radius` px, pixel-integrated by supersampling (an independent construction)."""
    half = int(np.ceil(radius)) + 1
    offsets = (np.arange(-half * supersample, (half + 1) * supersample) + 0.5) / supersample - 0.5 / supersample
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    inside = (yy ** 2 + xx ** 2 <= radius ** 2).astype(np.float64)
    size = 2 * half + 1
    kernel = inside[: size * supersample, : size * supersample]
    kernel = kernel.reshape(size, supersample, size, supersample).sum((1, 3))
    return kernel / kernel.sum()


def _gaussian_kernel(sigma):
    half = int(np.ceil(5 * sigma))
    offsets = np.arange(-half, half + 1)
    g = np.exp(-offsets ** 2 / (2 * sigma ** 2))
    kernel = np.outer(g, g)
    return kernel / kernel.sum()


def _normalised_convolution(image, kernel):
    """Zero-padded convolution divided by the convolved coverage: the renderer's border convention."""
    ones = np.ones(image.shape[:2])
    coverage = scipy.signal.convolve2d(ones, kernel, mode="same")
    return np.stack([scipy.signal.convolve2d(image[..., c], kernel, mode="same") / coverage
                     for c in range(image.shape[-1])], -1)


def test_coc_radius_matches_thin_lens_diameter():
    depth = np.array([0.8, 1.5, 4.0])
    np.testing.assert_allclose(coc_radius_px(depth, 2.0, NYUV2_CAMERA),
                               0.5 * np.asarray(circle_of_confusion_px(depth, 2.0, NYUV2_CAMERA)), rtol=1e-5)


@pytest.mark.parametrize("psf", ["disc", "gaussian"])
def test_constant_depth_is_a_convolution_with_the_psf(psf):
    rng = np.random.default_rng(0)
    image = rng.random((48, 56, 3)).astype(np.float32)
    depth = np.full((48, 56), 2.0)
    focus = np.array([2.0, 1.2, 0.9])
    stack = render_layered_stack(image, depth, focus, NYUV2_CAMERA, psf=psf)
    np.testing.assert_allclose(stack[0], image, atol=1e-5)  # in focus: unchanged
    for s in (1, 2):
        radius = float(coc_radius_px(2.0, focus[s], NYUV2_CAMERA))
        kernel = _disc_kernel(radius) if psf == "disc" else _gaussian_kernel(radius / 2)
        reference = _normalised_convolution(image.astype(np.float64), kernel)
        # The analytic disc transform is not pixel-integrated; the supersampled reference is: a few % at the rim.
        tolerance = 0.03 if psf == "disc" else 2e-3
        assert np.abs(stack[s] - reference)[8:-8, 8:-8].mean() < tolerance / 3
        np.testing.assert_allclose(stack[s][8:-8, 8:-8], reference[8:-8, 8:-8], atol=tolerance * 4)


def test_two_layers_composite_like_the_over_operator():
    """A near square over a far background, against compositing done by hand with spatial Gaussian blurs."""
    rng = np.random.default_rng(1)
    image = rng.random((40, 40, 3))
    depth = np.full((40, 40), 3.0)
    depth[12:28, 12:28] = 1.0
    focus = np.array([3.0, 1.0, 1.8])
    camera = ThinLensCamera(focal_length_m=50e-3, f_number=4.0, pixel_size_m=3e-5)
    got = render_layered_stack(image, depth, focus, camera, psf="gaussian")
    near = (depth < 2).astype(np.float64)
    for s in range(3):
        sigma_far, sigma_near = 0.5 * coc_radius_px(np.array([3.0, 1.0]), focus[s], camera)

        def blur(x, sigma):
            return x if sigma < 0.25 else scipy.ndimage.gaussian_filter(x, sigma, mode="constant", truncate=6)

        far_alpha, near_alpha = blur(1 - near, sigma_far), np.clip(blur(near, sigma_near), 0, 1)
        far_colour = np.stack([blur((1 - near) * image[..., c], sigma_far) for c in range(3)], -1)
        near_colour = np.stack([blur(near * image[..., c], sigma_near) for c in range(3)], -1)
        far_alpha_c = np.clip(far_alpha, 0, 1)
        colour = far_colour * (1 - near_alpha[..., None]) + near_colour
        alpha = far_alpha_c * (1 - near_alpha) + near_alpha
        np.testing.assert_allclose(got[s], colour / alpha[..., None], atol=2e-3)


def test_blurred_foreground_spills_over_sharp_background():
    image = np.zeros((48, 48, 1), np.float32)
    image[:, :24] = 1.0
    depth = np.full((48, 48), 4.0)
    depth[:, :24] = 1.0  # a bright near half-plane
    stack = render_layered_stack(image, depth, np.array([4.0]), NYUV2_CAMERA)[0, ..., 0]
    # Focused on the dark background: the near edge's blur covers background pixels beyond column 24.
    assert stack[24, 26] > 0.1
    assert stack[24, 45] < 1e-3


def test_soft_layers_partition_unity_and_reproduce_inverse_depth():
    depth = 1.0 / np.linspace(0.2, 1.0, 50)[None].repeat(3, 0)
    weights, layer_depth = soft_inverse_depth_layers(depth, 6)
    np.testing.assert_allclose(weights.sum(0), 1.0, atol=1e-6)
    reconstructed = np.tensordot(1.0 / layer_depth, weights, axes=(0, 0))
    np.testing.assert_allclose(reconstructed, 1.0 / depth, rtol=1e-5)


def test_psf_transfer_is_one_at_zero_frequency_and_identity_for_sharp():
    freq_y, freq_x = np.fft.fftfreq(16)[:, None], np.fft.rfftfreq(16)[None]
    for psf in ("disc", "gaussian"):
        transfer = psf_transfer(np.array([0.2, 3.0]), psf, freq_y, freq_x)
        np.testing.assert_allclose(transfer[:, 0, 0], 1.0, atol=1e-5)
        np.testing.assert_allclose(transfer[0], 1.0)


def test_bad_input_is_refused_with_a_clear_message():
    image = np.zeros((8, 8, 3))
    with pytest.raises(ValueError, match="focal length"):
        render_layered_stack(image, np.full((8, 8), 1.0), np.array([0.01]), NYUV2_CAMERA)
    with pytest.raises(ValueError, match="fill invalid"):
        render_layered_stack(image, np.zeros((8, 8)), np.array([1.0]), NYUV2_CAMERA)
    with pytest.raises(ValueError, match="psf"):
        render_layered_stack(image, np.full((8, 8), 1.0), np.array([1.0]), NYUV2_CAMERA, psf="box")
