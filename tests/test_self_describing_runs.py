"""A training workdir describes itself (issue 14, item 1): `--mode=eval --workdir W` needs no `--config`,
`configs/recorded.py:W` is the recorded config with command-line overrides, the export reads the run's model
from the workdir instead of a hard-coded recipe, and the same workdir refuses a resume with another model.

The run is real: `python -m experiments.train` on the tiny array_record dataset of test_train_data with
`configs/demo.py:runlocal` (2 steps) and a model the demo does not build (variant dfv, stem width 8), so an
evaluation that rebuilt the demo's model instead of the recorded one could not restore the checkpoint. The
children share a persistent compilation cache.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dualfocus_jax.training.checkpointing import saved_steps
from test_reliability_training import child_env
from test_train_data import prepare_tiny_focal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the run changes from configs/demo.py:runlocal (both change the parameters' shapes or names).
RUN_MODEL = ["--config.model.variant=dfv", "--config.model.stem_width=8"]


def run(*arguments, timeout=300):
    return subprocess.run([sys.executable, "-m", "experiments.train", *map(str, arguments)], cwd=REPO,
                          env=child_env(), capture_output=True, text=True, timeout=timeout)


def training_command(workdir, data_dir, cache, *extra):
    return ["--config=configs/demo.py:runlocal", f"--workdir={workdir}", "--mode=train",
            f"--config.input.data_dir={data_dir}", "--config.input.prepare_if_missing=False",
            "--config.input.sources.synthetic_focal.dataset=tiny_focal",
            "--config.input.sources.synthetic_focal.split=train", "--config.validation.dataset=",
            "--config.evals.test.dataset=tiny_focal", "--config.evals.test_untrained.enabled=False",
            "--config.train.total_steps=2", "--config.checkpoint.every_steps=2",
            f"--config.compilation_cache_dir={cache}", *RUN_MODEL, *extra]


def one_error(result, status):
    """The error message (from its `error:` line to the end of stderr) of a run that ended with one."""
    output = result.stdout + result.stderr
    assert result.returncode == status, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    return result.stderr[result.stderr.index("error:"):]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(root, data_dir, cache, workdir): a finished 2-step run of a dfv model with stem width 8."""
    root = tmp_path_factory.mktemp("self_describing")
    data_dir = prepare_tiny_focal(root / "tfds")
    cache = root / "jax_cache"
    workdir = root / "run"
    result = run(*training_command(workdir, data_dir, cache))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert saved_steps(str(workdir)) == [2]
    assert not os.path.exists(workdir / "eval")  # --mode=train: no evaluation yet
    return root, data_dir, cache, workdir


def copy_of(trained, name):
    root, _, _, workdir = trained
    shutil.copytree(workdir, root / name)
    return root / name


def report(workdir, name="test"):
    with open(os.path.join(workdir, "eval", name, "metrics.json")) as handle:
        return json.load(handle)


# ---------------------------------------------------------------- the recorded config


def test_recorded_config_reads_back_as_the_config_the_run_started_with(trained):
    from configs import demo
    from configs.recorded import recorded_config
    from dualfocus_jax.training.trainer import model_config_from

    workdir = trained[3]
    config = recorded_config(workdir)
    assert config.model.variant == "dfv" and config.model.stem_width == 8
    assert config.model.cg_iters is None  # unset stays unset (the size/variant default)
    assert config.input.crop_size == (32, 32) and isinstance(config.input.crop_size, tuple)  # JSON lists → tuples
    resolved = model_config_from(config.model)
    with open(workdir / "model.json") as handle:
        assert json.loads(json.dumps(resolved.to_dict())) == json.load(handle)["model_config"]
    # The same keys, in the same order, as the config file builds.
    assert list(config) == list(demo.get_config("runlocal"))
    config.model.cg_iters = 20  # unset fields keep their type: still settable (an int), and typed
    with pytest.raises(TypeError):
        config.model.stem_width = "wide"


def test_recorded_config_errors_are_one_line(tmp_path):
    from configs.recorded import recorded_config

    with pytest.raises(ValueError, match="holds no recorded config") as error:
        recorded_config(tmp_path)
    assert "\n" not in str(error.value)
    (tmp_path / "config.json").write_text('{"model": {"size": "small", "stem_widht": 8}}')
    with pytest.raises(ValueError, match="has no field 'stem_widht'"):
        recorded_config(tmp_path)
    (tmp_path / "config.json").write_text('{"model": ')
    with pytest.raises(ValueError, match="cannot read .*config.json"):
        recorded_config(tmp_path)


# ---------------------------------------------------------------- --mode=eval without --config


