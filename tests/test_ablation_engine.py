"""The engine recipe of the ablation (experiments/ablation.py, ablation_engine.py, ablation_mechanism.py): the
training commands of both recipes, the learning-curve runs and its gap table and budget rule from fake scores,
the per-seed rows and their mean ± spread from fake records, the reuse of a curve run, and the mechanism
picture from a tiny untrained model. Training and the network's scoring path are tested elsewhere (the trainer's
tests, tests/test_evaluate_generalisation.py); the smoke command in experiments/ablation.py runs them together."""

import csv
import json
import os
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from PIL import Image

from dualfocus_jax.model import initial_params, model_config
from experiments import ablation
from experiments import ablation_engine as engine
from experiments import ablation_mechanism as mechanism
from experiments.ablation_runs import Run, curve_runs, run_dir, sweep_runs


def flag_value(command, name):
    return next(item.split("=", 1)[1] for item in command if item.startswith(f"--{name}="))


def test_engine_is_the_default_recipe_and_its_runs_differ_only_in_variant_and_seed():
    args = ablation.parse_args(["--steps=1000", "--seeds=0,2", "--variants=dualfocus,dfv"])
    assert (args.recipe, args.workdir, args.results) == ("engine", "runs/ablation_engine",
                                                         "experiments/results/ablation_engine")
    runs = sweep_runs(args.variants, args.seeds, args.steps, args.workdir)
    assert [(r.name, r.seed) for r in runs] == [("dualfocus", 0), ("dfv", 0), ("dualfocus", 2), ("dfv", 2)]
    assert runs[-1].directory == os.path.join("runs", "ablation_engine", "dfv_seed2")
    first, last = (ablation.train_command(run) for run in (runs[0], runs[-1]))
    assert flag_value(last, "config") == "configs/engine_small.py:variant=dfv,steps=1000"
    assert flag_value(last, "config.seed") == "2" and flag_value(last, "workdir") == runs[-1].directory
    assert flag_value(last, "mode") == "train" and flag_value(last, "config.checkpoint.every_steps") == "250"
    assert flag_value(last, "config.compilation_cache_dir") == os.path.join("runs", "ablation_engine",
                                                                             "compilation_cache")
    differing = {x for x, y in zip(first, last) if x != y} | {y for x, y in zip(first, last) if x != y}
    assert len(first) == len(last) and all("variant=" in item or "seed" in item for item in differing)
    # The budget is the config argument's; --quick adds runlocal and keeps the budget.
    quick = ablation.train_command(Run("no_focal", 0, 4, "w"), "engine", quick=True)
    assert flag_value(quick, "config") == "configs/engine_small.py:variant=no_focal,steps=4,runlocal"
    assert flag_value(quick, "config.train.total_steps") == "4"
    # A sensitivity run is the full model with its override.
    stride = ablation.train_command(Run("dualfocus-stride8", 1, 3000, "w"))
    assert "variant=dualfocus," in flag_value(stride, "config") and "--config.model.solver_stride=8" in stride
    assert flag_value(stride, "config.checkpoint.every_steps") == "500"


def test_synthetic_recipe_keeps_the_published_commands_and_refuses_engine_phases():
    args = ablation.parse_args(["--recipe=synthetic"])
    assert (args.steps, args.workdir, args.results) == (1200, "runs/ablation", "experiments/results")
    command = ablation.train_command(Run("fv", 1, 1200, run_dir(args.workdir, "fv", 1)), "synthetic")
    assert flag_value(command, "config") == "configs/demo.py:variant=fv"
    assert flag_value(command, "config.train.total_steps") == "1200"
    assert flag_value(command, "config.checkpoint.every_steps") == "300"
    with pytest.raises(SystemExit):
        ablation.parse_args(["--recipe=synthetic", "--phase=curve"])
    with pytest.raises(SystemExit):
        ablation.parse_args(["--curve_steps=100,x"])


