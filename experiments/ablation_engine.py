"""The engine recipe's ablation report and learning-curve check, from the finished runs of experiments/ablation.py.

Scoring (every finished run, each cached in <run>/ablation_engine_records.json until its checkpoint changes): the
run's latest checkpoint, exported by `experiments.evaluate_generalisation.load_method` (a training workdir's
latest checkpoint goes through the export path of experiments/evaluate_pretrained.py), runs through
`predict_depth` on the engine's fixed test split (`datasets/focal_engine`: 27 stacks of 128 × 128 per slice
count 3/5/7/10/16, every camera family × scene family) and on the Middlebury motorcycle at 5 and 10 slices, with
`evaluate_generalisation.score_scene`: per image and per region (all scored pixels, depth edges, fine texture of
`dualfocus_jax.evaluation.regions`). The classical baseline, raw and refined, is scored once beside them (cached in
<workdir>/classical_records.json). Per run and group (every slice count, scene family, camera family, the
motorcycle's slice counts), `evaluate_generalisation.mean_over_images` gives one row per seed; the tables give
mean ± sample std over seeds (and min–max in summary.csv).

Writes into --results (experiments/results/ablation_engine/ by default):
  ablation_engine.md  the tables: summary, per hard family, per slice count, per region, the motorcycle, the
                      training losses, the sensitivity runs when present;
  per_seed.csv        one row per method × seed × dataset × region × group, every reported metric;
  summary.csv         one row per method × dataset × region × group × metric: mean, std, min, max, n, per seed;
  curve.md, curve.csv the learning-curve check (--phase=curve): DualFocus − DFV per budget and the budget it
                      chooses for the sweep, with the rule that chooses it.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import functools
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable
from types import SimpleNamespace

import numpy as np

from benchmarks.run_all import current_commit
from datasets.focal_engine.focal_engine_dataset_builder import IMAGE_SIZE
from dualfocus_jax.engine import CAMERA_FAMILIES, HARD_FAMILIES, SCENE_FAMILIES
from dualfocus_jax.evaluation.regions import REGIONS
from dualfocus_jax.training.checkpointing import latest_saved_step
from experiments.ablation_published import check_same_evaluation, read_per_seed_csv, runs_of, section, table_row
from experiments.ablation_report import METHOD_LABELS, REGION_LABELS, training_loss_table
from experiments.ablation_robustness import robustness_section
from experiments.ablation_runs import (
    ALL_SENSITIVITY,
    CURVE_VARIANTS,
    INFERENCE_SENSITIVITY,
    Run,
    run_finished,
    sensitivity_settings,
)
from experiments.evaluate_generalisation import (
    CLASSICAL_RAW,
    CLASSICAL_REFINED,
    REPORTED,
    Method,
    Scene,
    Sizes,
    engine_scenes,
    load_method,
    mean_over_images,
    motorcycle_scenes,
    score_scene,
)

RECORDS_FILE = "ablation_engine_records.json"
CLASSICAL_FILE = "classical_records.json"
REPORT_FILE = "ablation_engine.md"
CURVE_REPORT = "curve.md"
PER_SEED_FILE = "per_seed.csv"
CLOSING_LINE = "Every number above, with min and max over seeds, is in summary.csv; one row per seed in per_seed.csv."
LOSSES_HEADING, ROBUSTNESS_HEADING = "Training losses", "How much of the means"
ROBUSTNESS_CARRIED = "(Carried from the earlier report: it needs the per-image scores of the carried runs.)"
# The config a workdir is read with if it recorded no model.json (every run of this recipe records one).
WORKDIR_CONFIG = "configs/engine_small.py"
CLASSICAL = (CLASSICAL_RAW, CLASSICAL_REFINED)
REFERENCE = "dfv"  # the network without either constraint: every change is measured against it
ENGINE, MOTORCYCLE = "engine", "motorcycle"
# Groupings of the per-seed rows: (dataset, group_by); group_by "all" is the whole dataset.
GROUPINGS = ((ENGINE, "all"), (ENGINE, "slices"), (ENGINE, "scene_family"), (ENGINE, "camera_family"),
             (MOTORCYCLE, "slices"))
# The learning-curve rule: the quantities it compares (scale-free, so near and far scenes weigh alike: RMSE in
# metres is dominated by the engine's far DSLR scenes) and its tolerances.
CURVE_QUANTITIES = tuple((region, metric) for metric in ("abs_rel", "rmse_range") for region in REGIONS)
CURVE_SHOWN = tuple((region, metric) for metric in ("rmse", "abs_rel", "rmse_range") for region in REGIONS)
NO_GAP_PERCENT = 2.0  # a gap under this at the largest budget counts as none
SIZE_RATIO = (0.5, 2.0)  # a smaller budget's gap must lie within these multiples of the largest budget's
METRIC_LABELS = {"rmse": "RMSE (m)", "abs_rel": "AbsRel", "rmse_range": "RMSE / focus range", "delta1": "δ1",
                 "mae": "MAE (m)"}


def label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


# ---------------------------------------------------------------- scoring


def sizes_key(sizes: Sizes) -> dict:
    """The evaluation sizes as JSON (a cache made with other sizes is recomputed)."""
    return json.loads(json.dumps(dataclasses.asdict(sizes)))


def evaluation_scenes(sizes: Sizes, data_dir: str | None) -> list[Scene]:
    """The engine test split per slice count, then the motorcycle at each of sizes.motorcycle_slices."""
    return [*engine_scenes(sizes, data_dir), *motorcycle_scenes(sizes)]


def _read_cache(path: str, step, sizes: Sizes) -> list[dict] | None:
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        cached = json.load(handle)
    if cached.get("step") != step or cached.get("sizes") != sizes_key(sizes):
        return None
    return cached["records"]


def _write_cache(path: str, step, sizes: Sizes, records: list[dict]) -> None:
    staging = f"{path}.writing-{os.getpid()}"
    with open(staging, "w", encoding="utf-8") as handle:
        json.dump({"step": step, "sizes": sizes_key(sizes), "records": records}, handle)
    os.replace(staging, path)


def score_methods(methods: list[Method], scenes: Iterable[Scene]) -> list[dict]:
    return [record for scene in scenes for record in score_scene(scene, methods)]


def score_network_run(run: Run, scenes: Callable[[], list[Scene]], sizes: Sizes, *, export_root: str,
                      command: str) -> list[dict]:
    """Per-image records of a run's latest checkpoint (method = run.name), cached in <run>/RECORDS_FILE (an
    inference-only sensitivity run, which scores another run's checkpoint with its overrides, in a file named
    after it)."""
    step = latest_saved_step(run.directory)
    cache_name = RECORDS_FILE if not run.inference_overrides else RECORDS_FILE.replace(".json", f".{run.name}.json")
    cache = os.path.join(run.directory, cache_name)
    records = _read_cache(cache, step, sizes)
    if records is None:
        method = load_method(run.name, run.directory, export_root=export_root, workdir_config=WORKDIR_CONFIG,
                             command=command)
        if run.inference_overrides:
            method = dataclasses.replace(method, config=dataclasses.replace(method.config,
                                                                            **dict(run.inference_overrides)))
        records = score_methods([method], scenes())
        _write_cache(cache, step, sizes, records)
    return records


def score_classical(workdir: str, scenes: Callable[[], list[Scene]], sizes: Sizes) -> list[dict]:
    """Per-image records of the classical baseline, raw and refined (deterministic: cached in the workdir)."""
    cache = os.path.join(workdir, CLASSICAL_FILE)
    records = _read_cache(cache, "classical", sizes)
    if records is None:
        records = score_methods([Method(CLASSICAL_RAW, "classical", refine=False),
                                 Method(CLASSICAL_REFINED, "classical")], scenes())
        os.makedirs(workdir, exist_ok=True)
        _write_cache(cache, "classical", sizes, records)
    return records


def score_runs(runs: list[Run], scenes: Callable[[], list[Scene]], sizes: Sizes, command: str) -> dict[Run, list]:
    """Run → per-image records, for every finished run (the others are named and left out)."""
    scored: dict[Run, list[dict]] = {}
    export_root = tempfile.mkdtemp(prefix="ablation_exports_")
    try:
        for run in runs:
            if not run_finished(run):
                print(f"  {run.name} seed {run.seed}: not trained to step {run.steps}, left out", flush=True)
                continue
            print(f"  scoring {run.name} seed {run.seed} ({run.directory})", flush=True)
            scored[run] = score_network_run(run, scenes, sizes, export_root=export_root, command=command)
    finally:
        shutil.rmtree(export_root, ignore_errors=True)
    return scored


def lazy_scenes(sizes: Sizes, data_dir: str | None) -> Callable[[], list[Scene]]:
    """The evaluation scenes, read on the first call only (never when every run is cached)."""
    return functools.cache(lambda: evaluation_scenes(sizes, data_dir))


def collect_records(runs: list[Run], workdir: str, sizes: Sizes, data_dir: str | None,
                    command: str) -> dict[tuple[str, int | None], list[dict]]:
    """(method, seed) → per-image records of every finished run of the sweep, and of the classical baseline
    (seed None)."""
    scenes = lazy_scenes(sizes, data_dir)
    collected = {(run.name, run.seed): records for run, records in score_runs(runs, scenes, sizes, command).items()}
    print("  scoring the classical baseline (raw and refined)", flush=True)
    records = score_classical(workdir, scenes, sizes)
    for name in CLASSICAL:
        collected[(name, None)] = [r for r in records if r["method"] == name]
    return collected


# ---------------------------------------------------------------- per-seed rows and their statistics


def groups_of(records: list[dict], dataset: str, group_by: str) -> list:
    """The groups of `group_by` present in the records of `dataset`, in a fixed order."""
    if group_by == "all":
        return [None]
    present = {r.get(group_by) for r in records if r["dataset"] == dataset and r.get(group_by) is not None}
    order = {"scene_family": HARD_FAMILIES + tuple(f for f in SCENE_FAMILIES if f not in HARD_FAMILIES),
             "camera_family": CAMERA_FAMILIES}.get(group_by)
    if order is None:
        return sorted(present)
    return [g for g in order if g in present] + sorted(present - set(order), key=str)


def per_seed_rows(collected: dict[tuple[str, int | None], list[dict]]) -> list[dict]:
    """One row per (method, seed, dataset, region, group_by, group): `images` and the REPORTED metrics, means over
    the images of the group that have pixels in the region."""
    rows = []
    for (method, seed), records in collected.items():
        for dataset, group_by in GROUPINGS:
            for group in groups_of(records, dataset, group_by):
                where = {"dataset": dataset, **({} if group is None else {group_by: group})}
                for region in REGIONS:
                    means = mean_over_images(records, region=region, **where)
                    if not means["images"]:
                        continue
                    rows.append({"method": method, "seed": seed, "dataset": dataset, "region": region,
                                 "group_by": group_by, "group": "" if group is None else group,
                                 "images": int(means["images"]), **{m: means[m] for m in REPORTED}})
    return rows


@dataclasses.dataclass(frozen=True)
class Spread:
    """A metric over seeds: mean, sample std (0 for one value), min, max, n and the values (seed order)."""

    mean: float
    std: float
    low: float
    high: float
    n: int
    values: tuple[float, ...]


def spread(values: Iterable[float]) -> Spread:
    values = tuple(float(v) for v in values)
    finite = np.asarray([v for v in values if np.isfinite(v)], np.float64)
    if not finite.size:
        return Spread(float("nan"), float("nan"), float("nan"), float("nan"), 0, values)
    return Spread(float(finite.mean()), float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
                  float(finite.min()), float(finite.max()), int(finite.size), values)


def row_key(row: dict) -> tuple:
    return (row["method"], row["dataset"], row["region"], row["group_by"], str(row["group"]))


def aggregate(rows: list[dict]) -> dict[tuple, dict[str, Spread]]:
    """(method, dataset, region, group_by, group) → metric → Spread over the seeds (rows in seed order)."""
    by_key: dict[tuple, list[dict]] = {}
    for row in sorted(rows, key=lambda r: (-1 if r["seed"] is None else r["seed"])):
        by_key.setdefault(row_key(row), []).append(row)
    return {key: {metric: spread(r[metric] for r in chosen) for metric in REPORTED} for key, chosen in by_key.items()}


def seeds_of(rows: list[dict]) -> dict[str, list[int]]:
    """method → its seeds, for the networks (the classical baseline has none)."""
    seeds: dict[str, list[int]] = {}
    for row in rows:
        if row["seed"] is not None and row["seed"] not in seeds.setdefault(row["method"], []):
            seeds[row["method"]].append(row["seed"])
    return {method: sorted(values) for method, values in seeds.items()}


def change_against(ours: Spread, reference: Spread) -> tuple[float, bool]:
    """(change of the mean in % of the reference's, whether it exceeds twice its standard error
    √(s₁²/n₁ + s₂²/n₂); False when either side has a single value)."""
    if not (reference.n and ours.n and reference.mean):
        return float("nan"), False
    change = 100.0 * (ours.mean / reference.mean - 1.0)
    if ours.n < 2 or reference.n < 2:
        return change, False
    standard_error = np.sqrt(ours.std ** 2 / ours.n + reference.std ** 2 / reference.n)
    return change, abs(ours.mean - reference.mean) > 2.0 * standard_error


def _number(value: float, metric: str) -> str:
    if not np.isfinite(value):
        return "–"
    return f"{value:.3f}" if metric in ("rmse", "mae") else f"{value:.4f}"


def cell(stats: dict, key: tuple, metric: str, reference_key: tuple | None = None) -> str:
    """"mean ± std (Δ% against the reference*)" of one metric; "–" where the key has no rows."""
    if key not in stats:
        return "–"
    ours = stats[key][metric]
    text = _number(ours.mean, metric) + (f" ± {_number(ours.std, metric)}" if ours.n > 1 else "")
    if reference_key is not None and reference_key in stats and reference_key != key:
        change, beyond = change_against(ours, stats[reference_key][metric])
        if np.isfinite(change):
            text += f" ({change:+.0f}%{'*' if beyond else ''})"
    return text


def stats_table(stats: dict, methods: list[str], metric: str, columns: list[tuple[str, tuple]],
                reference: str | None = REFERENCE) -> list[str]:
    """Markdown rows: methods; columns (title, (dataset, region, group_by, group)); cells `cell` of `metric`,
    networks compared with `reference` (the classical rows are not)."""
    lines = ["| method | " + " | ".join(title for title, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for method in methods:
        compare = reference if reference and method not in CLASSICAL and method != reference else None
        cells = [cell(stats, (method, *where), metric, (compare, *where) if compare else None)
                 for _, where in columns]
        lines.append(f"| {label(method)} | " + " | ".join(cells) + " |")
    return lines


def write_per_seed_csv(path: str, rows: list[dict]) -> None:
    columns = ["method", "seed", "dataset", "region", "group_by", "group", "images", *REPORTED]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row[k] is None else f"{row[k]:.6g}" if isinstance(row[k], float) else row[k])
                             for k in columns})


def write_summary_csv(path: str, stats: dict) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["method", "dataset", "region", "group_by", "group", "metric", "mean", "std", "min", "max",
                         "n", "per_seed"])
        for key, metrics in stats.items():
            for metric, s in metrics.items():
                writer.writerow([*key, metric, f"{s.mean:.6g}", f"{s.std:.6g}", f"{s.low:.6g}", f"{s.high:.6g}", s.n,
                                 " ".join(f"{v:.6g}" for v in s.values)])


# ---------------------------------------------------------------- the sweep's report


def ordered_methods(stats: dict, names: Iterable[str]) -> list[str]:
    present = {key[0] for key in stats}
    return [m for m in (*names, *CLASSICAL) if m in present]


def _header(args, title: str) -> list[str]:
    return [f"<!-- commit {current_commit()}, {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
            f"{platform.machine()} CPU ({os.cpu_count()} cores); `{args.command}` -->", "", f"# {title}", ""]


def variant_names(names: list[str]) -> list[str]:
    """The variants among the report's run names (the sensitivity runs have a section of their own)."""
    return [n for n in names if n not in ALL_SENSITIVITY]


