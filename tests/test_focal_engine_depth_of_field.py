"""The engine's depth of field (sharp_coc_px_range) and hard layering (hard_layer_share): what each draws, that
the defaults draw nothing (every earlier stack, the prepared test split included, stays as it was), and errors."""

import dataclasses

import numpy as np
import pytest

from dualfocus_jax.engine import EngineSettings, draw_focal_stack
from dualfocus_jax.engine import engine as engine_module
from dualfocus_jax.engine.cameras import camera_model_named

CLEAN = EngineSettings(degrade=False, families=("texture_edge",), psf_shapes=("disc",))


def test_defaults_draw_nothing_new(monkeypatch):
    """The default settings consume no random numbers for the depth of field or the layering: a draw equals the
    same draw with that step replaced by its fixed default answer (1 px, smooth layers) that draws nothing."""
    drawn = draw_focal_stack(np.random.default_rng(4), num_slices=3, size=(24, 24))
    # (a depth-of-field range does draw a number)
    other = draw_focal_stack(np.random.default_rng(4), EngineSettings(sharp_coc_px_range=(1.0, 1.5)), num_slices=3,
                             size=(24, 24))
    assert other["meta"]["sharp_coc_px"] != 1.0
    rng = np.random.default_rng(4)
    monkeypatch.setattr(engine_module, "_depth_of_field_and_layering", lambda rng, settings: (1.0, 0))
    stubbed = draw_focal_stack(rng, num_slices=3, size=(24, 24))
    np.testing.assert_array_equal(drawn["stack"], stubbed["stack"])
    assert drawn["meta"] == stubbed["meta"]
    assert drawn["meta"]["sharp_coc_px"] == 1.0 and drawn["meta"]["hard_layers"] == 0


def test_draws_stay_in_their_ranges_and_a_seed_repeats_them():
    settings = dataclasses.replace(CLEAN, sharp_coc_px_range=(1.0, 3.0), hard_layer_share=0.5,
                                   hard_layer_counts=(6, 9))
    metas = [draw_focal_stack(np.random.default_rng(seed), settings, num_slices=3, size=(24, 24))["meta"]
             for seed in range(30)]
    sharp = np.array([meta["sharp_coc_px"] for meta in metas])
    layers = np.array([meta["hard_layers"] for meta in metas])
    assert np.all((sharp >= 1.0) & (sharp <= 3.0)) and np.ptp(sharp) > 1.0
    assert 5 <= np.sum(layers > 0) <= 25 and set(layers[layers > 0]) <= set(range(6, 10))
    first = draw_focal_stack(np.random.default_rng(7), settings, num_slices=3, size=(24, 24))
    again = draw_focal_stack(np.random.default_rng(7), settings, num_slices=3, size=(24, 24))
    np.testing.assert_array_equal(first["stack"], again["stack"])
    assert first["meta"] == again["meta"]


def test_a_slice_focused_near_a_plane_is_sharp_inside_the_depth_of_field():
    """A plane 1.2 px of CoC (diameter) from a slice's focus: blurred when only points are sharp, the
    all-in-focus image itself under a 2 px depth of field."""
    model = camera_model_named("dslr_standard")
    model = dataclasses.replace(model, focal_length_m=(model.focal_length_m[0],) * 2,
                                f_number=(model.f_number[0],) * 2, sensor_width_m=(model.sensor_width_m[0],) * 2,
                                image_width_px=(640, 640))
    drawn = draw_focal_stack(np.random.default_rng(0), CLEAN, num_slices=2, size=(48, 48), family="plane",
                             camera_model=model)
    meta = drawn["meta"]
    px_per_diopter = (meta["focal_length_mm"] * 1e-3) ** 2 / meta["f_number"] / (meta["pixel_size_um"] * 1e-6)
    depth = 1.0 / (1.5 * 6.0 / px_per_diopter)  # near enough that both offsets are real focus distances beyond it
    focus = [1.0 / (1.0 / depth - 1.2 / px_per_diopter), 1.0 / (1.0 / depth - 6.0 / px_per_diopter)]
    for sharp_range, expect_sharp in (((1.0, 1.0), False), ((2.0, 2.0), True)):
        settings = dataclasses.replace(CLEAN, families=("plane",), sharp_coc_px_range=sharp_range)
        stack = draw_focal_stack(np.random.default_rng(0), settings, family="plane", camera_model=model,
                                 focus_m=focus, size=(48, 48), depth_m=depth)
        difference = np.abs(stack["stack"][0].astype(int) - stack["aif"]).max()
        assert (difference <= 1) == expect_sharp, (sharp_range, difference)
        assert np.abs(stack["stack"][1].astype(int) - stack["aif"]).max() > 5  # 6 px: blurred either way


def test_bad_depth_of_field_and_layer_settings_get_clear_errors():
    with pytest.raises(ValueError, match="sharp_coc_px_range"):
        EngineSettings(sharp_coc_px_range=(0.0, 2.0))
    with pytest.raises(ValueError, match="hard_layer_share"):
        EngineSettings(hard_layer_share=1.5)
    with pytest.raises(ValueError, match="hard_layer_counts"):
        EngineSettings(hard_layer_counts=(1, 4))
