"""Exporting a training workdir never touches the shipped model unless asked (issue 13, item 2).

`experiments/evaluate_pretrained.py` used to export any --workdir into dualfocus_jax/pretrained/small_synthetic/
and rewrite experiments/results/pretrained_small.md, and the predictor suggested exactly that command for a
training workdir. The workdir here is a real one (the trainer's checkpoint layout and recorded config) holding
the initial state of the demo's small model, so no training is needed.
"""

import dataclasses
import hashlib
import os
import re
import shlex

import jax
import numpy as np
import pytest

from configs import demo
from dualfocus_jax.inference import DEFAULT_CHECKPOINT, load_exported_checkpoint
from dualfocus_jax.inference.checkpoint_io import CheckpointError, read_checkpoint_config
from dualfocus_jax.training.checkpointing import Checkpoints, restore_params
from dualfocus_jax.training.train_state import initial_train_state, make_optimizer
from dualfocus_jax.training.trainer import model_config_from, write_run_config
from experiments import evaluate_pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED_RESULTS = os.path.join(REPO, evaluate_pretrained.RESULTS)


class FixedPosition:
    def get_state(self):
        return {"position": 3}


def fingerprint(*paths) -> str:
    """A hash over every file (name and bytes) under the given files and folders."""
    digest = hashlib.sha256()
    for path in paths:
        files = [path] if os.path.isfile(path) else sorted(
            os.path.join(root, name) for root, _, names in os.walk(path) for name in names)
        for name in files:
            digest.update(name.encode())
            with open(name, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export") / "run"
    config = demo.get_config("runlocal")
    config.model.variant = "dfv"  # not the shipped model's variant: an export must carry the run's own config
    model_config = model_config_from(config.model)
    os.makedirs(folder)
    write_run_config(str(folder), config, model_config)
    state = initial_train_state(model_config, make_optimizer(config.optimizer, 4), jax.random.key(3))
    with Checkpoints(str(folder), config.checkpoint) as checkpoints:
        assert checkpoints.save(2, state, FixedPosition(), force=True)
    return folder


@pytest.fixture
def shipped_untouched():
    before = fingerprint(DEFAULT_CHECKPOINT, SHIPPED_RESULTS)
    yield
    assert fingerprint(DEFAULT_CHECKPOINT, SHIPPED_RESULTS) == before, "the shipped model or its results changed"


def test_without_a_destination_it_refuses_before_any_work(workdir, shipped_untouched, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_pretrained.main(["--workdir", str(workdir)])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "--out FOLDER" in error and "--replace_shipped" in error


def test_export_goes_to_the_named_folder_with_the_runs_config(workdir, tmp_path, shipped_untouched):
    out = tmp_path / "my_export"
    assert evaluate_pretrained.main(["--workdir", str(workdir), "--out", str(out), "--export_only"]) == 0
    params, config = load_exported_checkpoint(str(out))
    assert config.variant == "dfv" and config.size == "small"
    expected, step = restore_params(str(workdir))
    assert step == 2
    for (path, leaf), (_, want) in zip(jax.tree_util.tree_leaves_with_path(params),
                                       jax.tree_util.tree_leaves_with_path(expected), strict=True):
        np.testing.assert_array_equal(leaf, want, err_msg=jax.tree_util.keystr(path))
    assert sorted(os.listdir(tmp_path)) == ["my_export"]  # no staging folder left beside it
    assert config.cost_upsampling == "bilinear"  # the run's own
    # Exporting again replaces the earlier export in place; --cost_upsampling changes only that setting.
    assert evaluate_pretrained.main(["--workdir", str(workdir), "--out", str(out), "--export_only",
                                     "--cost_upsampling", "joint_bilateral"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["my_export"]
    guided_params, guided = load_exported_checkpoint(str(out))
    assert guided == dataclasses.replace(config, cost_upsampling="joint_bilateral")
    assert jax.tree.all(jax.tree.map(np.array_equal, guided_params, params))


@pytest.mark.parametrize("target", ["shipped", "inside_shipped", "busy_folder", "a_file"])
def test_destinations_that_would_lose_something_are_refused(workdir, tmp_path, target, shipped_untouched, capsys):
    if target == "shipped":
        out = DEFAULT_CHECKPOINT
    elif target == "inside_shipped":
        out = os.path.join(DEFAULT_CHECKPOINT, "params")
    elif target == "busy_folder":
        out = tmp_path / "photos"
        os.makedirs(out)
        (out / "holiday.jpg").write_bytes(b"not a checkpoint")
    else:
        out = tmp_path / "notes.txt"
        out.write_text("keep me")
    before = fingerprint(str(out))
    assert evaluate_pretrained.main(["--workdir", str(workdir), "--out", str(out), "--export_only"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and len(error.strip().splitlines()) == 1, error
    assert fingerprint(str(out)) == before


def test_workdir_without_checkpoints_is_one_message(tmp_path, capsys):
    assert evaluate_pretrained.main(["--workdir", str(tmp_path), "--out", str(tmp_path / "o"), "--export_only"]) == 1
    assert "no checkpoint in" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_the_predictors_hint_for_a_workdir_is_a_safe_command_that_works(workdir, shipped_untouched):
    with pytest.raises(CheckpointError, match="training workdir") as error_info:
        read_checkpoint_config(str(workdir))
    command = re.search(r"`(python -m experiments\.evaluate_pretrained [^`]+)`", str(error_info.value)).group(1)
    assert "--replace_shipped" not in command and "--out" in command
    arguments = shlex.split(command)[3:]
    assert evaluate_pretrained.main(arguments) == 0
    exported = os.path.join(str(workdir), "export")
    assert f"--checkpoint {exported}" in str(error_info.value)
    assert read_checkpoint_config(exported).variant == "dfv"
