"""The ablation's scoring and tables: region scores against a direct NumPy computation, statistics over seeds,
and the command's argument checks (training itself is covered by the trainer's tests)."""

import csv

import numpy as np
import pytest

from experiments.ablation import parse_args, train_command
from experiments.ablation_report import METRICS, summary_statistics, summary_table, write_csv
from experiments.ablation_runs import Run
from experiments.ablation_scoring import REGIONS, EvalSet, region_scores


def tiny_set(seed=0):
    rng = np.random.default_rng(seed)
    n, h, w = 3, 8, 10
    depth = rng.uniform(1.0, 2.0, (n, h, w)).astype(np.float32)
    masks = {"all": np.ones((n, h, w), bool), "depth_edges": rng.random((n, h, w)) < 0.3,
             "fine_texture": rng.random((n, h, w)) < 0.3}
    masks["depth_edges"][2] = False  # an image without edge pixels must not count for that region
    return EvalSet("tiny", np.zeros((n, 2, h, w, 3), np.float32), np.tile([1.0, 2.0], (n, 1)), depth,
                   np.zeros((n, h, w, 3), np.float32), masks)


def test_region_scores_match_a_direct_numpy_computation():
    eval_set = tiny_set()
    rng = np.random.default_rng(1)
    prediction = eval_set.depth + rng.normal(0, 0.1, eval_set.depth.shape).astype(np.float32)
    sigma = rng.uniform(0, 0.2, eval_set.depth.shape).astype(np.float32)
    scores = region_scores(prediction, sigma, eval_set)
    for region in REGIONS:
        mask = eval_set.masks[region]
        has = [i for i in range(len(mask)) if mask[i].any()]
        rmse = np.mean([np.sqrt(np.mean((prediction[i][mask[i]] - eval_set.depth[i][mask[i]]) ** 2)) for i in has])
        abs_rel = np.mean([np.mean(np.abs(prediction[i][mask[i]] - eval_set.depth[i][mask[i]])
                                   / eval_set.depth[i][mask[i]]) for i in has])
        unc = np.mean([sigma[i][mask[i]].mean() for i in has])
        assert scores[region]["rmse"] == pytest.approx(rmse, rel=1e-5)
        assert scores[region]["abs_rel"] == pytest.approx(abs_rel, rel=1e-5)
        assert scores[region]["avg_unc"] == pytest.approx(unc, rel=1e-5)
        assert scores[region]["pixels"] == mask.sum()
        assert set(METRICS) <= set(scores[region])


def test_summary_statistics_use_the_sample_spread_and_skip_nan():
    mean, std, n = summary_statistics([1.0, 2.0, 4.0, float("nan")])
    assert (mean, n) == (pytest.approx(7 / 3), 3)
    assert std == pytest.approx(np.std([1.0, 2.0, 4.0], ddof=1))
    assert summary_statistics([float("nan")])[2] == 0


def fake_collected():
    def run(rmse):
        return {"s": {region: {m: rmse for m in METRICS} | {"pixels": 10.0} for region in REGIONS}}
    return {"dualfocus": [run(0.8), run(1.0)], "dfv": [run(1.0), run(1.0)], "classical_refined": [run(2.0)]}


def test_summary_table_reports_the_change_against_dfv(tmp_path):
    lines = summary_table(fake_collected(), ["s"])
    dualfocus_row = next(line for line in lines if line.startswith("| DualFocus"))
    assert "0.9000 ± 0.1414 (-10%)" in dualfocus_row
    classical_row = next(line for line in lines if line.startswith("| classical"))
    assert "%" not in classical_row
    path = tmp_path / "ablation.csv"
    write_csv(str(path), fake_collected(), ["s"])
    rows = list(csv.DictReader(open(path)))
    assert len(rows) == 3 * len(REGIONS) * len(METRICS)
    first = next(r for r in rows if r["method"] == "dualfocus" and r["metric"] == "rmse")
    assert float(first["mean"]) == pytest.approx(0.9) and first["per_seed"] == "0.8 1"


def test_arguments_are_checked_and_runs_differ_only_in_variant_and_seed():
    with pytest.raises(SystemExit):
        parse_args(["--variants=dualfocus,nope"])
    with pytest.raises(SystemExit):
        parse_args(["--seeds=a"])
    args = parse_args(["--recipe=synthetic", "--steps=10", "--seeds=0,1"])
    assert args.seeds == [0, 1] and len(args.variants) == 5 and args.workdir == "runs/ablation"
    a = train_command(Run("dualfocus", 0, 10, "w/dualfocus_seed0"), "synthetic")
    b = train_command(Run("dfv", 1, 10, "w/dfv_seed1"), "synthetic")
    assert "--config=configs/demo.py:variant=dfv" in b and "--config.train.total_steps=10" in b
    differing = {x for x, y in zip(a, b) if x != y} | {y for x, y in zip(a, b) if x != y}
    assert all("variant=" in item or "seed" in item for item in differing)
