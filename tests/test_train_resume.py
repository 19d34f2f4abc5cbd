"""A training run killed with SIGKILL and started again ends with the same parameters as an uninterrupted run,
the checkpoint directory keeps the latest and the best-by-validation checkpoints, and --mode=eval reports
the latest checkpoint.

Runs the real launcher (`python -m experiments.train`) in child processes on the tiny array_record dataset
of test_train_data, with `configs/demo.py:runlocal` (small model, 32×32 crops, 3 slices, batch 2) and
command-line overrides; the children share a persistent compilation cache, so only the first compiles.
"""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from test_train_data import prepare_tiny_focal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOTAL_STEPS = 24
EVERY = 8


def launcher_command(workdir, data_dir, cache_dir, *extra):
    return [sys.executable, "-m", "experiments.train", "--config=configs/demo.py:runlocal", f"--workdir={workdir}",
            "--mode=train",
            f"--config.input.data_dir={data_dir}", "--config.input.prepare_if_missing=False",
            "--config.input.sources.synthetic_focal.dataset=tiny_focal",
            "--config.input.sources.synthetic_focal.split=train",
            "--config.validation.dataset=tiny_focal", "--config.validation.split=validation",
            f"--config.train.total_steps={TOTAL_STEPS}", f"--config.train.validate_every_steps={EVERY}",
            f"--config.checkpoint.every_steps={EVERY}", "--config.checkpoint.keep_latest=1",
            "--config.checkpoint.keep_best=1", f"--config.compilation_cache_dir={cache_dir}", *extra]


def child_env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    return env


def run_to_completion(command):
    result = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def checkpoint_steps(workdir):
    folder = os.path.join(workdir, "checkpoints")
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit()) if os.path.isdir(folder) else []


def train_records(workdir):
    with open(os.path.join(workdir, "metrics", "train.jsonl")) as handle:
        return [json.loads(line) for line in handle]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    data_dir = prepare_tiny_focal(root / "tfds")
    cache = root / "jax_cache"
    reference, interrupted = root / "reference", root / "interrupted"
    run_to_completion(launcher_command(reference, data_dir, cache))

    # Start the second run and kill it hard at the first step it reports after its first checkpoint is
    # committed (orbax renames the folder to its bare step number when the asynchronous save is complete).
    process = subprocess.Popen(launcher_command(interrupted, data_dir, cache), cwd=REPO, env=child_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("step ") and checkpoint_steps(interrupted):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    steps_after_kill = checkpoint_steps(interrupted)
    resumed_output = run_to_completion(launcher_command(interrupted, data_dir, cache))
    return reference, interrupted, steps_after_kill, resumed_output


def test_killed_run_resumes_and_matches_the_uninterrupted_run(runs):
    from dualfocus_jax.training.checkpointing import restore_params

    reference, interrupted, steps_after_kill, resumed_output = runs
    assert max(steps_after_kill, default=0) < TOTAL_STEPS  # it really was killed mid-training
    assert "resumed from checkpoint at step" in resumed_output
    resumed_from = int(resumed_output.split("resumed from checkpoint at step ")[1].split()[0])
    assert resumed_from in (EVERY, 2 * EVERY)
    params_reference, step_reference = restore_params(str(reference))
    params_resumed, step_resumed = restore_params(str(interrupted))
    assert step_reference == step_resumed == TOTAL_STEPS
    leaves_reference = dict(_flat(params_reference))
    leaves_resumed = dict(_flat(params_resumed))
    assert leaves_reference.keys() == leaves_resumed.keys() and len(leaves_reference) > 10
    for name, value in leaves_reference.items():
        np.testing.assert_array_equal(leaves_resumed[name], value, err_msg=name)
    # The losses of the steps after the restart match the reference's, step by step.
    reference_losses = {r["step"]: r["loss_total"] for r in train_records(reference)}
    resumed_losses = {r["step"]: r["loss_total"] for r in train_records(interrupted)}
    for step in range(resumed_from + 1, TOTAL_STEPS + 1):
        assert resumed_losses[step] == reference_losses[step]


def test_keeps_the_latest_and_the_best_validated_checkpoint(runs):
    reference = runs[0]
    with open(os.path.join(reference, "metrics", "validation.jsonl")) as handle:
        validation = {r["step"]: r["rmse"] for r in map(json.loads, handle)}
    assert sorted(validation) == [EVERY, 2 * EVERY, 3 * EVERY]
    best = min(validation, key=validation.get)
    assert checkpoint_steps(reference) == sorted({TOTAL_STEPS, best})


def _flat(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flat(value, f"{prefix}/{key}")
    else:
        yield prefix, np.asarray(tree)


def test_eval_mode_reports_the_latest_checkpoint_beside_the_untrained_network(runs):
    reference = runs[0]
    data_dir = os.path.join(os.path.dirname(reference), "tfds")
    cache = os.path.join(os.path.dirname(reference), "jax_cache")
    output = run_to_completion(launcher_command(reference, data_dir, cache, "--mode=eval",
                                                "--config.evals.test.dataset=tiny_focal",
                                                "--config.evals.test_untrained.dataset=tiny_focal"))
    assert "training steps" not in output  # evaluation only
    with open(os.path.join(reference, "eval", "test", "metrics.json")) as handle:
        report = json.load(handle)
    rows = report["metrics"]
    assert report["step"] == TOTAL_STEPS and report["num_examples"] == 2
    assert set(rows) == {"untrained network", f"dualfocus small/dualfocus (step {TOTAL_STEPS})"}
    assert all(np.isfinite(v) for row in rows.values() for v in row.values())
    assert os.path.getsize(os.path.join(reference, "eval", "test", "panel_00.png")) > 1000


def test_eval_mode_without_a_checkpoint_fails_before_any_work(tmp_path):
    from configs import demo
    from dualfocus_jax.training.trainer import train_and_evaluate

    with pytest.raises(ValueError, match="needs a checkpoint"):
        train_and_evaluate(demo.get_config("runlocal"), str(tmp_path / "empty"), mode="eval")
    # The entry point's data preparation runs only once the config and workdir passed the checks.
    with pytest.raises(ValueError, match="needs a checkpoint"):
        train_and_evaluate(demo.get_config("runlocal"), str(tmp_path / "empty"), mode="eval",
                           prepare_data=lambda: pytest.fail("data prepared before the checks"))