def test_curve_phase_runs_one_seed_per_budget_each_its_own_run():
    args = ablation.parse_args(["--phase=curve", "--seeds=3,4", "--curve_steps=3000,1000"])
    assert args.curve_steps == [1000, 3000]
    runs = curve_runs(args.curve_steps, args.seeds[0], args.workdir)
    assert [(r.name, r.steps, r.seed) for r in runs] == [("dualfocus", 1000, 3), ("dfv", 1000, 3),
                                                          ("dualfocus", 3000, 3), ("dfv", 3000, 3)]
    assert runs[2].directory == os.path.join("runs", "ablation_engine", "curve", "dualfocus_steps3000")
    commands = [ablation.train_command(run) for run in runs]
    assert [flag_value(c, "config") for c in commands[::2]] == [
        "configs/engine_small.py:variant=dualfocus,steps=1000", "configs/engine_small.py:variant=dualfocus,steps=3000"]


def test_a_sweep_run_with_a_curve_runs_command_is_copied_not_trained(tmp_path, monkeypatch):
    workdir = str(tmp_path)
    curve = curve_runs([20], 0, workdir, names=("dfv",))[0]
    sweep = sweep_runs(["dfv"], [0], 20, workdir)[0]
    os.makedirs(os.path.join(curve.directory, "checkpoints", "20"))
    with open(os.path.join(curve.directory, ablation.COMMAND_FILE), "w") as handle:
        json.dump({"arguments": ablation.recorded_arguments(ablation.train_command(curve))}, handle)
    monkeypatch.setattr(ablation.subprocess, "call", lambda *a, **k: pytest.fail("trained instead of copied"))
    ablation.train_all([sweep], "engine", False, workdir)
    assert os.path.isdir(os.path.join(sweep.directory, "checkpoints", "20"))
    # Another seed's command differs: it is trained.
    other = sweep_runs(["dfv"], [1], 20, workdir)[0]
    assert ablation.reusable_curve_run(other, ablation.train_command(other), workdir) is None


def fake_records(method, values_by_family, slices=(3, 5)):
    """Per-image records as score_scene writes them: one image per (slice count, family), every region."""
    records = []
    for count in slices:
        for family, value in values_by_family.items():
            for region in engine.REGIONS:
                records.append({"dataset": "engine", "example": f"{count}_{family}", "method": method,
                                "region": region, "slices": count, "scene_family": family,
                                "camera_family": "phone", "pixels": 0 if region == "depth_edges" and
                                family == "plane" else 10, "seconds": 0.1,
                                **{m: value * (2.0 if region == "depth_edges" else 1.0) for m in engine.REPORTED}})
    records.append({"dataset": "motorcycle", "example": "m5", "method": method, "region": "all", "slices": 5,
                    "pixels": 10, "seconds": 0.1, **{m: 1.0 for m in engine.REPORTED}})
    return records