def test_eval_mode_without_config_evaluates_with_the_recorded_config(trained):
    workdir = copy_of(trained, "eval_without_config")
    result = run(f"--workdir={workdir}", "--mode=eval")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "training steps" not in result.stdout  # evaluation only
    assert "DualFocus small/dfv" in result.stdout
    metrics = report(workdir)
    assert metrics["step"] == 2 and metrics["num_examples"] == 2  # runlocal's max_examples, from the record
    (row,) = metrics["metrics"]
    assert row == "dualfocus small/dfv (step 2)"
    assert all(np.isfinite(value) for value in metrics["metrics"][row].values())
    assert saved_steps(str(workdir)) == [2]

    # The recorded config as a config file takes overrides; the evaluation sees them.
    result = run("--config=configs/recorded.py:" + str(workdir), f"--workdir={workdir}", "--mode=eval",
                 "--config.evals.test.max_examples=1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert report(workdir)["num_examples"] == 1


@pytest.mark.parametrize("arguments, status, fragments", [
    (["--mode=train"], 2, ["--mode=train needs --config", "only --mode=eval"]),
    ([], 2, ["--mode=train_and_eval needs --config"]),
    (["--mode=eval", "--config.evals.test.max_examples=1"], 2, ["overrides need --config", "configs/recorded.py:W"]),
])
def test_without_config_other_modes_and_overrides_are_one_message(trained, arguments, status, fragments):
    message = one_error(run(f"--workdir={trained[3]}", *arguments), status)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_eval_mode_without_config_in_a_workdir_without_a_record_is_one_message(trained):
    workdir = copy_of(trained, "legacy_eval")
    os.remove(workdir / "config.json")
    message = one_error(run(f"--workdir={workdir}", "--mode=eval"), 1)
    assert "holds no recorded config" in message and "--config" in message
    assert not os.path.exists(workdir / "eval")


# ---------------------------------------------------------------- a resume with another model


def test_resume_with_another_architecture_field_is_refused(trained):
    """The run's stem width (a field the old config.model did not expose) left at the demo's: refused with one
    message before anything is written; the checkpoints stay."""
    root, data_dir, cache, _ = trained
    workdir = copy_of(trained, "other_stem")
    command = [argument for argument in training_command(workdir, data_dir, cache, "--config.train.total_steps=4")
               if argument != "--config.model.stem_width=8"]
    message = one_error(run(*command), 1)
    # Named by the resume check where it compares the resolved model (model.json); else the restore's array
    # comparison refuses it.
    assert "model.stem_width: 8 in the checkpoints, 16 now" in message, message
    assert saved_steps(str(workdir)) == [2]


def test_a_model_field_added_after_the_run_resumes_at_its_default(trained):
    """A run recorded before `expectation` existed (its model.json and config.json lack it) resumes: the field's
    default is what the code of that time did. Setting it to another value is refused (another model)."""
    from configs.recorded import recorded_config
    from dualfocus_jax.training.checkpointing import CheckpointMismatchError
    from dualfocus_jax.training.trainer import check_resume_matches, model_config_from

    workdir = copy_of(trained, "before_expectation")
    for name, key in (("model.json", "model_config"), ("config.json", "model")):
        with open(workdir / name) as handle:
            record = json.load(handle)
        record[key].pop("expectation", None)
        with open(workdir / name, "w") as handle:
            json.dump(record, handle)
    config = recorded_config(workdir)
    check_resume_matches(str(workdir), config, model_config_from(config.model))
    config.model.expectation = "inverse_focus"
    with pytest.raises(CheckpointMismatchError, match="model.expectation"):
        check_resume_matches(str(workdir), config, model_config_from(config.model))


# ---------------------------------------------------------------- the export reads the run's config


def test_export_reads_the_model_from_the_recorded_config(trained, tmp_path):
    from dualfocus_jax.inference import load_exported_checkpoint
    from experiments import evaluate_pretrained

    workdir = copy_of(trained, "export_from_config_json")
    os.remove(workdir / "model.json")  # only the experiment config is left to say what the model is
    out = tmp_path / "export"
    assert evaluate_pretrained.main(["--workdir", str(workdir), "--out", str(out), "--export_only"]) == 0
    _, config = load_exported_checkpoint(str(out))
    assert (config.size, config.variant, config.stem_width) == ("small", "dfv", 8)
    with open(out / "model_config.json") as handle:
        provenance = json.load(handle)["provenance"]
    assert provenance["model_config_from"] == os.path.join(str(workdir), "config.json")
    assert "configs/pretrained_small.py" not in json.dumps(provenance)
    # The evaluation tables it copies are the recorded config's evaluations.
    assert evaluate_pretrained.evaluation_tables(str(workdir), None) == [
        ("test", os.path.join(str(workdir), "eval", "test", "metrics.md"))]


def test_export_of_a_workdir_without_records_needs_its_config(trained, tmp_path, capsys):
    from experiments import evaluate_pretrained

    workdir = copy_of(trained, "export_legacy")
    os.remove(workdir / "config.json")
    os.remove(workdir / "model.json")
    out = tmp_path / "export"
    assert evaluate_pretrained.main(["--workdir", str(workdir), "--out", str(out), "--export_only"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and "records no config" in error and "--config" in error, error
    assert not os.path.exists(out)
    spec = "configs/demo.py:runlocal,variant=dfv"
    model_config, source = evaluate_pretrained.run_model_config(str(workdir), spec)
    assert source == spec and model_config.variant == "dfv" and model_config.stem_width == 16
