"""The training loop reads nothing back from the devices between the steps that need metrics (issue 15 item 2),
yet every update's metrics and state are checked before a checkpoint can hold it (issue 13 item 1).

Runs the real loop in this process on the tiny array_record dataset of test_train_data with
`configs/demo.py:runlocal`, counting the loop's device-to-host fetches.
"""

import os

import pytest

from test_train_data import prepare_tiny_focal


def tiny_run_config(data_dir, total_steps, log_every, save_every):
    # Both tests build the same update step: the shared persistent cache compiles it once.
    from configs import demo

    config = demo.get_config("runlocal")
    config.input.data_dir = str(data_dir)
    config.input.prepare_if_missing = False
    config.input.sources.synthetic_focal.dataset = "tiny_focal"
    config.input.sources.synthetic_focal.split = "train"
    config.validation.dataset = ""
    config.evals = type(config.evals)()
    config.train.total_steps = total_steps
    config.train.log_every_steps = log_every
    config.checkpoint.every_steps = save_every
    config.compilation_cache_dir = os.path.join(os.path.dirname(str(data_dir)), "jax_cache")
    return config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return prepare_tiny_focal(tmp_path_factory.mktemp("transfers") / "tfds")


def counting_fetch(monkeypatch):
    from dualfocus_jax.training import trainer

    calls: list[list[int]] = []
    real = trainer.fetch_metrics

    def fetch(pending):
        calls.append([step for step, _ in pending])
        return real(pending)

    monkeypatch.setattr(trainer, "fetch_metrics", fetch)
    return calls


def test_metrics_are_fetched_only_at_log_and_save_steps_and_every_update_is_checked(data_dir, tmp_path, monkeypatch):
    from dualfocus_jax.training.trainer import train_and_evaluate

    calls = counting_fetch(monkeypatch)
    config = tiny_run_config(data_dir, total_steps=7, log_every=3, save_every=5)
    result = train_and_evaluate(config, str(tmp_path / "run"), mode="train")
    assert result["step"] == 7
    # Log steps 3, 6 and the last (7); save steps 5 and 7: one fetch at 3, 5, 6, 7, each holding every
    # update since the previous one, so each of the 7 updates was read exactly once.
    assert calls == [[1, 2, 3], [4, 5], [6], [7]]


def test_a_divergence_between_log_steps_is_caught_before_the_save(data_dir, tmp_path, monkeypatch):
    import math

    from dualfocus_jax.training import trainer
    from dualfocus_jax.training.checkpointing import saved_steps
    from dualfocus_jax.training.train_step import NonFiniteLossError

    real = trainer.fetch_metrics

    def poisoned(pending):  # update 3 "diverges": its guard values say its parameters are not finite
        fetched = real(pending)
        return [(step, dict(values, param_abs_max=math.nan) if step == 3 else values) for step, values in fetched]

    monkeypatch.setattr(trainer, "fetch_metrics", poisoned)
    config = tiny_run_config(data_dir, total_steps=6, log_every=100, save_every=2)
    workdir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"step 3\b.*last good checkpoint \(step 2\)"):
        trainer.train_and_evaluate(config, str(workdir), mode="train")
    assert saved_steps(str(workdir)) == [2]