def test_per_seed_rows_are_means_over_images_and_the_spread_is_over_seeds(tmp_path):
    collected = {("dualfocus", seed): fake_records("dualfocus", {"plane": v, "occluders": v + 0.2})
                 for seed, v in ((0, 0.1), (1, 0.2), (2, 0.3))}
    collected[("dfv", 0)] = fake_records("dfv", {"plane": 0.4, "occluders": 0.6})
    collected[("dfv", 1)] = fake_records("dfv", {"plane": 0.4, "occluders": 0.6})
    collected[(engine.CLASSICAL_REFINED, None)] = fake_records(engine.CLASSICAL_REFINED, {"plane": 1.0,
                                                                                        "occluders": 1.0})
    rows = engine.per_seed_rows(collected)
    def find(method, seed, group_by, region):
        return next(r for r in rows if (r["method"], r["seed"], r["group_by"], r["region"]) == (method, seed, group_by,
                                                                                               region))

    row = find("dualfocus", 1, "all", "all")
    assert row["images"] == 4 and row["rmse"] == pytest.approx(0.3)  # (0.2, 0.4) at two slice counts
    # An image without pixels in a region does not count for it.
    edges = find("dualfocus", 0, "all", "depth_edges")
    assert edges["images"] == 2 and edges["rmse"] == pytest.approx(0.6)
    assert not any(r["group_by"] == "scene_family" and r["group"] == "plane" and r["region"] == "depth_edges"
                   for r in rows)
    # Hard families first; motorcycle rows per slice count.
    families = [r["group"] for r in rows if r["method"] == "dfv" and r["seed"] == 0 and r["group_by"] == "scene_family"
                and r["region"] == "all"]
    assert families == ["occluders", "plane"]
    assert any(r["dataset"] == "motorcycle" and r["group"] == 5 for r in rows)

    stats = engine.aggregate(rows)
    overall = stats[("dualfocus", "engine", "all", "all", "")]["rmse"]
    assert (overall.mean, overall.low, overall.high, overall.n) == (pytest.approx(0.3), pytest.approx(0.2),
                                                                    pytest.approx(0.4), 3)
    assert overall.std == pytest.approx(0.1) and overall.values == pytest.approx((0.2, 0.3, 0.4))
    assert stats[("classical (refined)", "engine", "all", "all", "")]["rmse"].n == 1
    assert engine.seeds_of(rows) == {"dualfocus": [0, 1, 2], "dfv": [0, 1]}

    table = engine.stats_table(stats, ["dualfocus", "dfv", engine.CLASSICAL_REFINED], "rmse",
                               [("all", ("engine", "all", "all", "")), ("5 slices", ("engine", "all", "slices", "5"))])
    dualfocus_row = next(line for line in table if line.startswith("| DualFocus"))
    assert "0.300 ± 0.100 (-40%*)" in dualfocus_row  # 0.3 vs 0.5, beyond twice the standard error
    assert "%" not in next(line for line in table if line.startswith("| classical"))
    assert next(line for line in table if line.startswith("| without both")).count("±") == 2

    engine.write_per_seed_csv(str(tmp_path / "per_seed.csv"), rows)
    engine.write_summary_csv(str(tmp_path / "summary.csv"), stats)
    per_seed = list(csv.DictReader(open(tmp_path / "per_seed.csv")))
    assert len(per_seed) == len(rows) and {r["seed"] for r in per_seed} == {"0", "1", "2", ""}
    summary = list(csv.DictReader(open(tmp_path / "summary.csv")))
    entry = next(r for r in summary if (r["method"], r["group_by"], r["region"], r["metric"]) ==
                 ("dualfocus", "all", "all", "rmse"))
    assert (float(entry["min"]), float(entry["max"]), entry["n"], entry["per_seed"]) == (0.2, 0.4, "3", "0.2 0.3 0.4")


def test_report_markdown_has_every_breakdown(tmp_path):
    collected = {(m, 0): fake_records(m, {"texture_edge": 0.2, "plane": 0.1})
                 for m in ("dualfocus", "dfv", "dualfocus-raw_p")}
    rows = engine.per_seed_rows(collected)
    args = SimpleNamespace(command="python -m experiments.ablation", steps=100, workdir=str(tmp_path), seeds=[0],
                           results=str(tmp_path), sizes=engine.Sizes(), quick=False)
    text = "\n".join(engine.report_markdown(args, rows, engine.aggregate(rows), ["dualfocus", "dfv",
                                                                                 "dualfocus-raw_p"]))
    for heading in ("AbsRel by region", "Per scene family (hard families first: texture_edge)", "Per slice count",
                    "Motorcycle", "Training losses", "Sensitivity: DualFocus with one setting changed",
                    "`dualfocus-raw_p`: project_unimodal_at_inference=False (the same checkpoints, predicted so",
                    "AbsRel per scene family, all pixels"):
        assert heading in text
    # The sensitivity run is not a row of the variants' tables.
    summary = text.split("## Per scene family")[0]
    assert "dualfocus-raw_p" not in summary.split("### AbsRel by region")[1]
    assert "| 3 slices | 5 slices |" in text and "up to 2 stacks with scored pixels" in text


def curve_value_rows(gaps_by_budget):
    """Per-seed rows (engine, all) of DualFocus and DFV with the given DualFocus/DFV gaps in % per budget."""
    rows_by_budget = {}
    for budget, gap in gaps_by_budget.items():
        rows = []
        for method, value in (("dfv", 1.0), ("dualfocus", 1.0 + gap / 100)):
            for region in engine.REGIONS:
                rows.append({"method": method, "seed": 0, "dataset": "engine", "region": region, "group_by": "all",
                             "group": "", "images": 5, **{m: value for m in engine.REPORTED}})
        rows_by_budget[budget] = rows
    return rows_by_budget


