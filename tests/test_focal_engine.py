"""The focal-stack engine's promises: sharp in-focus planes and blur growing away from them for every camera,
depth edges that show in the stack, reproducible draws, and clear errors for bad settings."""

import dataclasses

import numpy as np
import pytest
import scipy.ndimage

from dualfocus_jax.engine import CATALOGUE, SCENE_FAMILIES, EngineSettings, draw_focal_stack
from dualfocus_jax.engine import engine as engine_module
from dualfocus_jax.engine.cameras import camera_model_named
from dualfocus_jax.engine.focus_schedules import COVERAGES, SPACINGS, draw_focus_schedule

CLEAN = EngineSettings(degrade=False, families=("plane",), psf_shapes=("disc",))


def _sharpness(image_HWC):
    grey = image_HWC.astype(np.float64).mean(-1)
    return float(np.mean(scipy.ndimage.laplace(grey)[4:-4, 4:-4] ** 2))


@pytest.mark.parametrize("model", CATALOGUE, ids=lambda model: model.name)
def test_in_focus_plane_is_sharp_and_blur_grows_with_defocus(model):
    """A fronto-parallel plane at depth d, slices focused at d and progressively farther off in diopters."""
    rng = np.random.default_rng(3)
    # One camera of the entry (its smallest values), so every draw below uses the same lens.
    model = dataclasses.replace(model, focal_length_m=(model.focal_length_m[0],) * 2, f_number=(model.f_number[0],) * 2,
                                sensor_width_m=(model.sensor_width_m[0],) * 2, image_width_px=(640, 640))
    drawn = draw_focal_stack(rng, CLEAN, num_slices=2, size=(64, 64), family="plane", camera_model=model)
    # Diopter offsets giving CoC diameters of 0, 2, 5, 10 px for this camera (its px-per-diopter from the draw).
    meta = drawn["meta"]
    px_per_diopter = (meta["focal_length_mm"] * 1e-3) ** 2 / meta["f_number"] / (meta["pixel_size_um"] * 1e-6)
    offsets = np.array([0.0, 2.0, 5.0, 10.0]) / px_per_diopter
    depth = 1.0 / (1.5 * offsets[-1])  # near enough that every offset is a real focus distance beyond it
    focus = 1.0 / (1.0 / depth - offsets)
    checked = 0
    for seed in range(8):
        drawn = draw_focal_stack(np.random.default_rng(seed), CLEAN, family="plane", camera_model=model,
                                 focus_m=focus, size=(64, 64), depth_m=depth)
        if _sharpness(drawn["aif"]) < 20.0:  # a smooth gradient texture shows no blur: not a test of it
            continue
        order = np.argsort(np.abs(1.0 / drawn["focus_positions"] - 1.0 / depth))
        sharpness = [_sharpness(drawn["stack"][i]) for i in order]
        # In focus: the all-in-focus image (to rounding).
        assert np.abs(drawn["stack"][order[0]].astype(int) - drawn["aif"]).max() <= 1
        assert all(a > b for a, b in zip(sharpness, sharpness[1:])), (model.name, sharpness)
        checked += 1
    assert checked >= 2


def test_depth_edges_in_the_ground_truth_are_edges_in_the_stack():
    """A depth step between two copies of one texture: the slices focused on either side differ only across it."""
    rng = np.random.default_rng(5)
    settings = dataclasses.replace(CLEAN, families=("similar_texture_edge",), coverages=("bracket",))
    checked = 0
    for _ in range(6):
        drawn = draw_focal_stack(rng, settings, num_slices=2, size=(96, 96))
        depth = drawn["depth"]
        inverse = 1.0 / depth
        if np.ptp(inverse) < 1e-6:
            continue
        near_side = inverse > inverse.min() + 0.5 * np.ptp(inverse)
        edge = (scipy.ndimage.binary_dilation(near_side, iterations=2)
                ^ scipy.ndimage.binary_erosion(near_side, iterations=2))
        if edge.sum() < 20:
            continue
        near_slice, far_slice = drawn["stack"][0].astype(np.float64), drawn["stack"][-1].astype(np.float64)
        # The near side is sharp in the near-focused slice and blurred in the far-focused one, and vice versa.
        sharp_near = np.abs(scipy.ndimage.laplace(near_slice.mean(-1)))
        sharp_far = np.abs(scipy.ndimage.laplace(far_slice.mean(-1)))
        interior_near = scipy.ndimage.binary_erosion(near_side, iterations=6)
        interior_far = scipy.ndimage.binary_erosion(~near_side, iterations=6)
        if interior_near.sum() < 20 or interior_far.sum() < 20:
            continue
        assert sharp_near[interior_near].mean() > sharp_far[interior_near].mean()
        assert sharp_far[interior_far].mean() > sharp_near[interior_far].mean()
        checked += 1
    assert checked >= 2


def test_a_seed_gives_the_same_stack_and_another_seed_another():
    first = draw_focal_stack(np.random.default_rng(11), num_slices=5, size=(48, 48))
    again = draw_focal_stack(np.random.default_rng(11), num_slices=5, size=(48, 48))
    other = draw_focal_stack(np.random.default_rng(12), num_slices=5, size=(48, 48))
    for key in ("stack", "focus_positions", "depth"):
        np.testing.assert_array_equal(first[key], again[key])
    assert first["meta"] == again["meta"]
    assert not np.array_equal(first["stack"], other["stack"])


