"""The NumPy per-pixel Gaussian protocol renderer of the engine against the JAX one of the NYUv2 / ARKitScenes
builders (`render_focal_stack(mode="gaussian")`), and its window's cut on the blur."""

import numpy as np
import pytest

from dualfocus_jax.rendering import render_focal_stack
from dualfocus_jax.rendering.thin_lens import NYUV2_CAMERA, ThinLensCamera
from dualfocus_jax.rendering.window_gaussian import render_window_gaussian_stack

PHONE = ThinLensCamera(focal_length_m=4.2e-3, f_number=1.8, pixel_size_m=4e-6)


@pytest.mark.parametrize("camera, near, far, kernel_size", [(NYUV2_CAMERA, 0.8, 6.0, 7), (PHONE, 0.15, 2.0, 7),
                                                            (PHONE, 0.3, 1.0, 5)])
def test_it_renders_what_the_protocol_renderer_renders(camera, near, far, kernel_size):
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 1, (23, 31, 3)).astype(np.float32)
    depth = np.exp(rng.uniform(np.log(near), np.log(far), (23, 31))).astype(np.float32)
    focus = np.geomspace(near, far, 5).astype(np.float32)
    ours = render_window_gaussian_stack(image, depth, focus, camera, kernel_size=kernel_size)
    theirs = np.asarray(render_focal_stack(image, depth, focus, camera, mode="gaussian", kernel_size=kernel_size))
    assert ours.shape == theirs.shape == (5, 23, 31, 3) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, atol=2e-5)
    # Both blur: a slice differs from the image wherever its CoC exceeds 2 px.
    assert np.abs(ours - image[None]).mean() > 0.01


def test_the_window_cuts_the_blur_and_in_focus_pixels_stay():
    """A step in brightness on a plane: the slice focused on it is the image; far out of focus (a CoC of ~50 px), a
    pixel whose window (3 px each way) stays on one side is untouched however wide its PSF, the two pixels at the
    step are mixed."""
    image = np.zeros((16, 16, 1), np.float32)
    image[:, 8:] = 1.0
    depth = np.full((16, 16), 2.0, np.float32)
    stack = render_window_gaussian_stack(image, depth, [2.0, 0.5], NYUV2_CAMERA)
    np.testing.assert_array_equal(stack[0], image)
    assert stack[1, 5, 4, 0] == 0.0 and stack[1, 5, 11, 0] == 1.0  # columns 1-7 / 8-14: one side
    assert 0.0 < stack[1, 5, 7, 0] < 0.5 < stack[1, 5, 8, 0] < 1.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        render_window_gaussian_stack(np.zeros((4, 4, 3)), np.ones((4, 4)), [1.0, 2.0], NYUV2_CAMERA, kernel_size=4)
    with pytest.raises(ValueError, match=r"\(H, W\) depth"):
        render_window_gaussian_stack(np.zeros((4, 4, 3)), np.ones((4, 5)), [1.0, 2.0], NYUV2_CAMERA)


def test_the_engine_renders_its_share_of_stacks_with_it_and_the_default_draws_nothing(monkeypatch):
    import dataclasses

    from dualfocus_jax.engine import EngineSettings, draw_focal_stack
    from dualfocus_jax.engine import engine as engine_module

    clean = EngineSettings(degrade=False, families=("steps",), window_gaussian_share=1.0)
    drawn = draw_focal_stack(np.random.default_rng(5), clean, num_slices=4, size=(24, 24))
    meta = drawn["meta"]
    assert (meta["renderer"], meta["psf"], meta["sharp_coc_px"], meta["hard_layers"]) == ("window_gaussian",
                                                                                         "gaussian", 2.0, 0)
    camera = ThinLensCamera(focal_length_m=meta["focal_length_mm"] * 1e-3, f_number=meta["f_number"],
                            pixel_size_m=meta["pixel_size_um"] * 1e-6)
    expected = render_window_gaussian_stack(drawn["aif"] / 255.0, drawn["depth"], drawn["focus_positions"], camera)
    # (the engine renders the float image the 8-bit all-in-focus image rounds)
    assert np.abs(drawn["stack"].astype(int) - np.round(expected * 255)).max() <= 1
    renderers = [draw_focal_stack(np.random.default_rng(seed), dataclasses.replace(clean, window_gaussian_share=0.5),
                                  num_slices=3, size=(16, 16))["meta"]["renderer"] for seed in range(40)]
    assert 8 <= renderers.count("window_gaussian") <= 32 and set(renderers) == {"layered", "window_gaussian"}
    with pytest.raises(ValueError, match="window_gaussian_share"):
        EngineSettings(window_gaussian_share=-0.1)
    # The default share draws no random number: a draw is the same with the choice replaced by a fixed answer.
    default = draw_focal_stack(np.random.default_rng(6), num_slices=3, size=(24, 24))
    monkeypatch.setattr(engine_module, "_renderer", lambda rng, settings: "layered")
    stubbed = draw_focal_stack(np.random.default_rng(6), num_slices=3, size=(24, 24))
    np.testing.assert_array_equal(default["stack"], stubbed["stack"])
    assert default["meta"] == stubbed["meta"] and default["meta"]["renderer"] == "layered"