def test_curve_gaps_and_the_budget_rule():
    values = engine.curve_values(curve_value_rows({1000: 3.0, 3000: -6.0, 10000: -8.0}))
    gaps = engine.curve_gaps(values)
    assert gaps[3000][("all", "abs_rel")] == pytest.approx(-6.0)
    chosen, agreement = engine.choose_budget(gaps)
    assert chosen == 3000 and not agreement[1000][("all", "abs_rel")]  # the wrong sign at 1000
    # Too small a gap does not agree; no gap at the largest budget is matched by a small one.
    assert engine.choose_budget(engine.curve_gaps(engine.curve_values(
        curve_value_rows({1000: -2.0, 10000: -8.0}))))[0] == 10000
    assert engine.choose_budget(engine.curve_gaps(engine.curve_values(
        curve_value_rows({1000: 3.0, 10000: -1.0}))))[0] == 1000

    args = SimpleNamespace(command="python -m experiments.ablation --phase=curve", seeds=[0], quick=False)
    text = "\n".join(engine.curve_markdown(args, values, gaps, chosen, agreement, {3000: 2.5, 1000: 2.0}, 15))
    assert "**Chosen budget: 3000 updates**" in text and "--steps=3000" in text
    assert "about 5.0 h of training" in text  # 15 runs × 3000 steps at 2.5 steps/s
    assert "| 1000 |" in text and "(+3.0%)" in text and "(-6.0% ✓)" in text and "**Rule.**" in text


def test_unimodality_measure():
    prob = np.array([[0.1, 0.5, 0.3], [0.2, 0.2, 0.005], [0.7, 0.3, 0.695]]).reshape(3, 1, 3)
    # Curves (per pixel): [0.1, 0.2, 0.7] one peak; [0.5, 0.2, 0.3] two; [0.3, 0.005, 0.695] two.
    result = mechanism.unimodality(prob, np.ones((1, 3), bool))
    assert result["unimodal"] == pytest.approx(1 / 3) and result["pixels"] == 3
    assert result["near_unimodal"] == pytest.approx(1 / 3)
    assert result["moved_mass"] > 0
    assert mechanism.unimodality(prob, np.array([[True, False, False]]))["moved_mass"] == pytest.approx(0.0, abs=1e-7)
    assert mechanism.test_index("occluders", 2) == 3 * 4 + 2


def test_mechanism_picture_of_a_tiny_untrained_model(tmp_path):
    config = model_config("small", "dualfocus")
    params = initial_params(config, jax.random.key(0))
    scene = mechanism.test_scene(3, "occluders", (32, 32))
    assert scene.stack.shape == (3, 32, 32, 3) and scene.groups["scene_family"] == "occluders"
    out = mechanism.mechanism_outputs(params, config, scene)
    grid = 32 // config.solver_stride
    assert out["fields"].shape == (3, grid, grid, 2 * config.surface_channels)
    assert out["q"].shape == (3, grid, grid) and np.allclose(out["q"].sum(0), 1.0, atol=1e-5)
    assert np.all((out["integrable"] >= -1e-6) & (out["integrable"] <= 1 + 1e-6))
    assert np.allclose(out["prob"].sum(0), 1.0, atol=1e-4)  # projected (dualfocus projects at inference)
    path = mechanism.mechanism_picture(str(tmp_path / "mechanism.png"), scene, out, "untrained")
    with Image.open(path) as image:
        assert image.size[0] > 400 and image.size[1] > 300
    curves = mechanism.focus_curves_picture(str(tmp_path / "curves.png"), scene, {"dualfocus": out}, "untrained")
    assert os.path.getsize(curves) > 1000
    text = "\n".join(mechanism.mechanism_markdown([(path, scene, out)], {"dualfocus": {3: mechanism.unimodality(
        out["prob_raw"], scene.valid)}}, mechanism.QUICK_MECHANISM, 0, curves, {"dualfocus": "w"}))
    assert "mechanism.png" in text and "| dualfocus |" in text


