"""What evaluation and training write for people and tools: metrics tables, per-image CSV, PNG panels, the
training metric log, and the non-finite-loss guard's message."""

import csv
import json
import os

import numpy as np
import pytest
from ml_collections import ConfigDict
from PIL import Image

from dualfocus_jax.evaluation.evaluate import EvaluatedExample, EvaluationResult
from dualfocus_jax.evaluation.panels import probe_pixels, save_example_panel
from dualfocus_jax.evaluation.reports import write_evaluation_report
from dualfocus_jax.training.metric_log import MetricLog, read_records
from dualfocus_jax.training.train_step import NonFiniteLossError, raise_if_not_finite


def example(height=24, width=32, slices=5):
    rng = np.random.default_rng(0)
    focus = np.linspace(1.0, 2.0, slices).astype(np.float32)
    gt = rng.uniform(1.0, 2.0, (height, width)).astype(np.float32)
    mask = np.ones((height, width), bool)
    mask[:4] = False
    depth = gt.copy()
    depth[10, 5] += 0.5   # the largest error
    depth[20, 30] += 0.1  # a middling one
    prob = rng.dirichlet(np.ones(slices), size=(height, width)).transpose(2, 0, 1).astype(np.float32)
    return EvaluatedExample("scene_1", rng.uniform(size=(slices, height, width, 3)).astype(np.float32), focus, gt,
                            mask, depth, np.full((height, width), 0.1, np.float32), prob)


def test_probe_pixels_pick_smallest_median_and_largest_error():
    probes = probe_pixels(example())
    assert probes[2] == (10, 5)
    assert probes[0] != (10, 5) and all(row >= 4 for row, _ in probes)  # only scored pixels


def test_evaluation_report_writes_tables_per_image_csv_and_panels(tmp_path):
    rows = {"untrained network": {"rmse": 0.5, "mse": 0.25}, "dualfocus": {"rmse": 0.1, "mse": 0.01}}
    outcome = EvaluationResult(metrics=rows["dualfocus"], per_image={"rmse": np.array([0.1, 0.2]),
                                                                      "mse": np.array([0.01, 0.04])},
                               ids=["a", "b"], examples=[example(), example()])
    evaluation = ConfigDict(dict(dataset="synthetic_focal", split="test", protocol="synthetic_focal"))
    written = write_evaluation_report(str(tmp_path), "test", evaluation, outcome, rows, step=7)
    names = sorted(os.path.basename(p) for p in written)
    assert names == ["metrics.csv", "metrics.json", "metrics.md", "panel_00.png", "panel_01.png", "per_image.csv"]
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["metrics"]["dualfocus"]["rmse"] == 0.1 and report["step"] == 7 and report["num_examples"] == 2
    with open(tmp_path / "metrics.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [r["method"] for r in table] == ["untrained network", "dualfocus"]
    with open(tmp_path / "per_image.csv") as handle:
        per_image = list(csv.DictReader(handle))
    assert [(r["id"], float(r["rmse"])) for r in per_image] == [("a", 0.1), ("b", 0.2)]
    panel = Image.open(tmp_path / "panel_00.png")
    assert panel.size[0] > 4 * panel.size[1]  # one row of eight pictures
    assert np.asarray(panel).std() > 10  # not blank


def test_example_panel_handles_an_example_without_scored_pixels(tmp_path):
    empty = example()
    empty.mask_HW[:] = False
    path = save_example_panel(tmp_path / "empty.png", empty)
    assert os.path.getsize(path) > 1000


def test_metric_log_appends_jsonl_and_csv_across_restarts(tmp_path):
    log = MetricLog(str(tmp_path))
    log.write("train", 1, {"loss_total": 0.5, "lr": 1e-3})
    log.close()
    again = MetricLog(str(tmp_path))  # a resumed run appends to the same files
    again.write("train", 2, {"loss_total": np.float32(0.25), "lr": 1e-3})
    records = read_records(str(tmp_path), "train")
    assert [(r["step"], r["loss_total"]) for r in records] == [(1, 0.5), (2, 0.25)]
    with open(tmp_path / "metrics" / "train.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["loss_total"]) for r in rows] == [0.5, 0.25] and "wall_time" in rows[0]
    with pytest.raises(ValueError, match="metric kind"):
        again.write("train/loss", 3, {})
    MetricLog(str(tmp_path / "other"), enabled=False).write("train", 1, {"x": 1.0})
    assert not os.path.exists(tmp_path / "other")  # processes other than 0 write nothing


def test_non_finite_guard_names_the_step_and_the_intact_checkpoint():
    raise_if_not_finite({"loss_total": 0.3, "grad_norm": 1.0}, 5, 4, "/w/checkpoints")
    with pytest.raises(NonFiniteLossError, match=r"step 6.*loss_total.*last good checkpoint \(step 4\)"):
        raise_if_not_finite({"loss_total": float("nan"), "grad_norm": 1.0}, 6, 4, "/w/checkpoints")
    with pytest.raises(FloatingPointError, match="no checkpoint was written yet"):
        raise_if_not_finite({"grad_norm": float("inf")}, 1, None, "/w/checkpoints")
