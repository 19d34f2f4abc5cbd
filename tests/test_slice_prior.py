"""Slice weights by each slice's cell in inverse focus distance (`DualFocusConfig.slice_prior="blur_cells"`):
the widths by hand, the bias they remove, the network against the predictor, the units and the checks."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from dualfocus_jax.evaluation.evaluate import evaluate_model
from dualfocus_jax.evaluation.protocols import PROTOCOLS
from dualfocus_jax.inference import focus_working_units, predict_depth, with_slice_prior
from dualfocus_jax.model import FAST_COMPILE_OPTIONS, DualFocusConfig, DualFocusNet, initial_params, model_config
from dualfocus_jax.slice_prior import blur_cell_widths, with_blur_cell_prior
from dualfocus_jax.training.trainer import check_training_sources_focus_unit
from dualfocus_jax.variational import project_unimodal


def test_cell_widths_by_hand_in_numpy_and_jax():
    # Focus at 1, 2, 4 m: inverse distances 1, 0.5, 0.25; gaps 0.5 and 0.25; cells 0.5, 0.375, 0.25 (mean 0.375).
    inverse = np.array([[1.0, 0.5, 0.25]])
    expected = np.array([[0.5, 0.375, 0.25]]) / 0.375
    np.testing.assert_allclose(blur_cell_widths(inverse), expected, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(blur_cell_widths(jnp.asarray(inverse, jnp.float32))), expected, rtol=1e-6)
    # Two slices: equal cells, whichever way they are sorted.
    np.testing.assert_allclose(blur_cell_widths(np.array([[0.2, 0.9]])), [[1.0, 1.0]])


def test_evenly_blur_spaced_stacks_are_left_unchanged():
    rng = np.random.default_rng(0)
    prob = rng.dirichlet(np.ones(6), size=(2, 3, 2)).transpose(0, 3, 1, 2)  # (B, S, H, W)
    diopters = np.stack([np.linspace(2.0, 0.2, 6), np.linspace(1.0, 0.5, 6)])
    np.testing.assert_allclose(with_blur_cell_prior(prob, diopters), prob, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(with_blur_cell_prior(jnp.asarray(prob, jnp.float32),
                                                               jnp.asarray(diopters, jnp.float32))), prob, rtol=1e-5)


def test_the_weights_take_out_the_far_bias_of_a_stack_even_in_metres():
    # 17 slices evenly in metres over 1-5 m, a surface at 2 m (0.5 D) rendered equally sharp in every slice within
    # ±0.1 D of it: 1.75, 2.0, 2.25 and 2.5 m. Equal p over them puts depth 12.5 cm too far; weighted by their
    # cells in diopters (wider for the nearer slices) it moves nearer, and averaged in diopters it is exact to
    # within the cells' discreteness.
    focus = np.linspace(1.0, 5.0, 17)
    sharp = np.abs(1.0 / focus - 0.5) <= 0.1 + 1e-9
    prob = (sharp / sharp.sum()).astype(np.float64)[None, :, None, None]
    plain = float(np.sum(prob[0, :, 0, 0] * focus))
    weighted = with_blur_cell_prior(prob, 1.0 / focus[None])[0, :, 0, 0]
    assert plain == pytest.approx(2.125)
    assert abs(float(np.sum(weighted * focus)) - 2.0) < 0.6 * abs(plain - 2.0)
    assert np.all(np.diff(weighted[sharp]) < 0)  # nearer slices stand for more inverse distance


@functools.cache
def _network_and_inputs():
    config = dataclasses.replace(model_config("small", "dualfocus"), slice_prior="blur_cells")
    params = initial_params(config, jax.random.key(3))
    rng = np.random.default_rng(4)
    stack = rng.random((4, 32, 32, 3)).astype(np.float32)
    focus = np.array([0.5, 0.8, 1.4, 3.0], np.float32)
    return config, params, stack, focus


def test_the_predictor_computes_what_the_network_computes():
    # The predictor runs the network without the focus values and weights its probabilities afterwards in the
    # stack's own unit; the network weights them itself. Same depth and probabilities; the all-in-focus image
    # and its weights are the unweighted blend in both.
    config, params, stack, focus = _network_and_inputs()
    apply = jax.jit(functools.partial(DualFocusNet(config).apply, train=False), compiler_options=FAST_COMPILE_OPTIONS)
    out = apply(params, jnp.asarray(stack)[None], jnp.asarray(focus)[None])
    predicted = predict_depth(stack, focus, method="network", params=params, config=config)
    np.testing.assert_allclose(predicted.depth_HW, np.asarray(out.depth[0]), rtol=2e-5, atol=2e-5)
    # The network's probabilities are weighted, then projected onto unimodal curves (the projection follows the
    # weights, as L_fv does in training); the predictor returns the unweighted ones the image is blended by.
    weighted = with_blur_cell_prior(predicted.weights_SHW[None].astype(np.float64), 1.0 / focus[None])
    np.testing.assert_allclose(np.asarray(project_unimodal(jnp.asarray(weighted, jnp.float32), axis=1)),
                               np.asarray(out.prob), atol=2e-5)
    np.testing.assert_allclose(np.einsum("shw,shwc->hwc", predicted.weights_SHW, stack),
                               np.asarray(out.all_in_focus[0]), atol=2e-5)
    np.testing.assert_allclose(predicted.all_in_focus_HWC, np.asarray(out.all_in_focus[0]), atol=2e-5)
    # These weights make some curves bimodal, so the order of weights and projection is tested here.
    assert np.max(np.abs(np.asarray(out.prob) - weighted)) > 1e-3
    # And the weights matter here: without them the same parameters give another depth.
    plain = predict_depth(stack, focus, method="network", params=params,
                          config=dataclasses.replace(config, slice_prior="none"))
    assert np.max(np.abs(plain.depth_HW - predicted.depth_HW)) > 1e-3


def test_the_weights_follow_the_stacks_focus_unit():
    prob = np.random.default_rng(5).dirichlet(np.ones(3), size=(2, 2)).transpose(2, 0, 1)  # near to far
    by_distance = with_slice_prior(prob, focus_working_units([1.0, 2.0, 4.0], "distance"), "blur_cells")
    by_diopter = with_slice_prior(prob, focus_working_units([0.25, 0.5, 1.0], "diopter"), "blur_cells")
    np.testing.assert_allclose(by_distance, by_diopter, rtol=1e-12)
    weights = np.array([0.5, 0.375, 0.25])[:, None, None]
    np.testing.assert_allclose(by_distance, prob * weights / np.sum(prob * weights, axis=0), rtol=1e-12)
    # Disparities are linear in blur as they are; a stack known by its order has no spacing to weight by.
    disparity = with_slice_prior(prob, focus_working_units([-1.0, 0.0, 3.0], "disparity"), "blur_cells")
    cells = np.array([3.0, 2.0, 1.0])[:, None, None]  # near to far: 3, 0, -1
    np.testing.assert_allclose(disparity, prob * cells / np.sum(prob * cells, axis=0), rtol=1e-12)
    assert with_slice_prior(prob, focus_working_units([0.0, 1.0, 2.0], "order"), "blur_cells") is prob
    assert with_slice_prior(prob, focus_working_units([1.0, 2.0, 4.0]), "none") is prob


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="slice_prior must be one of"):
        DualFocusConfig(slice_prior="diopters")
    with pytest.raises(ValueError, match="slice_prior must be one of"):
        with_slice_prior(np.ones((2, 1, 1)) / 2, focus_working_units([1.0, 2.0]), "cells")
    sources = ConfigDict({"engine": {"dataset": "focal_engine"}, "ddff": {"dataset": "ddff12"}})
    check_training_sources_focus_unit(sources, "focus", "none")
    with pytest.raises(ValueError, match=r"sources\.ddff: ddff12 gives focus positions as disparities.*"
                                         r"slice_prior='blur_cells' need focus distances"):
        check_training_sources_focus_unit(sources, "focus", "blur_cells")


def test_evaluation_on_disparities_weights_and_averages_them_as_the_predictor_does():
    # A light field's focus values are disparities (larger is nearer, some ≤ 0): the network must not take
    # 1/disparity. evaluate_model runs it with the weights and the expectation over the disparities
    # themselves; the predictor with --focus_unit disparity is the reference.
    config, params, stack, _ = _network_and_inputs()
    disparity = np.array([-0.6, -0.1, 0.3, 1.2], np.float32)
    stack_u8 = np.round(stack * 255).astype(np.uint8)
    depth = np.linspace(-0.5, 1.0, 32 * 32, dtype=np.float32).reshape(32, 32)
    record = {"id": b"scene", "stack": stack_u8, "focus_positions": disparity, "depth": depth,
              "valid": np.ones((32, 32), bool)}
    eval_config = ConfigDict({"dataset": "hci_lightfield", "num_slices": 4, "batch_size": 1, "max_examples": 0,
                              "depth_scale": 1.0})
    result = evaluate_model(params, config, [record], eval_config, PROTOCOLS["synthetic_focal"], keep_examples=1)
    reference = predict_depth(stack_u8.astype(np.float32) / 255, disparity, method="network", params=params,
                              config=config, focus_unit="disparity")
    np.testing.assert_allclose(result.examples[0].depth_HW, reference.depth_HW, atol=2e-5)
    np.testing.assert_allclose(result.examples[0].uncertainty_HW, reference.uncertainty_HW, atol=2e-5)
    assert result.metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean((reference.depth_HW - depth) ** 2))),
                                                   rel=1e-4)
    assert result.metrics["avg_unc"] == pytest.approx(float(np.mean(reference.uncertainty_HW)), rel=1e-4)
    assert np.all((result.examples[0].depth_HW >= disparity.min()) & (result.examples[0].depth_HW <= disparity.max()))
