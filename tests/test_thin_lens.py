"""Tests of the thin-lens focal-stack renderer (dualfocus_jax.rendering)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi

from dualfocus_jax.rendering import (
    NYUV2_CAMERA,
    ThinLensCamera,
    arkitscenes_camera,
    circle_of_confusion_m,
    circle_of_confusion_px,
    layered,
    render_focal_stack,
)

MODES = ("gaussian", "layered")


def _texture(height, width, seed=0):
    return np.random.default_rng(seed).random((height, width, 3)).astype(np.float32)


def _laplacian_energy(image_HWC):
    return float(np.mean([np.mean(ndi.laplace(image_HWC[..., c].astype(np.float64))[2:-2, 2:-2] ** 2)
                          for c in range(image_HWC.shape[-1])]))


# ---------------------------------------------------------------------------------------------------
# Circle of confusion, against numbers worked out by hand.
# ---------------------------------------------------------------------------------------------------

def test_circle_of_confusion_hand_computed_nyu():
    # NYU camera: A = 50 mm / 8 = 6.25 mm, F / (f - F) = 0.05 / 0.95 = 0.0526316.
    # d = 2, f = 1: c = 6.25e-3 * |2 - 1| / 2 * 0.0526316 = 1.6447368e-4 m = 13.706140 px (12 µm pixels).
    # d = 0.5, f = 1: c = 6.25e-3 * 0.5 / 0.5 * 0.0526316 = 3.2894737e-4 m = 27.412281 px.
    np.testing.assert_allclose(circle_of_confusion_m(2.0, 1.0, NYUV2_CAMERA), 1.6447368e-4, rtol=1e-6)
    np.testing.assert_allclose(circle_of_confusion_px(2.0, 1.0, NYUV2_CAMERA), 13.706140, rtol=1e-6)
    np.testing.assert_allclose(circle_of_confusion_px(0.5, 1.0, NYUV2_CAMERA), 27.412281, rtol=1e-6)
    assert float(circle_of_confusion_m(1.3, 1.3, NYUV2_CAMERA)) == 0.0


def test_circle_of_confusion_hand_computed_arkitscenes():
    # A = 2.9 mm / 0.5 = 5.8 mm; d = 1, f = 0.5: c = 5.8e-3 * 0.5 / 1 * 2.9e-3 / 0.4971 = 1.6918125e-5 m;
    # pixel = 3.1 mm / 640 = 4.84375 µm, so 3.4927742 px.
    camera = arkitscenes_camera(640)
    assert camera.pixel_size_m == pytest.approx(4.84375e-6)
    np.testing.assert_allclose(circle_of_confusion_m(1.0, 0.5, camera), 1.6918125e-5, rtol=1e-6)
    np.testing.assert_allclose(circle_of_confusion_px(1.0, 0.5, camera), 3.4927742, rtol=1e-6)


def test_circle_of_confusion_broadcasts_and_invalid_depth_is_finite():
    depth = jnp.array([[0.0, -1.0, jnp.nan, 2.0]])
    focus = jnp.array([[1.0], [3.0]])
    coc = circle_of_confusion_px(depth, focus, NYUV2_CAMERA)
    assert coc.shape == (2, 4)
    assert bool(jnp.all(jnp.isfinite(coc)))
    assert bool(jnp.all(coc[:, :3] > 1e6))  # invalid depth = maximally blurred, as in the protocol


# ---------------------------------------------------------------------------------------------------
# Gaussian mode: the HybridDepth protocol, against a direct NumPy transcription of it.
# ---------------------------------------------------------------------------------------------------

def _reference_gaussian_psf(image, depth, focus_positions, camera, kernel_size=7):
    """Pixel loops in float64: CoC as A·s·|1/F − 1/s − 1/(d + 1e-8)|, radius r = CoC / (2 · pixel),
    weight of source q at offset o: (1 / r_q²) exp(−2 |o|² / r_q²) over sources with r_q > 1 inside the
    window and the image; a pixel with r <= 1 is copied."""
    height, width, _ = image.shape
    half = kernel_size // 2
    focal, aperture = camera.focal_length_m, camera.focal_length_m / camera.f_number
    stack = []
    for f in focus_positions:
        sensor = f * focal / (f - focal)
        radius = aperture * sensor * np.abs(1 / focal - 1 / sensor - 1 / (depth.astype(np.float64) + 1e-8))
        radius = radius / 2 / camera.pixel_size_m
        out = image.astype(np.float64).copy()
        for y in range(height):
            for x in range(width):
                if radius[y, x] <= 1:
                    continue
                total, weight_sum = np.zeros(image.shape[-1]), 0.0
                for dy in range(-half, half + 1):
                    for dx in range(-half, half + 1):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < height and 0 <= xx < width and radius[yy, xx] > 1:
                            r = radius[yy, xx]
                            weight = np.exp(-2.0 * (dy * dy + dx * dx) / r ** 2) / r ** 2
                            total += weight * image[yy, xx]
                            weight_sum += weight
                out[y, x] = total / weight_sum
        stack.append(out)
    return np.stack(stack)


def test_gaussian_mode_matches_numpy_transcription_of_the_protocol():
    rng = np.random.default_rng(1)
    image = _texture(11, 13, seed=1)
    depth = rng.uniform(0.6, 3.0, (11, 13)).astype(np.float32)
    depth[2:5, 3:7] = 1.0  # exactly in focus for the 1.0 m slice
    depth[8, 0:4] = 0.0  # invalid pixels
    focus = np.array([1.0, 1.6, 2.8], np.float32)
    got = render_focal_stack(image, depth, focus, NYUV2_CAMERA, mode="gaussian")
    expected = _reference_gaussian_psf(image, depth, focus, NYUV2_CAMERA)
    assert got.shape == (3, 11, 13, 3) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    # The slices are not trivially equal to the input: the test would notice a renderer that did nothing.
    assert np.abs(np.asarray(got[2]) - image).max() > 0.05


def test_gaussian_mode_respects_kernel_size():
    image = _texture(9, 9, seed=2)
    depth = np.full((9, 9), 0.7, np.float32)
    focus = np.array([2.0], np.float32)
    got = render_focal_stack(image, depth, focus, NYUV2_CAMERA, mode="gaussian", kernel_size=3)
    np.testing.assert_allclose(got, _reference_gaussian_psf(image, depth, focus, NYUV2_CAMERA, 3), rtol=1e-5, atol=1e-6)
    unchanged = render_focal_stack(image, depth, focus, NYUV2_CAMERA, mode="gaussian", kernel_size=1)
    np.testing.assert_allclose(unchanged[0], image, rtol=1e-6)  # a 1-pixel window averages a pixel with itself


# ---------------------------------------------------------------------------------------------------
# Properties shared by both modes.
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_region_at_the_focus_depth_stays_sharp(mode):
    image = _texture(32, 32, seed=3)
    depth = np.full((32, 32), 3.0, np.float32)
    depth[10:22, 10:22] = 2.0
    # Both depths get a CoC of 4.4 px (σ = 1.1 px) when the other one is in focus.
    stack = np.asarray(render_focal_stack(image, depth, np.array([2.0, 3.0], np.float32), NYUV2_CAMERA, mode=mode))
    # The near square in focus: identical to the input (in layered mode it is the top layer).
    np.testing.assert_allclose(stack[0, 10:22, 10:22], image[10:22, 10:22], atol=1e-6)
    # The far surround, out of focus in slice 0, is blurred there ...
    assert np.abs(stack[0, :4] - image[:4]).mean() > 0.05
    # ... and sharp in slice 1, at least 6 px (5 σ) away from the blurred near square.
    np.testing.assert_allclose(stack[1, :4], image[:4], atol=1e-5)
    np.testing.assert_allclose(stack[1, :, 28:], image[:, 28:], atol=1e-5)


@pytest.mark.parametrize(
    "mode, focus",
    [
        # CoC diameters 0, 2.4, 3.4, 4.5, 5.8, 7.3 px: within the reach of the protocol's 7-px window.
        ("gaussian", [2.0, 1.7, 1.6, 1.5, 1.4, 1.3]),
        # CoC diameters 0, 2.4, 4.5, 9.1, 13.7, 20.8, 33.1 px: the layered PSFs have no size limit.
        ("layered", [2.0, 1.7, 1.5, 1.2, 1.0, 0.8, 0.6]),
    ],
)
def test_blur_grows_with_defocus(mode, focus):
    image = _texture(32, 32, seed=4)
    depth = np.full((32, 32), 2.0, np.float32)
    stack = np.asarray(render_focal_stack(image, depth, np.array(focus, np.float32), NYUV2_CAMERA, mode=mode))
    energy = [_laplacian_energy(s) for s in stack]
    assert energy[0] == pytest.approx(_laplacian_energy(image), rel=1e-5)
    assert all(a > b for a, b in zip(energy, energy[1:])), energy
    assert energy[-1] < 0.01 * energy[0]


def test_gaussian_mode_saturates_to_the_window_mean_for_huge_blur():
    # The 7-px window caps the protocol's blur: with r >> 7 px every weight is ~1/r², so each pixel becomes
    # the plain mean of its 7 × 7 window (a huge f/0.5 aperture gives r ≈ 680 px here).
    camera = ThinLensCamera(focal_length_m=0.05, f_number=0.5, pixel_size_m=1.2e-5)
    image = _texture(20, 20, seed=12)
    stack = np.asarray(render_focal_stack(image, np.full((20, 20), 0.3, np.float32), np.array([10.0]), camera))
    box_mean = ndi.uniform_filter(image, size=(7, 7, 1))
    np.testing.assert_allclose(stack[0, 3:-3, 3:-3], box_mean[3:-3, 3:-3], atol=1e-4)


@pytest.mark.parametrize("mode", MODES)
def test_flat_colour_stays_flat(mode):
    rng = np.random.default_rng(5)
    colour = np.array([0.25, 0.5, 0.75], np.float32)
    image = np.broadcast_to(colour, (20, 22, 3)).copy()
    depth = rng.uniform(0.5, 6.0, (20, 22)).astype(np.float32)
    depth[:3, :3] = 0.0
    stack = render_focal_stack(image, depth, np.array([0.6, 2.0, 5.5], np.float32), NYUV2_CAMERA, mode=mode)
    np.testing.assert_allclose(stack, np.broadcast_to(colour, stack.shape), atol=2e-6)


@pytest.mark.parametrize("mode", MODES)
def test_invalid_depth_gives_finite_output(mode):
    image = _texture(16, 16, seed=6)
    depth = np.full((16, 16), 1.5, np.float32)
    depth[:, :5] = 0.0
    depth[0, 6] = -2.0
    depth[1, 7] = np.inf
    depth[2, 8] = np.nan
    stack = render_focal_stack(image, depth, np.array([0.5, 1.5, 4.0], np.float32), NYUV2_CAMERA, mode=mode)
    assert bool(jnp.all(jnp.isfinite(stack)))
    assert float(stack.min()) >= 0.0 and float(stack.max()) <= 1.0


def test_whole_invalid_depth_map_is_finite_in_both_modes():
    image = _texture(8, 8, seed=7)
    for mode in MODES:
        stack = render_focal_stack(image, np.zeros((8, 8), np.float32), np.array([1.0]), NYUV2_CAMERA, mode=mode)
        assert bool(jnp.all(jnp.isfinite(stack))), mode


# ---------------------------------------------------------------------------------------------------
# Layered mode: occlusion.
# ---------------------------------------------------------------------------------------------------

def test_blurred_near_object_spills_over_in_focus_background_only_in_layered_mode():
    background, foreground = 0.2, 0.9
    image = np.full((48, 48, 3), background, np.float32)
    image[20:28, 20:28] = foreground
    depth = np.full((48, 48), 3.0, np.float32)
    depth[20:28, 20:28] = 0.8  # CoC 24 px at focus 3 m
    focus = np.array([3.0], np.float32)
    layered_stack = np.asarray(render_focal_stack(image, depth, focus, NYUV2_CAMERA, mode="layered"))[0, ..., 0]
    gaussian_stack = np.asarray(render_focal_stack(image, depth, focus, NYUV2_CAMERA, mode="gaussian"))[0, ..., 0]
    row = layered_stack[24]
    # Just outside the square's right edge the background is covered by the blurred foreground ...
    assert row[28] > background + 0.1
    # ... less and less with distance, fading to the sharp background.
    assert all(a > b for a, b in zip(row[28:40], row[29:41]))
    assert abs(layered_stack[0, 0] - background) < 1e-3
    # Per-pixel blurring copies in-focus pixels: no spill at all there.
    np.testing.assert_array_equal(gaussian_stack[24, 28:], image[24, 28:, 0])


def test_layer_assignment_uniform_in_inverse_depth():
    depth = np.array([[1.0, 2.0], [4.0, 0.0]], np.float32)
    index, layer_depth = layered.assign_inverse_depth_layers(depth, 4)
    # Inverse depths 1, 0.5, 0.25 span [0.25, 1]: bins of 0.1875, so 1 -> 3 (clipped), 0.5 -> 1, 0.25 -> 0;
    # the invalid pixel goes to the farthest layer 0.
    np.testing.assert_array_equal(index, [[3, 1], [0, 0]])
    # Populated layers keep their exact depth; the empty layer 2 gets its bin centre 0.25 + 2.5 · 0.1875.
    np.testing.assert_allclose(layer_depth, [4.0, 2.0, 1.0 / 0.71875, 1.0], rtol=1e-6)


def _reference_layered(image, layer_index, sigma_px_L):
    """Iterative 'over' compositing far to near, blurs by SciPy 1-D convolutions (zero outside)."""
    height, width, _ = image.shape
    colour, alpha = np.zeros(image.shape), np.zeros((height, width))
    for layer, sigma in enumerate(sigma_px_L):
        coverage = (layer_index == layer).astype(np.float64)
        layer_rgba = np.concatenate([coverage[..., None] * image, coverage[..., None]], -1)
        if sigma > 0:
            offsets = np.arange(-(max(height, width) - 1), max(height, width))
            for axis, size in ((0, height), (1, width)):
                taps = offsets[np.abs(offsets) <= size - 1]
                kernel = np.exp(-taps ** 2 / (2 * sigma ** 2))
                layer_rgba = ndi.convolve1d(layer_rgba, kernel / kernel.sum(), axis=axis, mode="constant")
        blurred_alpha = layer_rgba[..., -1]
        colour = colour * (1 - blurred_alpha[..., None]) + layer_rgba[..., :-1]
        alpha = alpha * (1 - blurred_alpha) + blurred_alpha
    return colour / alpha[..., None]


def test_layered_mode_matches_iterative_compositing_reference():
    image = _texture(10, 14, seed=8)
    depth = np.full((10, 14), 4.0, np.float32)
    depth[2:7, 3:9] = 2.0
    depth[4:9, 6:12] = 1.0
    focus = np.array([1.0, 2.0, 4.0], np.float32)
    got = np.asarray(render_focal_stack(image, depth, focus, NYUV2_CAMERA, mode="layered", num_layers=4))
    layer_index = np.where(depth == 4.0, 0, np.where(depth == 2.0, 1, 3))
    layer_depth = np.array([4.0, 2.0, 1.0 / 0.71875, 1.0])
    for s, f in enumerate(focus):
        # σ = r / 2 with r = CoC radius in pixels (thin lens, by hand), 0 when r <= 1.
        aperture, focal = 0.05 / 8, 0.05
        radius = aperture * np.abs(layer_depth - f) / layer_depth * focal / (f - focal) / 1.2e-5 / 2
        sigma = np.where(radius > 1, radius / 2, 0.0)
        np.testing.assert_allclose(got[s], _reference_layered(image.astype(np.float64), layer_index, sigma),
                                   rtol=1e-4, atol=2e-5, err_msg=f"slice {s}")


def test_gaussian_blur_matrices_are_identity_at_zero_width_and_normalised_inside():
    matrices = np.asarray(layered.gaussian_blur_matrices(jnp.array([0.0, 1.5]), 40))
    np.testing.assert_array_equal(matrices[0], np.eye(40))
    np.testing.assert_allclose(matrices[1][20].sum(), 1.0, rtol=1e-6)
    assert matrices[1][0].sum() < 0.8  # mass falling off the border is lost (zero outside the image)


# ---------------------------------------------------------------------------------------------------
# jit, vmap, gradients, errors.
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_render_works_under_jit_and_vmap(mode):
    images = np.stack([_texture(12, 12, seed=9), _texture(12, 12, seed=10)])
    depths = np.stack([np.full((12, 12), 1.0, np.float32),
                       np.linspace(0.5, 3.0, 144, dtype=np.float32).reshape(12, 12)])
    focus = np.array([[0.7, 2.0], [1.0, 2.5]], np.float32)
    render = jax.jit(render_focal_stack, static_argnames=("camera", "mode", "kernel_size", "num_layers"))
    batched = jax.vmap(lambda i, d, f: render_focal_stack(i, d, f, NYUV2_CAMERA, mode=mode))
    got_batched = batched(images, depths, focus)
    for b in range(2):
        eager = render_focal_stack(images[b], depths[b], focus[b], NYUV2_CAMERA, mode=mode)
        jitted = render(images[b], depths[b], focus[b], NYUV2_CAMERA, mode=mode)
        np.testing.assert_allclose(jitted, eager, atol=1e-6)
        np.testing.assert_allclose(got_batched[b], eager, atol=1e-6)


def test_gaussian_mode_is_differentiable_with_finite_gradients():
    image = _texture(10, 10, seed=11)
    depth = np.linspace(0.6, 2.5, 100, dtype=np.float32).reshape(10, 10)
    depth[0, :3] = 0.0

    def loss(image, depth):
        return jnp.sum(render_focal_stack(image, depth, jnp.array([1.0, 2.0]), NYUV2_CAMERA, kernel_size=3) ** 2)

    grad_image, grad_depth = jax.grad(loss, argnums=(0, 1))(jnp.asarray(image), jnp.asarray(depth))
    assert bool(jnp.all(jnp.isfinite(grad_image))) and bool(jnp.all(jnp.isfinite(grad_depth)))
    assert float(jnp.abs(grad_depth).max()) > 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mode="disk"), "mode"),
        (dict(kernel_size=6), "kernel_size"),
        (dict(num_layers=0), "num_layers"),
        (dict(focus=np.array([0.04])), "focal length"),
        (dict(focus=np.array([[1.0]])), "focus_positions_S"),
        (dict(depth=np.ones((8, 7), np.float32)), "depth_HW"),
        (dict(image=np.ones((8, 8), np.float32)), "image_HWC"),
        (dict(camera="nyu"), "ThinLensCamera"),
    ],
)
def test_bad_arguments_raise_value_error(kwargs, match):
    args = dict(image=np.ones((8, 8, 3), np.float32), depth=np.ones((8, 8), np.float32),
                focus=np.array([1.0], np.float32), camera=NYUV2_CAMERA)
    options = {k: kwargs.pop(k) for k in ("mode", "kernel_size", "num_layers") if k in kwargs}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        render_focal_stack(args["image"], args["depth"], args["focus"], args["camera"], **options)


def test_bad_cameras_raise_value_error():
    with pytest.raises(ValueError, match="f_number"):
        ThinLensCamera(focal_length_m=0.05, f_number=-8.0, pixel_size_m=1.2e-5)
    with pytest.raises(ValueError, match="image_width_px"):
        arkitscenes_camera(0)


@pytest.mark.parametrize("camera", [NYUV2_CAMERA, arkitscenes_camera(640),
                                    ThinLensCamera(focal_length_m=4.2e-3, f_number=1.8, pixel_size_m=1.4e-6)])
def test_blur_per_diopter_is_the_coc_of_a_lens_focused_far_away(camera):
    # Focused 10 km away, the CoC of a point at d metres is A·F/(s − F)·(s − d)/d ≈ (A·F/pixel) / d pixels.
    for depth_m in (0.3, 2.0, 7.5):
        coc = float(circle_of_confusion_px(jnp.float32(depth_m), jnp.float32(1e4), camera))
        assert coc == pytest.approx(camera.defocus_px_per_diopter / depth_m, rel=1e-3)