def test_an_inference_sensitivity_run_scores_its_base_runs_checkpoint_with_its_overrides(tmp_path, monkeypatch):
    from dualfocus_jax.model import DualFocusConfig

    args = ablation.parse_args(["--steps=100", "--seeds=0,1", "--variants=dualfocus,dfv",
                                f"--workdir={tmp_path}"])
    finished_dirs = {run_dir(str(tmp_path), "dualfocus", 0), run_dir(str(tmp_path), "dfv", 0)}
    monkeypatch.setattr(ablation, "run_finished", lambda run: run.directory in finished_dirs)
    runs, names = ablation.engine_runs(args)
    raw = [run for run in runs if run.name == "dualfocus-raw_p"]
    # Only seed 0's full model is trained, so only it is scored again; the report lists it after the variants.
    assert [(r.seed, r.directory) for r in raw] == [(0, run_dir(str(tmp_path), "dualfocus", 0))]
    assert names == ["dualfocus", "dfv", "dualfocus-raw_p"]

    scored_configs = []
    os.makedirs(raw[0].directory)
    monkeypatch.setattr(engine, "latest_saved_step", lambda directory: 100)
    monkeypatch.setattr(engine, "load_method", lambda name, folder, **_: engine.Method(
        name, "network", {}, DualFocusConfig(project_unimodal_at_inference=True)))
    monkeypatch.setattr(engine, "score_methods", lambda methods, scenes: scored_configs.append(methods[0].config)
                        or [{"method": methods[0].name}])
    records = engine.score_network_run(raw[0], lambda: [], engine.Sizes(), export_root=str(tmp_path), command="c")
    assert records == [{"method": "dualfocus-raw_p"}]
    assert scored_configs[0].project_unimodal_at_inference is False
    # Its cache is its own: the base run's cached records are not overwritten.
    assert sorted(os.listdir(raw[0].directory)) == ["ablation_engine_records.dualfocus-raw_p.json"]
    engine.score_network_run(raw[0], lambda: [], engine.Sizes(), export_root=str(tmp_path), command="c")
    assert len(scored_configs) == 1  # read back from the cache


def test_robustness_section_medians_and_the_stacks_of_largest_difference():
    from experiments import ablation_robustness as robustness

    def records(values):
        return [{"dataset": "engine", "region": "all", "example": f"s{i}", "abs_rel": v, "rmse_range": v / 10,
                 "coverage": "beyond" if i == 3 else "bracket"} for i, v in enumerate(values)]

    # DualFocus equals DFV except on stack s3, where it is 10x worse in both seeds.
    collected = {("dualfocus", 0): records([0.1, 0.2, 0.3, 4.0]), ("dualfocus", 1): records([0.1, 0.2, 0.3, 2.0]),
                 ("dfv", 0): records([0.1, 0.2, 0.3, 0.3]), ("dfv", 1): records([0.1, 0.2, 0.3, 0.1]),
                 ("classical (refined)", None): records([1.0, 1.0, 1.0, 1.0])}
    assert robustness.largest_differences(collected, "dualfocus", "dfv", "abs_rel", 1) == [("s3", pytest.approx(2.8))]
    lines = robustness.robustness_section(collected, ["dualfocus", "dfv", "classical (refined)"], top=1, listed=2)
    text = "\n".join(lines)
    dualfocus = next(line for line in lines if line.startswith("| dualfocus |"))
    # Medians per seed: DualFocus 0.25 and 0.25; DFV 0.25 and 0.15 (mean 0.2); without s3 both means are 0.2.
    assert dualfocus == "| dualfocus | 0.2500 ± 0.0000 (+25%) | 0.0250 ± 0.0000 (+25%) | 0.2000 ± 0.0000 (+0%) |"
    assert next(line for line in lines if line.startswith("| dfv |")).startswith("| dfv | 0.2000 ± 0.0707 |")
    assert "`s3`" in text and "| s3 |" in text and "beyond" in text
    assert "classical" not in text.split("The 2 stacks")[0]
    # Means over seeds per stack in the list: DualFocus 3.0, DFV 0.2.
    assert "| 3.000 | 0.200 |" in next(line for line in lines if line.startswith("| s3 |"))


