"""The demo end to end on a downscaled motorcycle: files written, metrics sane, refinement helps."""

import json
import os

import numpy as np
from PIL import Image

from dualfocus_jax.focal_stack import load_focal_stack
from experiments.classical_demo import run_classical_demo


def test_demo_writes_pictures_and_metrics(tmp_path):
    report = run_classical_demo(str(tmp_path), num_slices=5, render_mode="layered", downscale=4)
    for name in ("summary.png", "depth.png", "uncertainty.png", "aif.png", "stack.png",
                 "metrics.json", "metrics.csv", "metrics.md", "depth.npy", "uncertainty.npy"):
        assert os.path.getsize(tmp_path / name) > 0, name
    depth = np.load(tmp_path / "depth.npy")
    assert depth.shape == (125, 186) and depth.dtype == np.float32 and np.isfinite(depth).all()
    with Image.open(tmp_path / "summary.png") as summary:
        assert summary.size[0] > 1000
    saved_json = json.load(open(tmp_path / "metrics.json"))
    saved, saved_focus = saved_json["metrics"], np.asarray(saved_json["focus_positions_m"])
    raw, refined = saved["classical argmax"], saved["classical + variational refinement"]
    assert set(raw) >= {"mse", "rmse", "abs_rel", "delta1", "bump"}
    # depth range 2.1-5.0 m: the classical baseline must be far better than guessing the middle
    assert refined["rmse"] < 0.6 and refined["delta1"] > 0.85
    assert refined["rmse"] < raw["rmse"]
    assert report.metrics == saved
    assert "| classical argmax |" in report.metrics_markdown
    # the sample stack the prediction command reads at the end of `make demo`
    sample = load_focal_stack(tmp_path / "focal_stack")
    assert sample.num_slices == 5 and (sample.height, sample.width) == (125, 186)
    np.testing.assert_allclose(sample.focus_positions[[0, -1]], saved_focus[[0, -1]], atol=1e-4)
