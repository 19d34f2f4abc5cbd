"""The predictor's stored traced programs (dualfocus_jax/inference/traced_network.py): stored once per
(model, shape), reused without tracing or the shape check, identical to the model applied directly, and
never trusted when damaged or when the parameters do not fit."""

import dataclasses
import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.inference import DEFAULT_CHECKPOINT, load_exported_checkpoint, traced_network
from dualfocus_jax.model import DualFocusNet, initial_params, model_config
from dualfocus_jax.predict import main


@pytest.fixture
def traced_dir(tmp_path, monkeypatch):
    """A private store, and no programs kept from earlier tests in this process."""
    folder = tmp_path / "traced"
    monkeypatch.setattr(traced_network, "traced_program_dir", lambda: str(folder))
    monkeypatch.setattr(traced_network, "_in_process", {})
    return folder


@pytest.fixture(scope="module")
def tiny_model():
    # The cheapest network to compile: what is stored and reused does not depend on the variant.
    config = model_config(size="small", variant="fv", project_unimodal_at_inference=False)
    return config, initial_params(config, jax.random.key(3))


def _stack(seed, shape=(3, 32, 32, 3)):
    return jnp.asarray(np.random.default_rng(seed).random(shape), jnp.float32)


def _reference(params, config, images):
    order = jnp.arange(images.shape[0], dtype=jnp.float32)[None]
    outputs = DualFocusNet(config).apply(params, images[None], order, train=False)
    return np.asarray(outputs.prob[0]), np.asarray(outputs.all_in_focus[0])


def test_a_stored_program_is_reused_without_tracing_and_matches_the_model(traced_dir, tiny_model, monkeypatch):
    config, params = tiny_model
    images = _stack(0)
    first = traced_network.network_probabilities(params, config, images)
    stored = sorted(traced_dir.iterdir())
    assert len(stored) == 1 and stored[0].suffix == ".jaxexport"
    expected = _reference(params, config, images)
    np.testing.assert_allclose(np.asarray(first[0]), expected[0], atol=1e-5)
    np.testing.assert_allclose(np.asarray(first[1]), expected[1], atol=1e-5)

    # A new process: nothing in memory, and tracing (or the shape check that traces) would fail.
    monkeypatch.setattr(traced_network, "_in_process", {})
    monkeypatch.setattr(traced_network, "params_mismatch", lambda *a: pytest.fail("traced again"))
    monkeypatch.setattr(traced_network, "_forward", lambda *a: pytest.fail("traced again"))
    other = _stack(1)
    again = traced_network.network_probabilities(params, config, other)
    np.testing.assert_allclose(np.asarray(again[0]), _reference(params, config, other)[0], atol=1e-5)
    assert sorted(traced_dir.iterdir()) == stored


def test_another_shape_or_config_gets_its_own_program(tiny_model):
    config, params = tiny_model
    keys = {traced_network._program_key(params, config, _stack(0)),
            traced_network._program_key(params, config, _stack(0, (4, 32, 32, 3))),
            traced_network._program_key(params, dataclasses.replace(config, cg_iters=config.cg_iters + 1), _stack(0))}
    assert len(keys) == 3
    assert traced_network._program_key(params, config, _stack(5)) in keys  # the values do not matter


def test_a_damaged_program_is_traced_again_and_replaced(traced_dir, tiny_model, monkeypatch):
    config, params = tiny_model
    images = _stack(2)
    traced_network.network_probabilities(params, config, images)
    (path,) = traced_dir.iterdir()
    path.write_bytes(b"\x00 not a serialised program")
    monkeypatch.setattr(traced_network, "_in_process", {})
    result = traced_network.network_probabilities(params, config, images)
    np.testing.assert_allclose(np.asarray(result[0]), _reference(params, config, images)[0], atol=1e-5)
    assert path.stat().st_size > 1000


def test_parameters_of_another_model_are_refused_before_running(traced_dir, tiny_model):
    config, params = tiny_model
    with pytest.raises(traced_network.NetworkMismatchError, match="paper/fv"):
        traced_network.network_probabilities(params, model_config(size="paper", variant="fv"), _stack(0))
    assert not traced_dir.exists() or not list(traced_dir.iterdir())


def test_the_predictor_names_the_checkpoint_whose_parameters_do_not_fit(tmp_path, capsys):
    other = tmp_path / "paper"
    shutil.copytree(DEFAULT_CHECKPOINT, other)
    stored = json.loads((other / "model_config.json").read_text())
    stored["model_config"] = {"size": "paper", "variant": "dualfocus"}
    (other / "model_config.json").write_text(json.dumps(stored))
    load_exported_checkpoint(str(other), check_shapes=False)  # the predictor defers the check: this loads
    photos = tmp_path / "photos"
    photos.mkdir()
    from PIL import Image

    for index in range(3):
        Image.fromarray((np.random.default_rng(index).random((32, 32, 3)) * 255).astype(np.uint8)).save(
            photos / f"s{index}.png")
    code = main(["--stack", str(photos), "--out", str(tmp_path / "out"), "--checkpoint", str(other),
                 "--focus_distances", "1,2,3", "--nocompilation_cache"])
    assert code == 2
    error = capsys.readouterr().err
    assert "do not belong to the model its config describes (paper/dualfocus)" in error and str(other) in error
    assert not (tmp_path / "out" / "depth.npy").exists()
