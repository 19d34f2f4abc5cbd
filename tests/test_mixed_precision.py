"""bfloat16 compute (`DualFocusConfig.dtype`): float32 parameters and outputs, depth close to float32's on a
rendered scene, a finite update, and the per-backend default."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.inference import load_exported_checkpoint
from dualfocus_jax.model import DualFocusConfig, DualFocusNet, abstract_params, model_config
from dualfocus_jax.rendering import NYUV2_CAMERA, render_focal_stack

FOCUS_M = np.asarray([0.6, 0.9, 1.3, 1.8, 2.4], np.float32)


@pytest.fixture(scope="module")
def two_plane_scene():
    """A textured scene, left half at 0.8 m and right half at 2.0 m, rendered into 5 slices (96×128)."""
    height, width = 96, 128
    rng = np.random.default_rng(0)
    texture = np.kron(rng.random((height // 4, width // 4, 3)), np.ones((4, 4, 1))).astype(np.float32)
    depth = np.where(np.arange(width)[None, :] < width // 2, 0.8, 2.0) * np.ones((height, 1), np.float32)
    stack = render_focal_stack(jnp.asarray(texture), jnp.asarray(depth, jnp.float32), jnp.asarray(FOCUS_M),
                               NYUV2_CAMERA, mode="layered")
    return np.asarray(stack), depth


def _outputs(params, config, stack):
    forward = jax.jit(lambda p, x: DualFocusNet(config).apply(p, x[None], jnp.asarray(FOCUS_M)[None], train=False))
    return forward(params, jnp.asarray(stack))


def test_bfloat16_keeps_float32_parameters_and_outputs_and_float32_depth(two_plane_scene):
    params, config = load_exported_checkpoint()
    stack, truth = two_plane_scene
    full = _outputs(params, config, stack)
    half = _outputs(params, dataclasses.replace(config, dtype="bfloat16"), stack)
    for key in ("depth", "uncertainty", "prob", "all_in_focus"):
        assert getattr(half, key).dtype == jnp.float32, key
    np.testing.assert_allclose(np.asarray(half.prob).sum(axis=1), 1.0, atol=1e-5)
    difference = np.sqrt(np.mean((np.asarray(half.depth) - np.asarray(full.depth)) ** 2))
    assert difference < 0.01 * (FOCUS_M[-1] - FOCUS_M[0])  # bfloat16 features, float32 softmax and expectation
    error_full = np.sqrt(np.mean((np.asarray(full.depth[0]) - truth) ** 2))
    error_half = np.sqrt(np.mean((np.asarray(half.depth[0]) - truth) ** 2))
    assert error_half < 1.05 * error_full + 0.005


def test_the_parameter_tree_does_not_depend_on_the_compute_dtype():
    config = model_config("small", "dualfocus")
    full = abstract_params(config, num_slices=2, height=32, width=32)
    half = abstract_params(dataclasses.replace(config, dtype="bfloat16"), num_slices=2, height=32, width=32)
    assert jax.tree.structure(full) == jax.tree.structure(half)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(half))
    assert [leaf.shape for leaf in jax.tree.leaves(full)] == [leaf.shape for leaf in jax.tree.leaves(half)]


def test_a_bfloat16_update_is_finite_and_keeps_float32_state():
    from configs.common import base_config
    from dualfocus_jax.training import mesh as mesh_lib
    from dualfocus_jax.training.train_state import initial_train_state, learning_rate_schedule, make_optimizer
    from dualfocus_jax.training.train_step import make_train_step

    optimizer_config = base_config().optimizer
    config = dataclasses.replace(model_config("small", "dualfocus"), dtype="bfloat16")
    optimizer = make_optimizer(optimizer_config, 10)
    mesh = mesh_lib.data_parallel_mesh()
    step = make_train_step(config, optimizer, learning_rate_schedule(optimizer_config, 10), mesh, fast_compile=True)
    rng = np.random.default_rng(1)
    batch = {"stack": rng.integers(0, 256, (2, 3, 32, 32, 3), dtype=np.uint8),
             "focus": np.tile(np.linspace(1.0, 2.0, 3, dtype=np.float32), (2, 1)),
             "depth": rng.uniform(1.0, 2.0, (2, 32, 32)).astype(np.float32), "valid": np.ones((2, 32, 32), bool)}
    state = mesh_lib.replicated_on_mesh(initial_train_state(config, optimizer, jax.random.key(0)), mesh)
    state, metrics = step(state, mesh_lib.global_batch_array(batch, mesh))
    assert all(np.isfinite(float(value)) for value in metrics.values())
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state.params))


def test_auto_picks_float32_on_a_cpu_and_bfloat16_on_accelerators():
    from configs.common import base_config
    from dualfocus_jax.training.trainer import backend_dtype, model_config_from

    assert backend_dtype("cpu") == "float32"
    assert backend_dtype("gpu") == backend_dtype("tpu") == "bfloat16"
    config = base_config()
    assert config.model.dtype == "auto"
    assert model_config_from(config.model).dtype == backend_dtype()
    with pytest.raises(ValueError, match="dtype must be one of"):
        DualFocusConfig(dtype="float16")
