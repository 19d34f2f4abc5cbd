"""Depth as the expectation over focus distance or over inverse focus distance (`DualFocusConfig.expectation`):
the statistics against NumPy, the network's outputs, the predictor's working units and the training check."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from datasets.common.prepare import DATASET_NAMES, builder_class
from dualfocus_jax import data_features as F
from dualfocus_jax.focus_statistics import depth_uncertainty, expected_depth
from dualfocus_jax.inference import depth_from_slice_probabilities, focus_working_units
from dualfocus_jax.model import FAST_COMPILE_OPTIONS, DualFocusConfig, DualFocusNet, initial_params, model_config
from dualfocus_jax.prepared_splits import DISPARITY_FOCUS_DATASETS
from dualfocus_jax.training.trainer import check_training_sources_focus_unit


def _random_prob_and_focus(seed=0, b=2, s=5, h=3, w=4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(b, s, h, w))
    prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    focus = np.sort(rng.uniform(0.2, 6.0, size=(b, s)), axis=1)
    return prob.astype(np.float32), focus.astype(np.float32)


def test_inverse_expectation_and_its_spread_match_numpy():
    prob, focus = _random_prob_and_focus()
    inverse_mean = np.einsum("bshw,bs->bhw", prob.astype(np.float64), 1.0 / focus.astype(np.float64))
    depth_ref = 1.0 / inverse_mean
    spread = np.sqrt(np.einsum("bshw,bshw->bhw", prob, (inverse_mean[:, None] - 1.0 / focus[:, :, None, None]) ** 2))
    depth = np.asarray(expected_depth(jnp.asarray(prob), jnp.asarray(focus), "inverse_focus"))
    np.testing.assert_allclose(depth, depth_ref, rtol=1e-5)
    sigma = np.asarray(depth_uncertainty(jnp.asarray(prob), jnp.asarray(focus), jnp.asarray(depth), "inverse_focus"))
    np.testing.assert_allclose(sigma, spread * depth_ref ** 2, rtol=1e-4)
    # Both lie within the focus range; the inverse mean lies nearer than the linear one (harmonic ≤ arithmetic).
    linear = np.asarray(expected_depth(jnp.asarray(prob), jnp.asarray(focus)))
    assert np.all(depth <= linear + 1e-6)
    assert np.all(depth >= focus.min(1)[:, None, None] - 1e-5)


def test_half_way_in_blur_is_half_way_in_diopters():
    # p split 50/50 between slices at 2 m and 4 m: 1 / ((1/2 + 1/4) / 2) = 2.667 m, not 3 m.
    prob = jnp.asarray([[[[0.5]], [[0.5]]]], jnp.float32)
    focus = jnp.asarray([[2.0, 4.0]], jnp.float32)
    assert float(expected_depth(prob, focus, "inverse_focus")[0, 0, 0]) == pytest.approx(8 / 3, rel=1e-6)
    assert float(expected_depth(prob, focus)[0, 0, 0]) == pytest.approx(3.0, rel=1e-6)


def test_unknown_expectation_space_is_refused():
    prob, focus = _random_prob_and_focus()
    with pytest.raises(ValueError, match="inverse_focus"):
        expected_depth(jnp.asarray(prob), jnp.asarray(focus), "diopters")
    with pytest.raises(ValueError, match="expectation must be one of"):
        DualFocusConfig(expectation="inverse")


@functools.cache
def _outputs(expectation: str):
    config = dataclasses.replace(model_config("small", "dualfocus"), expectation=expectation)
    params = initial_params(model_config("small", "dualfocus"), jax.random.key(0))  # same shapes either way
    rng = np.random.default_rng(1)
    stack = jnp.asarray(rng.random((1, 4, 32, 32, 3)), jnp.float32)
    focus = jnp.asarray([[0.6, 0.9, 1.7, 3.1]], jnp.float32)
    apply = jax.jit(functools.partial(DualFocusNet(config).apply, train=False), compiler_options=FAST_COMPILE_OPTIONS)
    return apply(params, stack, focus), np.asarray(focus)


def test_the_network_averages_over_inverse_distance_when_configured():
    out, focus = _outputs("inverse_focus")
    prob = np.asarray(out.prob, np.float64)
    depth_ref = 1.0 / np.einsum("bshw,bs->bhw", prob, 1.0 / focus)
    np.testing.assert_allclose(np.asarray(out.depth), depth_ref, rtol=1e-5)
    for level in out.depth_levels:
        assert np.all(np.asarray(level) <= focus.max() + 1e-5) and np.all(np.asarray(level) >= focus.min() - 1e-5)


def test_predictor_units_follow_the_models_expectation():
    # A narrow span stays linear for a model trained over distances, and becomes inverse for one trained over
    # inverse distance; diopters and disparities are linear in blur already and are left alone.
    focus = [2.0, 3.0, 4.0]
    assert focus_working_units(focus).mode == "distance"
    units = focus_working_units(focus, "distance", "inverse_focus")
    assert units.mode == "inverse distance" and "as the model was trained" in units.describe("m")
    np.testing.assert_allclose(units.values_S, [0.5, 1 / 3, 0.25])
    assert focus_working_units([0.25, 0.5], "diopter", "inverse_focus").mode == "diopter"
    prob = np.zeros((3, 1, 1))
    prob[:2, 0, 0] = 0.5
    depth, _ = depth_from_slice_probabilities(prob, units)
    assert depth[0, 0] == pytest.approx(1 / ((0.5 + 1 / 3) / 2), rel=1e-6)


def test_training_refuses_disparity_sources_for_an_inverse_expectation():
    sources = ConfigDict({"engine": {"dataset": "focal_engine"}, "ddff": {"dataset": "ddff12"}})
    check_training_sources_focus_unit(sources, "focus")
    with pytest.raises(ValueError, match=r"sources\.ddff: ddff12 gives focus positions as disparities"):
        check_training_sources_focus_unit(sources, "inverse_focus")
    check_training_sources_focus_unit(ConfigDict({"engine": {"dataset": "focal_engine"}}), "inverse_focus")


def test_the_library_names_the_disparity_datasets_as_the_builders_do(tmp_path):
    disparity_units = (F.FOCUS_UNIT_DISPARITY, F.FOCUS_UNIT_DISPARITY_PX)
    declared = {name: builder_class(name)(data_dir=str(tmp_path)).info.metadata.get(F.FOCUS_UNIT_KEY)
                for name in DATASET_NAMES}
    assert set(DISPARITY_FOCUS_DATASETS) == {name for name, unit in declared.items() if unit in disparity_units}
