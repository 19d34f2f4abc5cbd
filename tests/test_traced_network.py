"""The predictor's stored traced programs and parameters (dualfocus_jax/inference/traced_network.py): stored
once per (model, shape) and per checkpoint, reused without tracing, the shape check or orbax, identical to the
model applied directly, and never trusted when damaged or when the parameters do not fit."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dualfocus_jax.inference import (
    DEFAULT_CHECKPOINT,
    load_exported_checkpoint,
    save_exported_checkpoint,
    traced_network,
)
from dualfocus_jax.model import DualFocusNet, initial_params, model_config
from dualfocus_jax.predict import main

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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
    monkeypatch.setattr(traced_network, "_params_mismatch", lambda *a: pytest.fail("traced again"))
    monkeypatch.setattr(traced_network, "_forward", lambda *a: pytest.fail("traced again"))
    other = _stack(1)
    again = traced_network.network_probabilities(params, config, other)
    np.testing.assert_allclose(np.asarray(again[0]), _reference(params, config, other)[0], atol=1e-5)
    assert sorted(traced_dir.iterdir()) == stored


def test_another_shape_or_config_gets_its_own_program(tiny_model):
    config, params = tiny_model
    text = traced_network._config_text
    keys = {traced_network._program_key(params, text(config), _stack(0)),
            traced_network._program_key(params, text(config), _stack(0, (4, 32, 32, 3))),
            traced_network._program_key(params, text(dataclasses.replace(config, cg_iters=config.cg_iters + 1)),
                                        _stack(0))}
    assert len(keys) == 3
    assert traced_network._program_key(params, text(config), _stack(5)) in keys  # the values do not matter


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


# The parameter store: a repeated prediction reads the checkpoint's parameters from a flat .npz.

@pytest.fixture(scope="module")
def tiny_checkpoint(tiny_model, tmp_path_factory):
    config, params = tiny_model
    return save_exported_checkpoint(str(tmp_path_factory.mktemp("tiny_checkpoint") / "export"), params, config)


def _params_entries(folder):
    return sorted(folder.glob("params-*.npz")) if folder.exists() else []


def test_parameters_are_stored_after_a_run_and_read_back_without_the_checkpoint(traced_dir, tiny_model,
                                                                                tiny_checkpoint, monkeypatch):
    config, params = tiny_model
    images = _stack(3)
    network = traced_network.load_network(tiny_checkpoint)
    assert not network.from_store and network.config == config and network.label == "small/fv"
    assert not _params_entries(traced_dir)  # stored only once they have run through a program
    first = network.probabilities(images)
    (entry,) = _params_entries(traced_dir)

    # A new process: the parameters come from the entry, not from orbax, and nothing is traced.
    monkeypatch.setattr(traced_network, "_in_process", {})
    monkeypatch.setattr(traced_network, "load_exported_checkpoint", lambda *a, **k: pytest.fail("orbax restore"))
    monkeypatch.setattr(traced_network, "_params_mismatch", lambda *a: pytest.fail("traced again"))
    again = traced_network.load_network(tiny_checkpoint)
    assert again.from_store and again.config is None and again.label == "small/fv"
    assert jax.tree.structure(again.params) == jax.tree.structure(network.params)
    for stored, original in zip(jax.tree.leaves(again.params), jax.tree.leaves(network.params)):
        assert stored.dtype == np.float32
        np.testing.assert_array_equal(stored, original)
    second = again.probabilities(images)
    np.testing.assert_array_equal(np.asarray(second[0]), np.asarray(first[0]))
    assert _params_entries(traced_dir) == [entry]


def test_an_edited_checkpoint_gets_its_own_parameter_entry(tiny_checkpoint, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_checkpoint, copy)
    assert traced_network._params_key(str(copy)) == traced_network._params_key(tiny_checkpoint)
    (copy / "model_config.json").write_text((copy / "model_config.json").read_text() + "\n")
    assert traced_network._params_key(str(copy)) != traced_network._params_key(tiny_checkpoint)
    other = tmp_path / "other"
    shutil.copytree(tiny_checkpoint, other)
    largest = max((p for p in (other / "params").rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    largest.write_bytes(largest.read_bytes() + b"\0")  # the parameter data itself
    assert traced_network._params_key(str(other)) != traced_network._params_key(tiny_checkpoint)


def test_a_damaged_parameter_entry_is_ignored_and_replaced(traced_dir, tiny_checkpoint):
    images = _stack(4)
    expected = traced_network.load_network(tiny_checkpoint).probabilities(images)
    (entry,) = _params_entries(traced_dir)
    entry.write_bytes(entry.read_bytes()[:-100])  # cut short: the zip checksums and directory fail
    network = traced_network.load_network(tiny_checkpoint)
    assert not network.from_store
    np.testing.assert_array_equal(np.asarray(network.probabilities(images)[0]), np.asarray(expected[0]))
    assert traced_network._load_params(str(entry)) is not None  # written again, whole


def test_a_parameter_entry_that_does_not_fit_the_config_falls_back_to_the_checkpoint(traced_dir, tiny_model,
                                                                                      tiny_checkpoint):
    config, params = tiny_model
    network = traced_network.load_network(tiny_checkpoint)
    # An entry under this checkpoint's key whose arrays have other shapes (it should never exist).
    wrong = jax.tree.map(lambda a: np.zeros((2,) + np.shape(a), np.float32), params)
    traced_network._store_params(network.stored_key, wrong, network.config_text)
    stored = traced_network.load_network(tiny_checkpoint)
    assert stored.from_store
    images = _stack(6)
    result = stored.probabilities(images)  # the shape check fails, so the checkpoint is loaded and traced
    np.testing.assert_allclose(np.asarray(result[0]), _reference(params, config, images)[0], atol=1e-5)
    replaced = traced_network.load_network(tiny_checkpoint)  # the entry now holds the checkpoint's parameters
    assert replaced.from_store
    for leaf, original in zip(jax.tree.leaves(replaced.params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(leaf, np.asarray(original))


def test_a_repeated_prediction_imports_neither_orbax_nor_flax(tiny_checkpoint, tmp_path):
    """Two predictor processes sharing a cache folder: the second reads the stored parameters and program and
    imports no orbax, Flax, matplotlib or scikit-image."""
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(3):
        Image.fromarray((np.random.default_rng(index).random((32, 48, 3)) * 255).astype(np.uint8)).save(
            photos / f"s{index}.png")
    arguments = ["--stack", str(photos), "--checkpoint", tiny_checkpoint, "--focus_distances", "1,2,3",
                 "--compilation_cache_dir", str(tmp_path / "cache")]
    script = ("import json, sys\nfrom dualfocus_jax.predict import main\n"
              "code = main(json.loads(sys.argv[1]))\n"
              "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'orbax', 'flax', 'matplotlib', 'skimage'})\n"
              "print('HEAVY', json.dumps(heavy))\nsys.exit(code)\n")
    runs = []
    for name in ("first", "second"):
        result = subprocess.run([sys.executable, "-c", script, json.dumps(arguments + ["--out", str(tmp_path / name)])],
                                cwd=REPO, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        runs.append(json.loads(result.stdout.rsplit("HEAVY ", 1)[1]))
    assert "orbax" in runs[0] and "flax" in runs[0]  # the first run restores the checkpoint and traces
    assert runs[1] == [], runs[1]
    np.testing.assert_array_equal(np.load(tmp_path / "first" / "depth.npy"), np.load(tmp_path / "second" / "depth.npy"))
