"""Forward pass of the small DualFocusNet: shapes, any H×W, slice order, units, unimodal inference, bad input.

One set of parameters and one input shape for the whole file, an odd 45×61 (padded to 64×64 inside), so
there is one compiled function per mode; compiled unoptimised (FAST_COMPILE_OPTIONS), since compile time
dominates on tiny inputs.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.model import FAST_COMPILE_OPTIONS, DualFocusNet, initial_params, model_config

CONFIG = model_config("small", "dualfocus")
MODEL = DualFocusNet(CONFIG)
B, S, H, W = 2, 5, 45, 61


@functools.cache
def _params():
    return initial_params(CONFIG, jax.random.key(0))


@functools.cache
def _apply(train: bool):
    return jax.jit(functools.partial(MODEL.apply, train=train), compiler_options=FAST_COMPILE_OPTIONS)


def _stack(seed=0):
    rng = np.random.default_rng(seed)
    stack = rng.random((B, S, H, W, 3)).astype(np.float32)
    focus = np.sort(rng.uniform(0.3, 2.0, size=(B, S)), axis=1).astype(np.float32)
    return jnp.asarray(stack), jnp.asarray(focus)


def _numpy_is_unimodal(prob_BSHW):
    """Per pixel: no strict decrease followed (later) by a strict increase along S."""
    diffs = np.diff(prob_BSHW, axis=1)
    seen_drop = np.logical_or.accumulate(diffs < 0, axis=1)
    later_rise = np.zeros_like(seen_drop)
    later_rise[:, 1:] = (diffs[:, 1:] > 0) & seen_drop[:, :-1]
    return ~np.any(later_rise, axis=1)


def test_output_shapes_and_ranges():
    # 45×61 is padded to 64×64 inside and every output is cropped back to 45×61.
    stack, focus = _stack()
    out = _apply(False)(_params(), stack, focus)
    assert out.depth.shape == (B, H, W)
    assert out.uncertainty.shape == (B, H, W)
    assert out.prob.shape == (B, S, H, W)
    assert out.all_in_focus.shape == (B, H, W, 3)
    assert [d.shape for d in out.depth_levels] == [(B, H, W)] * 4
    assert out.surface_gradients.shape == (B, S, 4, 4, 2)  # the padded 64×64 grid at 1/16
    assert out.focus_positions.shape == (B, S)
    prob = np.asarray(out.prob)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-5)
    depth = np.asarray(out.depth)
    assert np.isfinite(depth).all()
    assert np.all(depth >= np.asarray(focus).min(1)[:, None, None] - 1e-5)
    assert np.all(depth <= np.asarray(focus).max(1)[:, None, None] + 1e-5)
    np.testing.assert_allclose(depth, np.einsum("bshw,bs->bhw", prob, np.asarray(focus)), rtol=1e-5)
    sigma = np.sqrt(np.einsum("bshw,bshw->bhw", prob, (depth[:, None] - np.asarray(focus)[:, :, None, None]) ** 2))
    np.testing.assert_allclose(np.asarray(out.uncertainty), sigma, rtol=1e-4, atol=1e-5)
    aif = np.einsum("bshw,bshwc->bhwc", prob, np.asarray(stack))
    np.testing.assert_allclose(np.asarray(out.all_in_focus), aif, rtol=1e-5, atol=1e-6)


def test_inference_projection_makes_every_focus_curve_unimodal():
    stack, focus = _stack()
    raw = np.asarray(_apply(True)(_params(), stack, focus).prob)
    projected = np.asarray(_apply(False)(_params(), stack, focus).prob)
    assert not _numpy_is_unimodal(raw).all()  # precondition: the untrained network is multi-modal somewhere
    assert _numpy_is_unimodal(projected).all()
    np.testing.assert_allclose(projected.sum(axis=1), 1.0, atol=1e-5)
    assert projected.min() >= 0.0


def test_slice_order_does_not_matter():
    stack, focus = _stack()
    permutation = np.array([3, 0, 4, 1, 2])
    out = _apply(False)(_params(), stack, focus)
    shuffled = _apply(False)(_params(), stack[:, permutation], focus[:, permutation])
    for key in ("depth", "uncertainty", "prob", "all_in_focus", "focus_positions", "surface_gradients"):
        np.testing.assert_allclose(np.asarray(getattr(shuffled, key)), np.asarray(getattr(out, key)),
                                   rtol=1e-6, atol=1e-6, err_msg=key)
    assert not np.allclose(np.asarray(stack[:, permutation]), np.asarray(stack))  # the permutation did move slices


def test_focus_unit_only_scales_the_depth():
    # The network never sees the focus values except in the expectation: millimetres give 1000× the depth.
    stack, focus = _stack()
    out = _apply(False)(_params(), stack, focus)
    out_mm = _apply(False)(_params(), stack, focus * 1000.0)
    np.testing.assert_allclose(np.asarray(out_mm.prob), np.asarray(out.prob), atol=1e-6)
    np.testing.assert_allclose(np.asarray(out_mm.depth), 1000.0 * np.asarray(out.depth), rtol=1e-5)


def test_examples_in_a_batch_are_independent():
    stack, focus = _stack(seed=1)
    out = _apply(False)(_params(), stack, focus)
    other, _ = _stack(seed=2)
    mixed = other.at[1].set(stack[1])  # example 0 changes, example 1 stays
    out_mixed = _apply(False)(_params(), mixed, focus)
    np.testing.assert_allclose(np.asarray(out_mixed.depth[1]), np.asarray(out.depth[1]), rtol=1e-5, atol=1e-6)
    assert not np.allclose(np.asarray(out_mixed.depth[0]), np.asarray(out.depth[0]))


@pytest.mark.parametrize(
    "stack_shape, focus_shape, dtype, message",
    [
        ((1, 5, 32, 32), (1, 5), np.float32, r"\(B, S, H, W, 3\)"),
        ((1, 5, 32, 32, 1), (1, 5), np.float32, r"\(B, S, H, W, 3\)"),
        ((1, 1, 32, 32, 3), (1, 1), np.float32, "at least 2 slices"),
        ((1, 5, 32, 32, 3), (1, 4), np.float32, "one per slice"),
        ((2, 5, 32, 32, 3), (5,), np.float32, "one per slice"),
        ((1, 5, 32, 32, 3), (1, 5), np.uint8, "float images"),
    ],
)
def test_bad_inputs_raise_clear_errors(stack_shape, focus_shape, dtype, message):
    stack = jnp.zeros(stack_shape, dtype)
    focus = jnp.linspace(0.0, 1.0, focus_shape[-1]).reshape(focus_shape).astype(jnp.float32)
    with pytest.raises(ValueError, match=message):
        MODEL.apply(_params(), stack, focus, train=False)
