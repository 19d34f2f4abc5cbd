"""The ablation's tables (mean ± spread over seeds) and pictures, from the finished runs of experiments/ablation.py.

Writes into --results: ablation.md (a summary of RMSE by region, then every metric per evaluation set and
region), ablation.csv (every method × set × region × metric with mean, std, n and the per-seed values) and
ablation_<set>.png (where the full model and the model without either constraint differ, side by side).
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform

import numpy as np

from benchmarks.run_all import current_commit
from dualfocus_jax.model import model_config
from dualfocus_jax.visualize import Panel, save_panels_png
from experiments.ablation_runs import SENSITIVITY, finished, run_dir, variant_and_overrides
from experiments.ablation_scoring import (
    PREDICTIONS_FILE,
    REGIONS,
    classical_predictions,
    motorcycle_set,
    region_scores,
    score_run,
    synthetic_test_set,
)

METRICS = ("rmse", "mae", "abs_rel", "sq_rel", "log_rmse", "mse", "delta1", "delta2", "delta3", "bump", "avg_unc")
METHOD_LABELS = {
    "dualfocus": "DualFocus (both constraints)",
    "no_spatial": "without spatial constraint",
    "no_focal": "without focal constraint",
    "dfv": "without both (DFV)",
    "fv": "FV (plain focus volume)",
    "classical_raw": "classical, no refinement",
    "classical_refined": "classical + refinement",
}
REGION_LABELS = {"all": "all pixels", "depth_edges": "depth edges", "fine_texture": "fine texture"}


def collect_scores(args, eval_sets) -> tuple[dict, dict]:
    """(method → list of per-seed scores (set → region → metric), set → refined classical depth (N, H, W));
    the classical methods are deterministic and have one entry each."""
    collected: dict[str, list] = {}
    runs = [(variant, seed) for variant in args.variants for seed in args.seeds]
    runs += [(name, seed) for name in SENSITIVITY for seed in args.seeds
             if finished(args.workdir, name, seed, args.steps)]
    for name, seed in runs:
        if not finished(args.workdir, name, seed, args.steps):
            print(f"  {name} seed {seed}: not trained to step {args.steps}, left out", flush=True)
            continue
        print(f"  scoring {name} seed {seed}", flush=True)
        collected.setdefault(name, []).append(score_run(run_dir(args.workdir, name, seed), name, eval_sets,
                                                        keep_predictions=seed == args.seeds[0]))
    refined_depth = {}
    for name, refine in (("classical_raw", False), ("classical_refined", True)):
        print(f"  scoring {name}", flush=True)
        scores = {}
        for eval_set in eval_sets:
            depth, sigma = classical_predictions(eval_set, refine)
            scores[eval_set.name] = region_scores(depth, sigma, eval_set)
            if refine:
                refined_depth[eval_set.name] = depth
        collected[name] = [scores]
    return collected, refined_depth


def summary_statistics(values: list[float]) -> tuple[float, float, int]:
    finite = np.asarray([v for v in values if np.isfinite(v)], np.float64)
    if not finite.size:
        return float("nan"), float("nan"), 0
    return float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else 0.0, int(finite.size)


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _cell(values: list[float], metric: str) -> str:
    mean, std, n = summary_statistics(values)
    digits = ".2e" if metric in ("mse", "sq_rel") else ".4f" if metric != "bump" else ".3f"
    return f"{mean:{digits}}" + (f" ± {std:{digits}}" if n > 1 else "")


def markdown_tables(collected: dict, set_names: list[str]) -> list[str]:
    lines = []
    for set_name in set_names:
        for region in REGIONS:
            pixels = next(iter(collected.values()))[0][set_name][region]["pixels"]
            lines += [f"### {set_name}: {REGION_LABELS[region]} ({int(pixels)} pixels)", "",
                      "| method | seeds | " + " | ".join(METRICS) + " |", "|---|---|" + "---|" * len(METRICS)]
            for method, runs in collected.items():
                cells = [_cell([run[set_name][region][m] for run in runs], m) for m in METRICS]
                lines.append(f"| {label(method)} | {len(runs)} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def summary_table(collected: dict, set_names: list[str]) -> list[str]:
    """RMSE mean ± std by set and region, and each network's change against DFV (negative = better)."""
    header = [f"{s} · {REGION_LABELS[r]}" for s in set_names for r in REGIONS]
    lines = ["| method | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    for method, runs in collected.items():
        relative = method != "dfv" and not method.startswith("classical") and "dfv" in collected
        cells = []
        for set_name in set_names:
            for region in REGIONS:
                values = [run[set_name][region]["rmse"] for run in runs]
                cell = _cell(values, "rmse")
                if relative:
                    base, _, _ = summary_statistics([run[set_name][region]["rmse"] for run in collected["dfv"]])
                    cell += f" ({100 * (summary_statistics(values)[0] / base - 1):+.0f}%)"
                cells.append(cell)
        lines.append(f"| {label(method)} | " + " | ".join(cells) + " |")
    return lines


def write_csv(path: str, collected: dict, set_names: list[str]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["set", "region", "method", "metric", "mean", "std", "n", "per_seed"])
        for set_name in set_names:
            for region in REGIONS:
                for method, runs in collected.items():
                    for metric in METRICS:
                        values = [run[set_name][region][metric] for run in runs]
                        mean, std, n = summary_statistics(values)
                        writer.writerow([set_name, region, method, metric, f"{mean:.6g}", f"{std:.6g}", n,
                                         " ".join(f"{v:.6g}" for v in values)])


def comparison_picture(path: str, eval_set, index: int, depth_by_method: dict, title: str) -> str:
    """Regions, ground truth, both networks, their errors and where the constraints help or hurt."""
    gt = eval_set.depth[index]
    scored = eval_set.masks["all"][index]
    overlay = np.array(eval_set.image[index], np.float32) * 0.6
    overlay[eval_set.masks["depth_edges"][index]] = (1.0, 0.15, 0.15)
    overlay[eval_set.masks["fine_texture"][index]] = overlay[eval_set.masks["fine_texture"][index]] * 0.4 + \
        np.array((0.1, 0.8, 0.2)) * 0.6
    full, plain = depth_by_method["dualfocus"], depth_by_method["dfv"]
    error_full, error_plain = np.abs(full - gt), np.abs(plain - gt)
    low, high = float(gt[scored].min()), float(gt[scored].max())
    error_max = float(np.percentile(np.concatenate([error_full[scored], error_plain[scored]]), 99))
    gain_max = float(np.percentile(np.abs(error_plain - error_full)[scored], 99)) or 1.0
    panels = [
        Panel("regions: red edges, green texture", overlay, kind="rgb"),
        Panel("ground truth", gt, vmin=low, vmax=high, label="depth (m)", valid=scored),
        Panel("DualFocus", full, vmin=low, vmax=high, label="depth (m)"),
        Panel("DFV (no constraints)", plain, vmin=low, vmax=high, label="depth (m)"),
        Panel("|err| DualFocus", error_full, cmap="magma", vmin=0, vmax=error_max, label="m", valid=scored),
        Panel("|err| DFV", error_plain, cmap="magma", vmin=0, vmax=error_max, label="m", valid=scored),
        Panel("|err| DFV − |err| DualFocus (blue: better)", error_plain - error_full, cmap="RdBu",
              vmin=-gain_max, vmax=gain_max, label="m", valid=scored),
        Panel("classical + refinement", depth_by_method["classical_refined"], vmin=low, vmax=high, label="depth (m)"),
    ]
    return save_panels_png(path, panels, columns=4, title=title)


def training_loss_table(args, names: list[str], last_steps: int = 250) -> list[str]:
    """Mean over seeds of each loss term over the last `last_steps` updates, raw and as weighted in the total
    (from each run's metrics/train.jsonl): how much each constraint still pulls at the end of training."""
    lines = ["| method | L_depth | L_sv | λ_sv·L_sv | L_fv | λ_fv·L_fv | share of the total from the constraints |",
             "|---|---|---|---|---|---|---|"]
    for name in names:
        variant, overrides = variant_and_overrides(name)
        config = model_config("small", variant, **overrides)
        per_seed = []
        for seed in args.seeds:
            path = os.path.join(run_dir(args.workdir, name, seed), "metrics", "train.jsonl")
            if not os.path.isfile(path):
                continue
            with open(path, encoding="utf-8") as handle:
                records = [json.loads(line) for line in handle if line.strip()]
            tail = [r for r in records if r["step"] > args.steps - last_steps]
            per_seed.append({k: float(np.mean([r.get(k, 0.0) for r in tail]))
                             for k in ("loss_depth", "loss_spatial", "loss_focal")})
        if not per_seed:
            continue
        mean = {k: float(np.mean([p[k] for p in per_seed])) for k in per_seed[0]}
        spatial = config.lambda_sv * mean["loss_spatial"] if config.use_spatial else 0.0
        focal = config.lambda_fv * mean["loss_focal"]
        share = (spatial + focal) / (mean["loss_depth"] + spatial + focal)
        spatial_cells = f"{mean['loss_spatial']:.2e} | {spatial:.2e}" if config.use_spatial else "– | –"
        lines.append(f"| {label(name)} | {mean['loss_depth']:.2e} | {spatial_cells} | {mean['loss_focal']:.2e} | "
                     f"{focal:.2e} | {100 * share:.0f}% |")
    return lines


def sensitivity_section(collected: dict, set_names: list[str]) -> list[str]:
    """The full model with one setting changed (one seed each) beside the default settings over seeds."""
    names = [name for name in SENSITIVITY if name in collected]
    if not names:
        return []
    rows = {m: collected[m] for m in ("dualfocus", *names, "dfv") if m in collected}
    settings = "; ".join(f"`{name}`: " + ", ".join(f"{k}={v}" for k, v in SENSITIVITY[name][1].items())
                         for name in names)
    seeds = ", ".join(f"{name} {len(collected[name])}" for name in names)
    return ["## Sensitivity: DualFocus with one setting changed", "",
            f"Seeds per run: {seeds}.", "",
            f"Defaults: solver_stride 16, lambda_sv 0.1, lambda_fv 1.0, tau_rel 0.5. Changed: {settings}. "
            "Compare each row with the default row's spread over seeds.", "",
            *summary_table(rows, set_names), ""]


def write_report(args) -> None:
    print("== evaluation sets: synthetic_focal test split and the motorcycle scene", flush=True)
    eval_sets = [synthetic_test_set(), motorcycle_set(args.motorcycle_downscale)]
    set_names = [s.name for s in eval_sets]
    collected, classical_depth = collect_scores(args, eval_sets)
    if not any(method in collected for method in args.variants):
        raise SystemExit(f"no finished run under {args.workdir}; run `python -m experiments.ablation --phase=train` "
                         "first.")
    os.makedirs(args.results, exist_ok=True)
    main_rows = {m: runs for m, runs in collected.items() if m not in SENSITIVITY}
    seeds_done = ", ".join(f"{m} {len(runs)}" for m, runs in main_rows.items() if not m.startswith("classical"))
    header = (f"<!-- commit {current_commit()}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
              f"{platform.machine()} CPU ({os.cpu_count()} cores); `python -m experiments.ablation --steps "
              f"{args.steps} --seeds {','.join(map(str, args.seeds))}` -->")
    text = [header, "", "# Constraint ablation: small DualFocus on synthetic_focal", "",
            f"Each network: `configs/demo.py` recipe (small, batch 4, 64×64 crops, AdamW 1e-3 warm-up + cosine), "
            f"{args.steps} updates on synthetic_focal train[:180]; only the variant and the seed differ. Seeds per "
            f"variant: {seeds_done}. Scores of the last checkpoint; mean ± sample std over seeds (classical: "
            "deterministic, one run). Depth in metres. Regions: `dualfocus_jax/evaluation/regions.py`.", "",
            "## RMSE by region (change against DFV, the network without either constraint)", "",
            *summary_table(main_rows, set_names), "",
            f"## Training losses over the last 250 of {args.steps} updates (mean over seeds)", "",
            "L_fv is reported for every variant (it is trained only where λ_fv > 0); L_sv exists only where the "
            "spatial branch does.", "",
            *training_loss_table(args, [m for m in collected if not m.startswith("classical")]), "",
            *sensitivity_section(collected, set_names),
            "## Every metric", "", *markdown_tables(collected, set_names)]
    pictures = []
    first_seed = args.seeds[0]
    needed = ("dualfocus", "dfv")
    if all(os.path.isfile(os.path.join(run_dir(args.workdir, m, first_seed), PREDICTIONS_FILE)) for m in needed):
        # The synthetic scene with the most depth-edge pixels: where the spatial constraint should matter.
        synthetic_index = int(np.argmax(eval_sets[0].masks["depth_edges"].sum(axis=(1, 2))))
        for eval_set, index, stem in ((eval_sets[1], 0, "motorcycle"), (eval_sets[0], synthetic_index, "synthetic")):
            depth = {m: np.load(os.path.join(run_dir(args.workdir, m, first_seed),
                                             PREDICTIONS_FILE))[eval_set.name][index]
                     for m in needed}
            depth["classical_refined"] = classical_depth[eval_set.name][index]
            path = os.path.join(args.results, f"ablation_{stem}.png")
            comparison_picture(path, eval_set, index, depth,
                               f"{eval_set.name}, scene {index}, seed {first_seed} (the first seed, fixed in advance)")
            pictures.append(path)
        text += ["## Pictures", ""] + [f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in pictures] + [""]
    md_path = os.path.join(args.results, "ablation.md")
    with open(md_path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(text) + "\n")
    write_csv(os.path.join(args.results, "ablation.csv"), collected, set_names)
    print("\n".join(summary_table(main_rows, set_names)))
    print(f"wrote {md_path}, ablation.csv and {len(pictures)} pictures to {args.results}", flush=True)