def report_markdown(args, rows: list[dict], stats: dict, names: list[str]) -> list[str]:
    """The sweep's tables (names: the variants in table order, then any sensitivity runs)."""
    methods = ordered_methods(stats, variant_names(names))
    found = seeds_of(rows)
    seeds = {m: found[m] for m in dict.fromkeys((*names, *found)) if m in found}  # in table order
    engine_rows = [r for r in rows if r["dataset"] == ENGINE]
    counts = sorted({int(r["group"]) for r in engine_rows if r["group_by"] == "slices"})
    present = {r["group"] for r in engine_rows if r["group_by"] == "scene_family"}
    families = [f for f in dict.fromkeys((*HARD_FAMILIES, *SCENE_FAMILIES)) if f in present]
    hard = [f for f in families if f in HARD_FAMILIES]
    per_count = max((r["images"] for r in engine_rows if r["group_by"] == "slices" and r["region"] == "all"),
                    default=0)
    motorcycle_counts = sorted({r["group"] for r in rows if r["dataset"] == MOTORCYCLE and r["group_by"] == "slices"})

    def regions(dataset, group_by="all", group=""):
        return [(REGION_LABELS[region], (dataset, region, group_by, group)) for region in REGIONS]

    height, width = args.sizes.engine_size or IMAGE_SIZE
    text = _header(args, "Constraint ablation on the focal-stack engine: small DualFocus, stage-1 recipe")
    if args.quick:
        text += ["**Smoke run (--quick): `:runlocal` training (32×32 crops, 3–4 slices, batch 2) and tiny "
                 "evaluation sizes; the numbers are no result.**", ""]
    text += [
        f"Each network: `configs/engine_small.py:variant=V,steps={args.steps}` (stage 1: the small model, batch 4, "
        "64×64 crops, 3/5/7/10/16 slices, the engine's endless stacks, AdamW 1e-3 with 200 warm-up steps and a "
        "cosine decay), `--config.seed=S`; only the variant and the seed differ. Seeds: "
        + ", ".join(f"{label(m)} {len(s)} ({', '.join(map(str, s))})" for m, s in seeds.items()) + ". "
        "Scores of the last checkpoint through `predict_depth` (as the predictor runs it: DualFocus and "
        "no_spatial project their focus probabilities onto unimodal ones at inference, the others do not).",
        "",
        f"Evaluation: the engine's fixed test split ({height}×{width}; {len(counts)} slice counts, up to "
        f"{per_count} stacks with scored pixels per slice count, every camera family × scene family) and the "
        "Middlebury motorcycle "
        f"({', '.join(map(str, motorcycle_counts))} slices); scored pixels: ground truth inside the focus range. "
        "Per image, then the mean over images (images without pixels in a region do not count for it); then mean "
        "± sample std over seeds. RMSE and MAE in metres; AbsRel unitless; RMSE / focus range weighs near "
        "(phone, macro) and far (DSLR) scenes alike. (±x%): change of the mean against DFV (the network without "
        "either constraint); `*`: the change exceeds twice its standard error √(s₁²/n₁ + s₂²/n₂). The classical "
        "baseline is deterministic (one value). Regions: `dualfocus_jax/evaluation/regions.py`.",
        "",
        "## Summary: the engine test split, all slice counts", "",
    ]
    for metric in ("abs_rel", "rmse_range", "rmse"):
        text += [f"### {METRIC_LABELS[metric]} by region", "", *stats_table(stats, methods, metric, regions(ENGINE)),
                 ""]
    if families:
        text += [f"## Per scene family (hard families first: {', '.join(hard) or 'none in these stacks'})", ""]
        for metric, region in (("abs_rel", "all"), ("rmse_range", "all"), ("abs_rel", "depth_edges"),
                               ("abs_rel", "fine_texture")):
            text += [f"### {METRIC_LABELS[metric]}, {REGION_LABELS[region]}", "",
                     *stats_table(stats, methods, metric, [(f, (ENGINE, region, "scene_family", f))
                                                           for f in families]), ""]
    if counts:
        text += ["## Per slice count", ""]
        for metric, region in (("abs_rel", "all"), ("rmse_range", "all"), ("rmse_range", "depth_edges"),
                               ("rmse_range", "fine_texture")):
            text += [f"### {METRIC_LABELS[metric]}, {REGION_LABELS[region]}", "",
                     *stats_table(stats, methods, metric, [(f"{c} slices", (ENGINE, region, "slices", str(c)))
                                                           for c in counts]), ""]
    if motorcycle_counts:
        text += ["## Motorcycle (Middlebury, rendered as in experiments/evaluate_pretrained.py)", ""]
        for metric in ("rmse", "abs_rel"):
            columns = [(f"{c} slices · {REGION_LABELS[region]}", (MOTORCYCLE, region, "slices", str(c)))
                       for c in motorcycle_counts for region in REGIONS]
            text += [f"### {METRIC_LABELS[metric]}", "", *stats_table(stats, methods, metric, columns), ""]
    networks = [m for m in methods if m not in CLASSICAL]
    if networks:
        losses = training_loss_table(SimpleNamespace(workdir=args.workdir, seeds=args.seeds, steps=args.steps),
                                     networks, last_steps=max(args.steps // 10, 1))
        text += [f"## Training losses over the last {max(args.steps // 10, 1)} of {args.steps} updates "
                 "(mean over seeds)", "",
                 "L_fv is reported for every variant (trained only where λ_fv > 0); L_sv exists only where the "
                 "spatial branch does.", "", *losses, ""]
    sensitivity = [n for n in ALL_SENSITIVITY if any(key[0] == n for key in stats)]
    if sensitivity:
        settings = "; ".join(f"`{n}`: " + ", ".join(f"{k}={v}" for k, v in sensitivity_settings(n).items())
                             + (" (the same checkpoints, predicted so; nothing trained)"
                                if n in INFERENCE_SENSITIVITY else "") for n in sensitivity)
        rows_shown = [m for m in ("dualfocus", *sensitivity, REFERENCE) if any(key[0] == m for key in stats)]
        text += ["## Sensitivity: DualFocus with one setting changed", "",
                 "Defaults: solver_stride 16, lambda_sv 0.1, lambda_fv 1.0, tau_rel 0.5, "
                 f"project_unimodal_at_inference True. Changed: {settings}. "
                 "Seeds: " + ", ".join(f"{n} {len(seeds.get(n, []))}" for n in sensitivity) + ".", ""]
        for metric in ("abs_rel", "rmse_range"):
            text += [f"### {METRIC_LABELS[metric]}", "",
                     *stats_table(stats, rows_shown, metric, regions(ENGINE)), ""]
        text += [f"### {METRIC_LABELS['abs_rel']} per scene family, all pixels", "",
                 *stats_table(stats, rows_shown, "abs_rel", [(f, (ENGINE, "all", "scene_family", f))
                                                             for f in families]), ""]
    if os.path.isfile(os.path.join(args.results, "mechanism.md")):
        text += ["## Mechanism", "", "The spatial branch's fields, surfaces and in-focus weights on hard scenes, "
                 "and how unimodal the focus curves are with and without L_fv: [mechanism.md](mechanism.md).", ""]
    text += [CLOSING_LINE]
    return text


def carry_published(args, rows: list[dict], names: list[str]) -> tuple[list[dict], list[str], list[dict]]:
    """(the rows with those of every published (method, seed) not scored now added, the names with the carried
    methods added, the carried rows). The published per_seed.csv in args.results is read; the classical baseline
    scored now must match it (ablation_published.check_same_evaluation)."""
    path = os.path.join(args.results, PER_SEED_FILE)
    published = read_per_seed_csv(path, REPORTED)
    scored = runs_of(rows)
    carried = [r for r in published if r["seed"] is not None and (r["method"], r["seed"]) not in scored]
    if not carried:
        return rows, names, []
    check_same_evaluation(published, rows, REPORTED, path)
    methods = list(dict.fromkeys(r["method"] for r in carried))
    added = [n for n in (*ALL_SENSITIVITY, *methods) if n in methods and n not in names]
    return rows + carried, names + list(dict.fromkeys(added)), carried


def carried_note(args, carried: list[dict]) -> list[str]:
    seeds = seeds_of(carried)
    listed = "; ".join(f"{label(m)} seed{'s' if len(s) > 1 else ''} {', '.join(map(str, s))}" for m, s in seeds.items())
    return [f"**Carried from the published report** (their checkpoints are not under `{args.workdir}`): {listed}. "
            f"Their per-seed rows come from the earlier {PER_SEED_FILE} of this folder, whose classical-baseline rows "
            "the baseline scored now matches to every printed digit (the same evaluation stacks); their training "
            "losses and the section on a few stacks come from the earlier report.", ""]


def fill_carried_sections(text: list[str], published_report: list[list[str]], carried_methods: list[str],
                          robustness_computed: bool) -> list[str]:
    """The report with the training-loss rows of the carried methods (in their order) and, when it was not computed
    now, the section on a few stacks taken from the earlier report (`published_report`: those two sections' lines
    there)."""
    losses_old, robustness_old = published_report
    start = next((i for i, line in enumerate(text) if line.startswith("## " + LOSSES_HEADING)), None)
    if start is not None:
        end = next((i for i in range(start + 1, len(text)) if text[i].startswith("## ") or text[i] == CLOSING_LINE),
                   len(text))
        table_end = max(i for i in range(start, end) if text[i].startswith("|"))
        present = {line.split("|")[1].strip() for line in text[start:end] if line.startswith("| ")}
        rows = [row for m in carried_methods if label(m) not in present and (row := table_row(losses_old, label(m)))]
        text = text[:table_end + 1] + rows + text[table_end + 1:]
    if not robustness_computed and robustness_old:
        heading, body = robustness_old[:2], robustness_old[2:]
        if body[:2] == [ROBUSTNESS_CARRIED, ""]:  # carried once before: its note is not repeated
            body = body[2:]
        text = text[:-1] + [*heading, ROBUSTNESS_CARRIED, "", *body, text[-1]]
    return text


def write_engine_report(args, runs: list[Run], names: list[str]) -> dict:
    """Scores the finished runs and the classical baseline; writes REPORT_FILE, per_seed.csv and summary.csv into
    args.results, with the published rows of any run that is not here carried over (carry_published). Returns the
    statistics (key → metric → Spread)."""
    print(f"== scoring on the engine test split and the motorcycle ({'quick sizes' if args.quick else 'full'})",
          flush=True)
    collected = collect_records(runs, args.workdir, args.sizes, args.data_dir, args.command)
    path = os.path.join(args.results, REPORT_FILE)
    rows, names, carried = carry_published(args, per_seed_rows(collected), names)
    if not runs_of(rows):
        raise SystemExit(f"no finished run under {args.workdir}; run `python -m experiments.ablation --phase=train` "
                         "first.")
    published_report = [section(path, heading, CLOSING_LINE) for heading in (LOSSES_HEADING, ROBUSTNESS_HEADING)]
    stats = aggregate(rows)
    os.makedirs(args.results, exist_ok=True)
    write_per_seed_csv(os.path.join(args.results, PER_SEED_FILE), rows)
    write_summary_csv(os.path.join(args.results, "summary.csv"), stats)
    text = report_markdown(args, rows, stats, names)
    # before the closing line that points to the CSV files
    carried_methods = [n for n in names if any(r["method"] == n for r in carried)]
    # the section ranks stacks by the variants' per-image scores: computed only when no variant is carried
    robustness = ([] if set(carried_methods) & set(variant_names(names))
                  else robustness_section(collected, variant_names(names)))
    text[-1:-1] = robustness
    if carried:
        text = fill_carried_sections(text, published_report, carried_methods, bool(robustness))
        text[4:4] = carried_note(args, carried)  # after the header
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(text) + "\n")
    methods = ordered_methods(stats, variant_names(names))
    print("\n".join(stats_table(stats, methods, "abs_rel", [(REGION_LABELS[r], (ENGINE, r, "all", ""))
                                                            for r in REGIONS])))
    print(f"wrote {path}, {PER_SEED_FILE} and summary.csv", flush=True)
    return stats


# ---------------------------------------------------------------- the learning-curve check


def curve_values(rows_by_budget: dict[int, list[dict]]) -> dict[int, dict[str, dict[tuple[str, str], float]]]:
    """budget → variant → (region, metric) → value on the whole engine test split, from per-seed rows (one seed)."""
    values: dict[int, dict[str, dict[tuple[str, str], float]]] = {}
    for budget, rows in rows_by_budget.items():
        for row in rows:
            if row["dataset"] == ENGINE and row["group_by"] == "all":
                entry = values.setdefault(budget, {}).setdefault(row["method"], {})
                entry.update({(row["region"], metric): row[metric] for metric in REPORTED})
    return values


def curve_gaps(values: dict, variant: str = CURVE_VARIANTS[0], reference: str = CURVE_VARIANTS[1]) -> dict:
    """budget → (region, metric) → 100·(variant / reference − 1), for the budgets that have both."""
    gaps = {}
    for budget in sorted(values):
        ours, theirs = values[budget].get(variant), values[budget].get(reference)
        if ours is None or theirs is None:
            continue
        gaps[budget] = {q: (100.0 * (ours[q] / theirs[q] - 1.0) if theirs.get(q) else float("nan")) for q in ours
                        if q in theirs}
    return gaps


def gap_agrees(gap: float, final: float) -> bool:
    """Whether a smaller budget's gap says what the largest budget's does: no gap for a final gap under
    NO_GAP_PERCENT (then any gap under twice that agrees), else the same sign and a size within SIZE_RATIO."""
    if not (np.isfinite(gap) and np.isfinite(final)):
        return False
    if abs(final) < NO_GAP_PERCENT:
        return abs(gap) < 2 * NO_GAP_PERCENT
    ratio = gap / final
    return SIZE_RATIO[0] <= ratio <= SIZE_RATIO[1]


def choose_budget(gaps: dict, quantities=CURVE_QUANTITIES) -> tuple[int | None, dict]:
    """(the smallest budget whose gaps agree with the largest budget's on every quantity (the largest if none
    does), budget → quantity → agrees). A quantity without a finite gap at the largest budget (a region no
    scored image has) is left out of the rule."""
    if not gaps:
        return None, {}
    budgets = sorted(gaps)
    final = gaps[budgets[-1]]
    quantities = [q for q in quantities if np.isfinite(final.get(q, float("nan")))]
    agreement = {b: {q: gap_agrees(gaps[b].get(q, float("nan")), final[q]) for q in quantities} for b in budgets}
    chosen = next((b for b in budgets[:-1] if all(agreement[b].values())), budgets[-1])
    return chosen, agreement


CURVE_RULE = (
    "**Rule.** The sweep's budget is the smallest at which the DualFocus − DFV gap agrees with the gap at the "
    f"largest budget on every one of {len(CURVE_QUANTITIES)} quantities (AbsRel and RMSE / focus range, each on all "
    "pixels, depth edges and fine texture; those with a value at the largest budget): the same sign and between "
    f"{SIZE_RATIO[0]:g} and {SIZE_RATIO[1]:g} times its size; a gap under {NO_GAP_PERCENT:g}% at the largest "
    f"budget counts as no gap, matched by any gap under {2 * NO_GAP_PERCENT:g}%. If no smaller budget agrees, the "
    "largest is the budget. Why this suffices: the ablation asks for the sign and rough size of each constraint's "
    "effect, not for the best absolute score; a budget whose gaps already have the sign and size they have at the "
    "largest budget answers it, and the seeds of the sweep then measure the spread the single curve seed cannot. "
    "RMSE in metres is shown but not used: on the engine it is dominated by the far DSLR scenes.")


def training_rate(directory: str) -> float:
    """Median steps per second over a run's logged training intervals (NaN without a log)."""
    path = os.path.join(directory, "metrics", "train.jsonl")
    if not os.path.isfile(path):
        return float("nan")
    with open(path, encoding="utf-8") as handle:
        rates = [json.loads(line).get("steps_per_second") for line in handle if line.strip()]
    rates = [r for r in rates if r]
    return float(np.median(rates)) if rates else float("nan")


def curve_markdown(args, values: dict, gaps: dict, chosen: int | None, agreement: dict,
                   rates: dict[int, float], sweep_runs: int) -> list[str]:
    budgets = sorted(gaps)
    variant, reference = CURVE_VARIANTS
    text = _header(args, "Learning-curve check: the DualFocus − DFV gap per training budget")
    if args.quick:
        text += ["**Smoke run (--quick): tiny training and evaluation; the numbers are no result.**", ""]
    text += [
        f"One seed ({args.seeds[0]}); per budget, {label(variant)} and {label(reference)} are trained from scratch "
        f"with `configs/engine_small.py:variant=V,steps=N` (each budget its own warm-up + cosine schedule) and "
        "scored on the engine test split as in ablation_engine.md. Gap = 100 · (DualFocus / DFV − 1) %: negative "
        "means the constraints help.", "",
        "| budget | " + " | ".join(f"{METRIC_LABELS[m]} · {REGION_LABELS[r]}" for r, m in CURVE_SHOWN) + " |",
        "|---" * (len(CURVE_SHOWN) + 1) + "|"]
    for budget in budgets:
        cells = []
        for q in CURVE_SHOWN:
            ours, theirs = (values[budget][v].get(q, float("nan")) for v in (variant, reference))
            mark = " ✓" if agreement.get(budget, {}).get(q) else ""
            gap = gaps[budget].get(q, float("nan"))
            cells.append(f"{_number(ours, q[1])} vs {_number(theirs, q[1])} ({gap:+.1f}%{mark})" if np.isfinite(gap)
                         else "–")
        text.append(f"| {budget} | " + " | ".join(cells) + " |")
    text += ["", "Cells: DualFocus vs DFV (gap); ✓: a quantity of the rule on which the budget agrees with the "
             "largest budget.", "", CURVE_RULE, ""]
    if chosen is not None:
        rate = rates.get(chosen, float("nan"))
        estimate = (f" At the measured training rate of this budget's runs ({rate:.2f} steps/s, median of the "
                    f"logged intervals, on this machine and its load), the sweep's {sweep_runs} runs take about "
                    f"{sweep_runs * chosen / rate / 3600:.1f} h of training." if np.isfinite(rate) and rate > 0 else "")
        text += [f"**Chosen budget: {chosen} updates**"
                 + (" (the largest: no smaller budget agrees)." if chosen == budgets[-1] and len(budgets) > 1
                    else ".") + estimate,
                 "", f"Run the sweep with it: `python -m experiments.ablation --steps={chosen}`.", ""]
    text += ["Training rate per budget (median steps/s over the logged intervals, DualFocus and DFV averaged): "
             + ", ".join(f"{b}: {rates.get(b, float('nan')):.2f}" for b in budgets) + "."]
    return text


def write_curve_report(args, runs: list[Run], sweep_runs: int) -> tuple[int | None, dict]:
    """Scores the curve's finished runs; writes CURVE_REPORT and curve.csv into args.results. Returns
    (chosen budget, gaps)."""
    print("== scoring the learning-curve runs on the engine test split", flush=True)
    scored = score_runs(runs, lazy_scenes(args.sizes, args.data_dir), args.sizes, args.command)
    rows_by_budget: dict[int, list[dict]] = {}
    for run, records in scored.items():
        rows_by_budget.setdefault(run.steps, []).extend(per_seed_rows({(run.name, run.seed): records}))
    values = curve_values(rows_by_budget)
    gaps = curve_gaps(values)
    if not gaps:
        raise SystemExit(f"no budget with both {' and '.join(CURVE_VARIANTS)} finished under {args.workdir}/curve; "
                         "run `python -m experiments.ablation --phase=curve` (it trains them) first.")
    chosen, agreement = choose_budget(gaps)
    rates = {}
    for budget in gaps:
        measured = [training_rate(run.directory) for run in runs if run.steps == budget]
        measured = [r for r in measured if np.isfinite(r)]
        rates[budget] = float(np.mean(measured)) if measured else float("nan")
    os.makedirs(args.results, exist_ok=True)
    with open(os.path.join(args.results, "curve.csv"), "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["budget", "region", "metric", *CURVE_VARIANTS, "gap_percent", "agrees_with_largest",
                         "steps_per_second"])
        for budget in sorted(gaps):
            for region, metric in CURVE_SHOWN:
                writer.writerow([budget, region, metric,
                                 *(f"{values[budget][v].get((region, metric), float('nan')):.6g}"
                                   for v in CURVE_VARIANTS),
                                 f"{gaps[budget].get((region, metric), float('nan')):.4g}",
                                 agreement[budget].get((region, metric), ""), f"{rates[budget]:.4g}"])
    text = curve_markdown(args, values, gaps, chosen, agreement, rates, sweep_runs)
    path = os.path.join(args.results, CURVE_REPORT)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("\n".join(text) + "\n")
    print("\n".join(text[4:]), flush=True)
    print(f"wrote {path} and curve.csv", flush=True)
    return chosen, gaps

