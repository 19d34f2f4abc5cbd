"""Data parallelism gives the same training as one device: 4 fake CPU devices in one process, and two real
processes on localhost (jax.distributed with gloo collectives), each against one process on one device
with the same global batch.

Every run is the real launcher in a child process (XLA_FLAGS must be set before JAX starts), on the tiny
array_record dataset of test_train_data with `configs/demo.py:runlocal` (small model, 32×32 crops,
3 slices, global batch 4, 3 steps) and the DFV variant: sharding acts on the batch axis only, and the DFV
variant compiles in half the time of the full DualFocus one (the resume and config tests cover that one).
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from test_train_data import prepare_tiny_focal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 3
LOSSES = ("loss_total", "loss_depth", "loss_focal", "grad_norm")  # dfv has no spatial branch


def launcher_command(workdir, data_dir, *extra):
    return [sys.executable, "-m", "experiments.train", "--config=configs/demo.py:runlocal", f"--workdir={workdir}",
            "--mode=train", f"--config.input.data_dir={data_dir}",
            "--config.input.sources.synthetic_focal.dataset=tiny_focal",
            "--config.input.sources.synthetic_focal.split=train", "--config.validation.dataset=",
            "--config.input.batch_size=4", "--config.model.variant=dfv", f"--config.train.total_steps={STEPS}",
            f"--config.checkpoint.every_steps={STEPS}", *extra]


def child_env(devices: int = 1):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def finished(process, timeout=300):
    stdout, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stdout[-3000:] + stderr[-3000:]
    return stdout


def train_losses(workdir):
    with open(os.path.join(workdir, "metrics", "train.jsonl")) as handle:
        records = [json.loads(line) for line in handle]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    return {name: np.array([r[name] for r in records]) for name in LOSSES}


def free_port():
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    data_dir = prepare_tiny_focal(root / "tfds")
    popen = dict(cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The single-device reference and the 4-device run share the 2 cores; then the two processes.
    single = subprocess.Popen(launcher_command(root / "single", data_dir), env=child_env(1), **popen)
    four = subprocess.Popen(launcher_command(root / "four", data_dir), env=child_env(4), **popen)
    outputs = {"single": finished(single), "four": finished(four)}
    address = f"localhost:{free_port()}"
    pair = [subprocess.Popen(launcher_command(root / "two", data_dir, f"--coordinator_address={address}",
                                              "--num_processes=2", f"--process_id={index}"),
                             env=child_env(1), **popen) for index in range(2)]
    outputs["two"] = finished(pair[0])
    finished(pair[1])
    return root, outputs


def assert_same_losses(actual, expected):
    """Every logged loss of a run equals the single-process run's, step by step."""
    for name in LOSSES:
        np.testing.assert_allclose(actual[name], expected[name], rtol=2e-4, atol=1e-6, err_msg=name)


def test_four_devices_match_one_device(runs):
    root, outputs = runs
    assert "4 devices {'data': 4} over 1 process(es)" in outputs["four"]
    single, four = train_losses(root / "single"), train_losses(root / "four")
    assert_same_losses(four, single)
    assert not np.allclose(single["loss_total"][0], single["loss_total"][1:])  # the steps really differ


def test_two_processes_match_one_process(runs):
    root, outputs = runs
    assert "2 devices {'data': 2} over 2 process(es)" in outputs["two"]
    single, two = train_losses(root / "single"), train_losses(root / "two")
    assert_same_losses(two, single)
    from dualfocus_jax.training.checkpointing import restore_params

    params_two, step_two = restore_params(str(root / "two"))
    params_single, _ = restore_params(str(root / "single"))
    assert step_two == STEPS
    import jax

    for a, b in zip(jax.tree.leaves(params_two), jax.tree.leaves(params_single)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-5)
