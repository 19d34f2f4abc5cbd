"""Evaluators built from config.evals: kinds, reports shared by entries, switching one off, bad kinds named
before anything runs; and evaluation over a mesh of devices giving what one device gives, with the
parameters sent once (a transfer guard forbids implicit host-to-device copies in the loop)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from ml_collections import ConfigDict

from configs.common import eval_split, eval_suite
from dualfocus_jax.evaluation.evaluators import build_evaluators, run_evaluators
from test_train_data import prepare_tiny_focal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def middle_focus_predict(params, stack, focus):
    """Predicts the middle focus position everywhere (+ params["offset"]), p peaked on the middle slice."""
    b, s, h, w, _ = stack.shape
    prob = np.zeros((b, s, h, w), np.float32)
    prob[:, s // 2] = 1.0
    depth = np.broadcast_to(np.asarray(focus)[:, s // 2, None, None] + params["offset"], (b, h, w))
    return {"depth": depth.astype(np.float32), "uncertainty": np.zeros((b, h, w), np.float32), "prob": prob}


def test_eval_suite_names_one_entry_per_kind_sharing_one_report():
    entries = eval_suite("test", "tiny_focal", "test", "synthetic_focal", kinds=("untrained_network", "network"))
    assert list(entries) == ["test_untrained", "test"]
    evaluators = build_evaluators(ConfigDict(entries))
    # Rows in the order of the literature's tables: untrained, trained, baseline (config keys are sorted).
    assert [(e.name, e.kind, e.report) for e in evaluators] == [
        ("test_untrained", "untrained_network", "test"), ("test", "network", "test")]


def test_a_disabled_entry_is_skipped_and_a_bad_kind_or_protocol_is_named():
    evals = ConfigDict(eval_suite("test", "tiny_focal", "test", "synthetic_focal", kinds=("network", "classical")))
    evals.test_classical.enabled = False
    assert [e.name for e in build_evaluators(evals)] == ["test"]
    evals.test.kind = "oracle"
    with pytest.raises(ValueError, match=r"config.evals.test.kind='oracle'"):
        build_evaluators(evals)
    with pytest.raises(ValueError, match="unknown evaluation protocol 'nyu'"):
        build_evaluators(ConfigDict({"x": eval_split("tiny_focal", "test", "nyu")}))


def test_run_evaluators_gathers_rows_by_report_and_keeps_the_network_outcome(tmp_path):
    data_dir = prepare_tiny_focal(tmp_path / "tfds")
    evals = ConfigDict(eval_suite("test", "tiny_focal", "test", "synthetic_focal", num_panels=1,
                                  kinds=("untrained_network", "network")))
    evals.other = eval_split("tiny_focal", "validation", "synthetic_focal", num_panels=0)
    asked_untrained = []

    def untrained():
        asked_untrained.append(1)
        return {"offset": np.float32(0.25)}

    messages = []
    model_config = ConfigDict(dict(size="small", variant="dualfocus"))
    reports = run_evaluators(build_evaluators(evals), step=7, say=messages.append,
                             params={"offset": np.float32(0.0)}, untrained_params=untrained,
                             model_config=model_config, data_dir=data_dir, predict=middle_focus_predict)
    assert list(reports) == ["other", "test"] and len(asked_untrained) == 1
    rows = reports["test"].rows
    assert list(rows) == ["untrained network", "dualfocus small/dualfocus (step 7)"]
    # The untrained "network" predicts 0.25 m further everywhere: a larger error than the trained one.
    assert rows["untrained network"]["mae"] > rows["dualfocus small/dualfocus (step 7)"]["mae"]
    assert reports["test"].outcome_kind == "network" and len(reports["test"].outcome.examples) == 1
    assert reports["test"].outcome.metrics == rows["dualfocus small/dualfocus (step 7)"]
    assert reports["other"].outcome.ids == ["validation_0", "validation_1"]
    assert any("== eval test: untrained network" in m for m in messages)


SHARDED_CHECK = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np, json, sys
    sys.path.insert(0, "tests")
    from ml_collections import ConfigDict
    from dualfocus_jax.evaluation.evaluate import ShardedPrediction, evaluate_model
    from dualfocus_jax.evaluation.protocols import PROTOCOLS
    from dualfocus_jax.training.mesh import data_parallel_mesh
    from test_eval_protocols import record

    def predict(params, stack, focus):
        b, s, h, w, _ = stack.shape
        weights = jax.nn.softmax(jnp.mean(stack, axis=-1) * params["gain"], axis=1)
        depth = jnp.einsum("bshw,bs->bhw", weights, focus)
        return {"depth": depth, "uncertainty": jnp.zeros_like(depth), "prob": weights}

    records = [record(seed=s, name=f"r{s}") for s in range(5)]
    config = ConfigDict(dict(num_slices=5, batch_size=3, max_examples=0, depth_scale=1.0))
    params = {"gain": np.float32(3.0)}
    mesh = data_parallel_mesh()
    single = evaluate_model(params, None, records, config, PROTOCOLS["synthetic_focal"], predict=jax.jit(predict))

    class Guarded(ShardedPrediction):
        # Inside a prediction only the batch is sent, explicitly: host parameters would be an implicit copy.
        def __call__(self, params, stack, focus):
            with jax.transfer_guard_host_to_device("disallow"):
                return super().__call__(params, stack, focus)

    guarded = Guarded(predict, mesh)
    sharded = evaluate_model(params, None, records, config, PROTOCOLS["synthetic_focal"], predict=guarded)
    try:
        guarded(params, np.zeros((4, 5, 6, 8, 3), np.float32), np.zeros((4, 5), np.float32))
        resent = "no error"
    except Exception as error:  # the guard's error: host parameters are caught
        resent = type(error).__name__
    print(json.dumps({"devices": mesh.devices.size, "single": single.metrics, "sharded": sharded.metrics,
                      "ids": sharded.ids, "host_params_in_a_call": resent}))
""")


def test_evaluation_over_four_devices_matches_one_device_without_resending_parameters():
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4")
    result = subprocess.run([sys.executable, "-c", SHARDED_CHECK], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = __import__("json").loads(result.stdout.strip().splitlines()[-1])
    assert report["devices"] == 4 and report["ids"] == [f"r{s}" for s in range(5)]  # batch 3 padded to 4
    assert report["host_params_in_a_call"] != "no error"  # so the evaluation above placed them once, beforehand
    for name, value in report["single"].items():
        assert report["sharded"][name] == pytest.approx(value, rel=1e-5, abs=1e-7), name