def test_a_report_without_the_sweeps_checkpoints_carries_the_published_rows(tmp_path, monkeypatch):
    """On a fresh clone only a new sensitivity run is here: the published per-seed rows, loss rows and the section on
    a few stacks are kept, the new run is added; a baseline that scores differently now is refused."""
    workdir, results = tmp_path / "runs", tmp_path / "results"
    args = ablation.parse_args(["--steps=100", "--seeds=0,1", "--variants=dualfocus,dfv", f"--workdir={workdir}",
                                f"--results={results}"])
    for name, seed in (("dualfocus", 0), ("dualfocus", 1), ("dfv", 0), ("dfv", 1), ("dualfocus-stride4", 0)):
        os.makedirs(os.path.join(run_dir(str(workdir), name, seed), "metrics"))
        with open(os.path.join(run_dir(str(workdir), name, seed), "metrics", "train.jsonl"), "w") as handle:
            handle.write(json.dumps({"step": 100, "loss_depth": 0.01 * (seed + 1), "loss_spatial": 1.0,
                                     "loss_focal": 0.001}) + "\n")
    baseline = fake_records(engine.CLASSICAL_REFINED, {"plane": 1.0, "occluders": 1.0})

    def sweep(collected):
        monkeypatch.setattr(engine, "collect_records", lambda *a, **k: {**collected,
                                                                         (engine.CLASSICAL_REFINED, None): baseline})

    sweep({(m, s): fake_records(m, {"plane": v + s / 10, "occluders": 2 * v + s / 10})
           for m, v in (("dualfocus", 0.3), ("dfv", 0.2)) for s in (0, 1)})
    engine.write_engine_report(args, [], ["dualfocus", "dfv"])
    published = open(results / engine.REPORT_FILE).read()
    assert "How much of the means" in published and "Carried" not in published
    published_rows = list(csv.DictReader(open(results / "per_seed.csv")))

    # The sweep's runs are gone; one sensitivity run is new.
    for name, seed in (("dualfocus", 0), ("dualfocus", 1), ("dfv", 0), ("dfv", 1)):
        import shutil
        shutil.rmtree(run_dir(str(workdir), name, seed))
    sweep({("dualfocus-stride4", 0): fake_records("dualfocus-stride4", {"plane": 0.25, "occluders": 0.5})})
    engine.write_engine_report(args, [], ["dualfocus", "dfv", "dualfocus-stride4"])
    report = open(results / engine.REPORT_FILE).read()
    rows = list(csv.DictReader(open(results / "per_seed.csv")))
    assert all(row in rows for row in published_rows)
    assert {(r["method"], r["seed"]) for r in rows} == {("dualfocus", "0"), ("dualfocus", "1"), ("dfv", "0"),
                                                          ("dfv", "1"), ("dualfocus-stride4", "0"),
                                                          (engine.CLASSICAL_REFINED, "")}
    assert "**Carried from the published report**" in report and "DualFocus (both constraints) seeds 0, 1" in report
    # The summary table is the published one: the carried rows give the same means.
    assert published.split("### AbsRel by region")[1].split("###")[0] == report.split("### AbsRel by region")[1].split(
        "###")[0]
    losses = report.split("## Training losses")[1].split("## ")[0]
    assert "| DualFocus (both constraints) | 1.50e-02 |" in losses and "| without both (DFV) |" in losses
    assert "## Sensitivity" in report and "`dualfocus-stride4`: solver_stride=4" in report
    robustness = report.split("## How much of the means")[1]
    assert "(Carried from the earlier report" in robustness
    assert robustness.split("earlier report: it needs the per-image scores of the carried runs.)")[1].strip().split(
        engine.CLOSING_LINE)[0].strip() == published.split("## How much of the means")[1].split("\n", 2)[2].split(
        engine.CLOSING_LINE)[0].strip()
    assert report.rstrip().endswith(engine.CLOSING_LINE)
    # Reported again the same way, nothing changes but the header's date: carrying is idempotent.
    engine.write_engine_report(args, [], ["dualfocus", "dfv", "dualfocus-stride4"])
    again = open(results / engine.REPORT_FILE).read()
    assert again.split("\n", 1)[1] == report.split("\n", 1)[1]
    assert list(csv.DictReader(open(results / "per_seed.csv"))) == rows

    # A baseline that scores otherwise now means another evaluation: refused with one message.
    baseline = fake_records(engine.CLASSICAL_REFINED, {"plane": 1.5, "occluders": 1.0})
    with pytest.raises(SystemExit, match="scored on another evaluation"):
        engine.write_engine_report(args, [], ["dualfocus", "dfv", "dualfocus-stride4"])
