"""`TrainState.params` holds the parameter tree itself; checkpoints written when it held the model's variables
`{'params': ...}` (and the optimizer's moments were nested the same way) still restore, evaluate and export.

The old-layout checkpoint is built as the trainer built its state before the change (the variables as `params`,
the optimizer initialised and updated over them) and written with the real checkpoint manager, so no training
is needed; the demo's small model at `runlocal` size.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import demo
from dualfocus_jax.inference import load_exported_checkpoint
from dualfocus_jax.model import initial_params
from dualfocus_jax.training.checkpointing import CheckpointMismatchError, Checkpoints, restore_params
from dualfocus_jax.training.train_state import TrainState, initial_train_state, make_optimizer
from dualfocus_jax.training.trainer import model_config_from, write_run_config
from experiments import evaluate_pretrained


class Position:
    """A stand-in for the data iterator: only its saved position travels through the checkpoint."""

    def __init__(self, state=None):
        self.state = state

    def get_state(self):
        return self.state

    def set_state(self, state):
        self.state = state


def path_arrays(tree, drop_one_params_key=False) -> dict[str, np.ndarray]:
    """{key path: array} of a tree; `drop_one_params_key` writes old-layout paths as the new layout names them
    (`.params['params']['encoder']` → `.params['encoder']`, `mu['params']['encoder']` → `mu['encoder']`)."""
    found = {}
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        name = jax.tree_util.keystr(path)
        found[name.replace("['params']", "", 1) if drop_one_params_key else name] = np.asarray(leaf)
    return found


@pytest.fixture(scope="module")
def old_workdir(tmp_path_factory):
    """(workdir, config, old-layout state): a workdir whose checkpoint at step 7 is in the old layout, with
    non-zero optimizer moments (one update with made-up gradients)."""
    folder = tmp_path_factory.mktemp("layout") / "old_run"
    config = demo.get_config("runlocal")
    model_config = model_config_from(config.model)
    os.makedirs(folder)
    write_run_config(str(folder), config, model_config)
    optimizer = make_optimizer(config.optimizer, 100)
    variables = initial_params(model_config, jax.random.key(5))
    assert set(variables) == {"params"}
    opt_state = optimizer.init(variables)
    grads = jax.tree.map(lambda leaf: jnp.full_like(leaf, 0.01), variables)
    updates, opt_state = optimizer.update(grads, opt_state, variables)
    old = TrainState(step=jnp.asarray(7, jnp.int32), params=optax.apply_updates(variables, updates),
                     opt_state=opt_state)
    with Checkpoints(str(folder), config.checkpoint) as checkpoints:
        assert checkpoints.save(7, old, Position({"position": 7}), force=True)
    return folder, config, old


def test_the_state_holds_the_parameter_tree():
    config = demo.get_config("runlocal")
    model_config = model_config_from(config.model)
    state = initial_train_state(model_config, make_optimizer(config.optimizer, 4), jax.random.key(0))
    assert "params" not in state.params and {"encoder", "decoder"} <= set(state.params)
    mu = state.opt_state[1][0].mu  # clip_by_global_norm, then adamw's ScaleByAdamState
    assert jax.tree.structure(mu) == jax.tree.structure(state.params)


def test_an_old_layout_checkpoint_resumes_in_the_new_layout(old_workdir):
    folder, config, old = old_workdir
    model_config = model_config_from(config.model)
    template = initial_train_state(model_config, make_optimizer(config.optimizer, 100), jax.random.key(1))
    position = Position()
    with Checkpoints(str(folder), config.checkpoint) as checkpoints:
        state, step = checkpoints.restore_latest(template, position)
    assert step == 7 and int(state.step) == 7 and position.state == {"position": 7}
    assert jax.tree.structure(state) == jax.tree.structure(template)
    restored, expected = path_arrays(state), path_arrays(old, drop_one_params_key=True)
    assert restored.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    moments = [name for name in expected if ".mu[" in name or ".nu[" in name]
    assert moments and any(np.any(expected[name] != 0) for name in moments)


def test_an_old_layout_checkpoint_of_another_model_names_the_arrays_that_differ(old_workdir):
    folder, config, _ = old_workdir
    config = demo.get_config("runlocal")
    config.model.variant = "dfv"
    other = initial_train_state(model_config_from(config.model), make_optimizer(config.optimizer, 100),
                                jax.random.key(1))
    with Checkpoints(str(folder), config.checkpoint) as checkpoints:
        with pytest.raises(CheckpointMismatchError, match=r"step 7 .* arrays differ[\s\S]*params/params/"):
            checkpoints.restore_latest(other, Position())


def test_restore_params_and_export_read_the_old_layout(old_workdir, tmp_path):
    folder, _, old = old_workdir
    variables, step = restore_params(str(folder))
    assert step == 7 and set(variables) == {"params"}
    expected = path_arrays(old.params)
    restored = path_arrays(variables)
    assert restored.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(restored[name], value, err_msg=name)
    out = tmp_path / "export"
    assert evaluate_pretrained.main(["--workdir", str(folder), "--out", str(out), "--export_only"]) == 0
    exported, _ = load_exported_checkpoint(str(out))
    exported = path_arrays(exported)
    assert exported.keys() == expected.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(exported[name], value, err_msg=name)


def test_restore_params_gives_the_variables_for_the_new_layout(tmp_path):
    config = demo.get_config("runlocal")
    state = initial_train_state(model_config_from(config.model), make_optimizer(config.optimizer, 4),
                                jax.random.key(2))
    with Checkpoints(str(tmp_path), config.checkpoint) as checkpoints:
        assert checkpoints.save(3, state, Position({"position": 3}), force=True)
    variables, step = restore_params(str(tmp_path))
    assert step == 3 and set(variables) == {"params"}
    assert path_arrays(variables).keys() == path_arrays({"params": state.params}).keys()