@pytest.mark.parametrize("family", SCENE_FAMILIES)
def test_every_family_draws_valid_examples(family):
    rng = np.random.default_rng(2)
    for count in (2, 7, 16):
        drawn = draw_focal_stack(rng, num_slices=count, size=(40, 56), family=family)
        assert drawn["stack"].shape == (count, 40, 56, 3) and drawn["stack"].dtype == np.uint8
        assert np.all(np.diff(drawn["focus_positions"]) > 0)
        assert np.all(np.isfinite(drawn["depth"])) and np.all(drawn["depth"] > 0)
        assert drawn["meta"]["family"] == family


def test_focus_schedules_keep_their_promises():
    rng = np.random.default_rng(0)
    for spacing in SPACINGS:
        for coverage in COVERAGES:
            schedule = draw_focus_schedule(rng, 0.5, 2.5, 7, 50.0, spacing=spacing, coverage=coverage)
            diopters = 1.0 / schedule.focus_m
            assert np.all(np.diff(schedule.focus_m) > 0)
            if spacing == "diopter":
                np.testing.assert_allclose(np.diff(diopters), np.diff(diopters)[0], rtol=1e-9)
            if spacing == "distance":
                np.testing.assert_allclose(np.diff(schedule.focus_m), np.diff(schedule.focus_m)[0], rtol=1e-9)
            if coverage == "cut_near":
                assert diopters.max() < 2.5 - 0.1 * 2.0
            if coverage == "cut_far":
                assert diopters.min() > 0.5 + 0.1 * 2.0
            if coverage == "beyond":
                assert diopters.max() > 2.5 and diopters.min() < 0.5


def test_bad_engine_settings_get_clear_errors():
    with pytest.raises(ValueError, match="at least two"):
        EngineSettings(slice_counts=(1, 5))
    with pytest.raises(ValueError, match="≥ 2"):
        draw_focal_stack(np.random.default_rng(0), num_slices=1)
    bad_aperture = dataclasses.replace(camera_model_named("dslr_standard"), f_number=(0.0, 2.0))
    with pytest.raises(ValueError, match="f-number"):
        draw_focal_stack(np.random.default_rng(0), camera_model=bad_aperture)
    with pytest.raises(ValueError, match="focal length"):
        draw_focal_stack(np.random.default_rng(0), camera_model=camera_model_named("dslr_portrait"),
                         focus_m=[0.05, 1.0])
    with pytest.raises(ValueError, match="cameras"):
        EngineSettings(cameras=("pinhole",))
    with pytest.raises(ValueError, match="detail_zoom_range"):
        EngineSettings(detail_zoom_range=(0.5, 2.0))


def test_detail_zoom_shrinks_a_larger_layout_by_area_and_nearest_depth(monkeypatch):
    """A layout drawn 2× larger comes back as 2×2 block means of its image and the centre-nearest sample of its
    nearness (no depth between two sides of an edge), and the default settings draw exactly as before."""
    drawn = {}

    def fake_layout(family, rng, size):
        values = np.random.default_rng(7)
        layout = engine_module.SceneLayout(values.random((*size, 3)).astype(np.float32),
                                           values.random(size).astype(np.float32), family)
        drawn["layout"] = layout
        return layout

    monkeypatch.setattr(engine_module, "scene_layout", fake_layout)
    shrunk = engine_module._scene_layout_with_detail("plane", np.random.default_rng(0), (6, 10), (2.0, 2.0))
    large = drawn["layout"]
    assert large.image.shape == (12, 20, 3)
    block_means = large.image.reshape(6, 2, 10, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(shrunk.image, block_means, atol=1e-6)
    np.testing.assert_array_equal(shrunk.nearness, large.nearness[1::2, 1::2])
    monkeypatch.undo()

    plain = draw_focal_stack(np.random.default_rng(4), size=(32, 32), num_slices=3)
    unzoomed = draw_focal_stack(np.random.default_rng(4), EngineSettings(detail_zoom_range=(1.0, 1.0)), size=(32, 32),
                                num_slices=3)
    np.testing.assert_array_equal(plain["stack"], unzoomed["stack"])


def _high_frequency_share(image_HWC):
    grey = image_HWC.astype(np.float64).mean(-1)
    return float(np.mean(scipy.ndimage.laplace(grey) ** 2) / (np.var(grey) + 1e-12))


def test_detail_zoom_makes_textures_finer():
    """Over the same scene draws, a 3× detail zoom raises the all-in-focus image's Laplacian energy relative to
    its variance (finer texture at the same size)."""
    settings = dict(degrade=False, families=("plane",))
    plain = [_high_frequency_share(draw_focal_stack(np.random.default_rng(seed), EngineSettings(**settings),
                                                    num_slices=2, size=(64, 64))["aif"]) for seed in range(12)]
    fine = [_high_frequency_share(draw_focal_stack(np.random.default_rng(seed),
                                                   EngineSettings(detail_zoom_range=(3.0, 3.0), **settings),
                                                   num_slices=2, size=(64, 64))["aif"]) for seed in range(12)]
    assert np.median(fine) > 1.5 * np.median(plain)
