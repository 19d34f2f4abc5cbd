"""The full-resolution refinement (model/refinement.py): its sums against a SciPy reference, its zero start, and
a run initialised from an export without it."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from dualfocus_jax.model import model_config
from dualfocus_jax.model.dualfocus import DualFocusNet, initial_params
from dualfocus_jax.model.refinement import FullResolutionRefinement

SHIPPED = "dualfocus_jax/pretrained/small_engine_stage5"


def _correlate_same(x, kernel, bias):
    """'SAME' correlation with zero padding over every axis but the channels (2D images, 3D volumes),
    summed over input channels (SciPy); kernel (..., Cin, Cout)."""
    out = np.zeros(x.shape[:-1] + (kernel.shape[-1],))
    for o in range(kernel.shape[-1]):
        for i in range(x.shape[-1]):
            out[..., o] += ndimage.correlate(x[..., i], kernel[..., i, o], mode="constant")
    return out + bias


def _reference(params, costs_SHW, stack_SHWC):
    features = stack_SHWC - 0.5
    for index in range(2):
        layer = params[f"image_conv{index}"]
        features = np.stack([np.maximum(_correlate_same(f, layer["kernel"], layer["bias"]), 0) for f in features])
    relative = features - features.mean(axis=0, keepdims=True)
    volume = np.concatenate([features, relative, costs_SHW[..., None]], axis=-1)
    hidden = np.maximum(_correlate_same(volume, params["volume_conv"]["kernel"], params["volume_conv"]["bias"]), 0)
    correction = _correlate_same(hidden, params["correction"]["kernel"], params["correction"]["bias"])
    return costs_SHW + correction[..., 0]


@pytest.mark.parametrize("impl", ["slices", "lax"])
def test_refinement_matches_a_scipy_reference(impl):
    rng = np.random.default_rng(0)
    stack = rng.uniform(size=(1, 4, 9, 11, 3)).astype(np.float32)
    costs = rng.normal(size=(1, 4, 9, 11)).astype(np.float32)
    module = FullResolutionRefinement(width=3, conv3d_impl=impl)
    params = module.init(jax.random.key(0), costs, stack)["params"]
    # The correction starts at zero; give it random weights so the test sees its sums.
    params = jax.tree.map(lambda leaf: jnp.asarray(rng.normal(size=leaf.shape), jnp.float32) * 0.3, params)
    got = np.asarray(module.apply({"params": params}, costs, stack))
    numpy_params = jax.tree.map(lambda leaf: np.asarray(leaf, np.float64), params)
    want = _reference(numpy_params, costs[0].astype(np.float64), stack[0].astype(np.float64))
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-4)


def test_a_fresh_refinement_predicts_what_the_export_did():
    from dualfocus_jax.inference.checkpoint_io import load_exported_checkpoint

    variables, config = load_exported_checkpoint(SHIPPED)
    refined = dataclasses.replace(config, full_resolution_refinement=True)
    fresh = initial_params(refined, jax.random.key(3))["params"]
    params = dict(variables["params"], refinement=fresh["refinement"])
    stack = jax.random.uniform(jax.random.key(1), (1, 4, 40, 56, 3))
    focus = jnp.linspace(1.0, 2.0, 4)[None]
    before = DualFocusNet(config).apply(variables, stack, focus, train=False)
    after = DualFocusNet(refined).apply({"params": params}, stack, focus, train=False)
    np.testing.assert_array_equal(np.asarray(after.depth), np.asarray(before.depth))
    # Once its last convolution is not zero, the refinement changes the depth at full resolution.
    params["refinement"] = dict(params["refinement"], correction=jax.tree.map(
        lambda leaf: jnp.full_like(leaf, 0.05), params["refinement"]["correction"]))
    moved = DualFocusNet(refined).apply({"params": params}, stack, focus, train=False)
    assert float(jnp.max(jnp.abs(moved.depth - before.depth))) > 1e-3


def test_a_run_starts_from_an_export_without_the_refinement():
    from configs.common import base_config
    from dualfocus_jax.inference.checkpoint_io import load_exported_checkpoint
    from dualfocus_jax.training.train_state import initial_train_state, make_optimizer
    from dualfocus_jax.training.trainer import initial_state_from_export

    variables, config = load_exported_checkpoint(SHIPPED)
    refined = dataclasses.replace(config, full_resolution_refinement=True)
    optimizer = make_optimizer(base_config().optimizer, total_steps=10)
    template = initial_train_state(refined, optimizer, jax.random.key(0))
    state = initial_state_from_export(SHIPPED, refined, optimizer, template)
    for name, module in variables["params"].items():
        jax.tree.map(np.testing.assert_array_equal, state.params[name], module)
    jax.tree.map(np.testing.assert_array_equal, state.params["refinement"], template.params["refinement"])
    # A module the export has but in other shapes (here the spatial branch) still gets the one message.
    other = model_config("small", full_resolution_refinement=True, surface_channels=4)
    with pytest.raises(ValueError, match="holds another architecture"):
        initial_state_from_export(SHIPPED, other, optimizer,
                                  initial_train_state(other, optimizer, jax.random.key(0)))

