"""The constraint ablation: the `small` network in its five variants × several seeds, under one training budget.

Engine recipe (the default, issue 16): every run is

    python -m experiments.train --config=configs/engine_small.py:variant=V,steps=N --config.seed=S --mode=train

(stage 1 of the shipped model's recipe: the focal-stack engine's endless stacks, 64×64 crops, 3/5/7/10/16 slices,
batch 4, AdamW 1e-3 with warm-up and cosine decay); only the variant and the seed change. Commands, in order:

    python -m experiments.ablation --phase=curve            # 1. the budget: DualFocus and DFV, seed 0, at 1k/3k/10k
    python -m experiments.ablation --steps=N --phase=train  # 2. the sweep at the budget curve.md chooses (resumable)
    python -m experiments.ablation --steps=N --phase=report     # 3. scores and tables of the finished runs
    python -m experiments.ablation --steps=N --phase=mechanism  # 4. the mechanism pictures (dualfocus, no_focal)
    python -m experiments.ablation --steps=N                # 2-4 in one go (train what is missing, report, pictures)
    python -m experiments.ablation --steps=N --phase=sensitivity --sensitivity_runs=dualfocus-stride8 \
        --sensitivity_seeds=0,1,2                           # the full model with one setting changed
    python -m experiments.ablation --quick --steps=4 --seeds=0 --variants=dualfocus,dfv --workdir=/tmp/abl \
        --results=/tmp/abl/results                          # smoke run: tiny crops and evaluation, a few minutes

What each phase writes (workdir runs/ablation_engine/, results experiments/results/ablation_engine/ by default):
  curve       trains <workdir>/curve/<variant>_steps<N>/ for dualfocus and dfv at each --curve_steps (each budget its
              own run with its own cosine schedule; seed: the first of --seeds), scores them on the engine test split
              and writes <results>/curve.md and curve.csv: the DualFocus − DFV gap per budget (RMSE, AbsRel, RMSE /
              focus range on all pixels, depth edges, fine texture), the budget the rule there chooses and the
              sweep's training time at the measured rate.
  train       trains <workdir>/<variant>_seed<S>/ for every --variants × --seeds, seed-major; a run that reached its
              last step is skipped, an interrupted one continues from its last checkpoint; a run whose command equals
              a finished curve run's (same variant, seed and budget) is copied from it instead of trained again.
              Each run's output goes to <workdir>/<variant>_seed<S>.log.
  report      scores every finished run (cached in the run as ablation_engine_records.json) and the classical baseline
              (raw and refined; cached in <workdir>/classical_records.json) on the engine's fixed test split (27
              stacks per slice count 3/5/7/10/16) and the motorcycle at 5 and 10 slices; writes
              <results>/ablation_engine.md (mean ± std over seeds per hard family, region, slice count, the
              motorcycle, training losses, sensitivity runs, and how much the means rest on a few stacks),
              per_seed.csv and summary.csv (experiments/ablation_engine.py). It also scores each finished dualfocus
              run without the inference-time unimodal projection (dualfocus-raw_p, INFERENCE_SENSITIVITY: nothing
              trained). A (method, seed) of the published per_seed.csv in <results> whose checkpoint is not
              in <workdir> (a fresh clone, a cleaned workdir) keeps its published rows, once the classical baseline
              scored again matches the published one (experiments/ablation_published.py): a new sensitivity run
              is reported beside the published sweep without training the sweep again.
  mechanism   for the first seed's dualfocus (and no_focal) runs: <results>/mechanism_<family>.png (the spatial
              branch's gradient fields, integrated surfaces and in-focus weights per focal plane on hard test scenes),
              focus_curves.png and mechanism.md (how unimodal the raw focus curves are with and without L_fv)
              (experiments/ablation_mechanism.py).
  sensitivity trains the full model with one setting changed (SENSITIVITY in experiments/ablation_runs.py), then report.

Time on 2 CPU cores (measured over 20 steps of each recipe run at 64² crops, partly shared with another job):
about 2.5 updates/s for DualFocus and 2.8 for DFV once compiled, plus a first compile of about 1 min per slice count
for DualFocus (5 counts; 35 s each for DFV) that the sweep's shared compilation cache (<workdir>/compilation_cache)
spares a variant's later runs. So about 7 min of updates per 1000 steps: the curve phase (2 × 14,000 updates) about
3 h, a 15-run sweep at 3000 updates about 5 h (at 10,000 about 16 h). Scoring a run on the whole test split takes
under a minute, the classical baseline once about a minute, the mechanism phase about a minute.

Synthetic recipe (the published old ablation, experiments/results/ablation.md): `--recipe=synthetic` trains
`configs/demo.py:variant=V` on synthetic_focal train[:180] into runs/ablation/<variant>_seed<S>/ and its report
(experiments/ablation_report.py) scores the synthetic_focal test split and the motorcycle into
<results>/ablation.{md,csv} and two pictures (results: experiments/results/):

    python -m experiments.ablation --recipe=synthetic --steps=1200 --seeds=0,1,2     # the published tables
    python -m experiments.ablation --recipe=synthetic --phase=sensitivity --sensitivity_runs=dualfocus-stride8

--quick: `:runlocal` training (32×32 crops, 3-4 slices, batch 2, fast compiles) and tiny evaluation sizes
(evaluate_generalisation's --quick sizes; the mechanism at 32×32): a smoke run of the whole pipeline, no result.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from types import SimpleNamespace

from absl import flags

from dualfocus_jax.command_flags import parse_flags, usage_error
from dualfocus_jax.compilation_cache import enable_compilation_cache
from dualfocus_jax.model.config import VARIANTS
from dualfocus_jax.training.checkpointing import latest_saved_step
from experiments.ablation_engine import write_curve_report, write_engine_report
from experiments.ablation_mechanism import QUICK_MECHANISM, MechanismSizes, write_mechanism
from experiments.ablation_report import write_report
from experiments.ablation_runs import (
    ALL_SENSITIVITY,
    CURVE_VARIANTS,
    DEFAULT_CURVE_STEPS,
    DEFAULT_RESULTS,
    DEFAULT_STEPS,
    DEFAULT_WORKDIRS,
    RECIPES,
    SENSITIVITY,
    Run,
    curve_run_dir,
    curve_runs,
    inference_runs,
    run_finished,
    sweep_runs,
    variant_and_overrides,
)
from experiments.evaluate_generalisation import QUICK, Sizes

PHASES = ("all", "train", "report", "sensitivity", "curve", "mechanism")
ENGINE_ONLY = ("curve", "mechanism")
COMMAND_FILE = "ablation_command.json"  # the training command's arguments, without the workdir
CACHE_FOLDER = "compilation_cache"  # beside the runs: shared by the runs of one folder


def _names_among(known, what: str):
    def check(names: list[str]) -> bool:
        unknown = sorted(set(name for name in names if name) - set(known))
        if unknown:
            raise flags.ValidationError(f"unknown {what} {unknown}; choose from {list(known)}.")
        return True
    return check


def _integers(texts: list[str]) -> bool:
    if not all(text.lstrip("-").isdigit() for text in texts if text):
        raise flags.ValidationError(f"needs comma-separated integers, got {','.join(texts)!r}.")
    return True


def _positive_integers(texts: list[str]) -> bool:
    if not all(text.isdigit() and int(text) > 0 for text in texts if text):
        raise flags.ValidationError(f"needs comma-separated positive integers, got {','.join(texts)!r}.")
    return True


FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_enum("recipe", "engine", list(RECIPES), "engine: configs/engine_small.py stage 1 (the default); "
                  "synthetic: configs/demo.py on synthetic_focal (the published old ablation)", flag_values=FLAGS)
flags.DEFINE_enum("phase", "all", list(PHASES), "what to run (curve and mechanism: engine recipe only)",
                  flag_values=FLAGS)
flags.DEFINE_list("variants", list(VARIANTS), "comma-separated subset of " + ",".join(VARIANTS), flag_values=FLAGS)
flags.DEFINE_list("seeds", ["0", "1", "2"], "comma-separated integer seeds (the curve and the mechanism use the first)",
                  flag_values=FLAGS)
flags.DEFINE_integer("steps", None, "optimizer updates per run of the sweep (default: engine "
                     f"{DEFAULT_STEPS['engine']}, synthetic {DEFAULT_STEPS['synthetic']}; for the engine, pass the "
                     "budget curve.md chooses)", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_list("curve_steps", [str(s) for s in DEFAULT_CURVE_STEPS], "with --phase=curve: the budgets",
                  flag_values=FLAGS)
flags.DEFINE_string("workdir", None, "folder of the runs (default: runs/ablation_engine, synthetic: runs/ablation)",
                    flag_values=FLAGS)
flags.DEFINE_string("results", None, "folder for the tables and pictures (default: "
                    "experiments/results/ablation_engine, synthetic: experiments/results)", flag_values=FLAGS)
flags.DEFINE_bool("quick", False, "smoke run: :runlocal training and tiny evaluation sizes", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "TFDS data_dir of the engine test split (default $TFDS_DATA_DIR or "
                    "~/tensorflow_datasets; prepared there on first use)", flag_values=FLAGS)
flags.DEFINE_integer("motorcycle_downscale", 2, "downscale of the motorcycle scene (synthetic recipe)",
                     flag_values=FLAGS)
flags.DEFINE_list("sensitivity_runs", list(SENSITIVITY),
                  "with --phase=sensitivity: comma-separated subset of " + ",".join(SENSITIVITY), flag_values=FLAGS)
flags.DEFINE_list("sensitivity_seeds", ["0"], "with --phase=sensitivity: seeds to train", flag_values=FLAGS)
flags.register_validator("variants", _names_among(VARIANTS, "variants"), flag_values=FLAGS)
flags.register_validator("variants", lambda names: any(names), "needs at least one variant.", flag_values=FLAGS)
flags.register_validator("seeds", _integers, flag_values=FLAGS)
flags.register_validator("seeds", lambda names: any(names), "needs at least one seed.", flag_values=FLAGS)
flags.register_validator("curve_steps", _positive_integers, flag_values=FLAGS)
flags.register_validator("curve_steps", lambda names: any(names), "needs at least one budget.", flag_values=FLAGS)
flags.register_validator("sensitivity_runs", _names_among(SENSITIVITY, "sensitivity runs"), flag_values=FLAGS)
flags.register_validator("sensitivity_seeds", _integers, flag_values=FLAGS)


def train_command(run: Run, recipe: str = "engine", quick: bool = False) -> list[str]:
    """The training command of one run: the recipe with a fixed budget; only training (the report phase scores
    every run with region masks)."""
    variant, overrides = variant_and_overrides(run.name)
    steps = run.steps
    every = max(steps // 4, 1)
    if recipe == "engine":
        config = f"configs/engine_small.py:variant={variant},steps={steps}" + (",runlocal" if quick else "")
        budget = [f"--config.train.total_steps={steps}"] if quick else []  # runlocal sets its own
        checkpoints = max(min(500, every), 1)  # often enough to resume a long run without losing much
        # One compilation cache for the sweep: a variant's later seeds skip its five slice counts' compiles
        # (about a minute each for DualFocus on 2 CPU cores).
        budget.append(f"--config.compilation_cache_dir={os.path.join(os.path.dirname(run.directory), CACHE_FOLDER)}")
    elif recipe == "synthetic":
        config = f"configs/demo.py:variant={variant}" + (",runlocal" if quick else "")
        budget = [f"--config.train.total_steps={steps}"]
        checkpoints = every
    else:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}.")
    return [sys.executable, "-m", "experiments.train", f"--config={config}", f"--workdir={run.directory}",
            "--mode=train", f"--config.seed={run.seed}", *budget,
            f"--config.train.validate_every_steps={every}", f"--config.checkpoint.every_steps={checkpoints}",
            *(f"--config.model.{key}={value}" for key, value in overrides.items())]


def recorded_arguments(command: list[str]) -> list[str]:
    """A training command's arguments without the interpreter, the workdir and the compilation cache: equal for
    two runs that train the same thing."""
    return [argument for argument in command[1:]
            if not argument.startswith(("--workdir=", "--config.compilation_cache_dir="))]


def reusable_curve_run(run: Run, command: list[str], workdir: str) -> str | None:
    """The folder of a finished curve run trained by the same command as `run` (bar the workdir), or None."""
    folder = curve_run_dir(workdir, run.name, run.steps)
    path = os.path.join(folder, COMMAND_FILE)
    if folder == run.directory or not os.path.isfile(path) or not run_finished(Run(run.name, run.seed, run.steps,
                                                                                      folder)):
        return None
    with open(path, encoding="utf-8") as handle:
        recorded = json.load(handle).get("arguments")
    return folder if recorded == recorded_arguments(command) else None


def train_all(runs: list[Run], recipe: str, quick: bool, workdir: str) -> None:
    for index, run in enumerate(runs, 1):
        tag = f"[{index}/{len(runs)}] {run.name} seed {run.seed}, {run.steps} steps"
        if run_finished(run):
            print(f"{tag}: done before, skipped", flush=True)
            continue
        command = train_command(run, recipe, quick)
        source = reusable_curve_run(run, command, workdir) if latest_saved_step(run.directory) is None else None
        if source is not None:
            shutil.rmtree(run.directory, ignore_errors=True)  # holds no checkpoint
            shutil.copytree(source, run.directory)
            print(f"{tag}: copied from the curve run {source} (the same command)", flush=True)
            continue
        log_path = run.directory.rstrip(os.sep) + ".log"
        os.makedirs(run.directory, exist_ok=True)
        with open(os.path.join(run.directory, COMMAND_FILE), "w", encoding="utf-8") as handle:
            json.dump({"arguments": recorded_arguments(command)}, handle, indent=1)
        print(f"{tag}: training (log: {log_path})", flush=True)
        started = time.perf_counter()
        with open(log_path, "a", encoding="utf-8") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            raise SystemExit(f"training {run.name} seed {run.seed} failed (exit {code}); see {log_path}. Re-running "
                             "this command resumes it from its last checkpoint.")
        print(f"    finished in {time.perf_counter() - started:.0f} s", flush=True)


def parse_args(argv=None) -> SimpleNamespace:
    """The command's settings from `argv` (without the program name; None: the command line), lists split and
    the recipe's defaults filled in."""
    parse_flags(FLAGS, argv, program="python -m experiments.ablation", doc=__doc__)
    recipe = FLAGS.recipe
    if recipe != "engine" and FLAGS.phase in ENGINE_ONLY:
        usage_error(f"--phase={FLAGS.phase} belongs to the engine recipe (--recipe=engine).")
    given = " ".join(argv if argv is not None else sys.argv[1:])
    return SimpleNamespace(
        recipe=recipe, phase=FLAGS.phase, variants=[v for v in FLAGS.variants if v],
        seeds=[int(s) for s in FLAGS.seeds if s], steps=FLAGS.steps or DEFAULT_STEPS[recipe],
        curve_steps=sorted({int(s) for s in FLAGS.curve_steps if s}),
        workdir=FLAGS.workdir or DEFAULT_WORKDIRS[recipe], results=FLAGS.results or DEFAULT_RESULTS[recipe],
        quick=FLAGS.quick, data_dir=FLAGS.data_dir, motorcycle_downscale=FLAGS.motorcycle_downscale,
        sensitivity_runs=[n for n in FLAGS.sensitivity_runs if n],
        sensitivity_seeds=[int(s) for s in FLAGS.sensitivity_seeds if s],
        sizes=QUICK if FLAGS.quick else Sizes(),
        mechanism_sizes=QUICK_MECHANISM if FLAGS.quick else MechanismSizes(),
        command=f"python -m experiments.ablation {given}".strip())


def engine_runs(args) -> tuple[list[Run], list[str]]:
    """(the sweep's runs and the finished sensitivity runs at its budget, the run names in table order)."""
    names = list(args.variants)
    runs = sweep_runs(names, args.seeds, args.steps, args.workdir)
    seeds = sorted({*args.seeds, *args.sensitivity_seeds})
    extra = [run for run in sweep_runs(list(SENSITIVITY), seeds, args.steps, args.workdir)
             + inference_runs(args.seeds, args.steps, args.workdir) if run_finished(run)]
    return runs + extra, names + [n for n in ALL_SENSITIVITY if any(run.name == n for run in extra)]


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.recipe == "synthetic":
        if args.phase in ("all", "train"):
            train_all(sweep_runs(args.variants, args.seeds, args.steps, args.workdir), "synthetic", args.quick,
                      args.workdir)
        if args.phase == "sensitivity":
            train_all(sweep_runs(args.sensitivity_runs, args.sensitivity_seeds, args.steps, args.workdir),
                      "synthetic", args.quick, args.workdir)
        if args.phase in ("all", "report", "sensitivity"):
            write_report(args)
        return 0
    enable_compilation_cache()
    if args.phase == "curve":
        runs = curve_runs(args.curve_steps, args.seeds[0], args.workdir, CURVE_VARIANTS)
        train_all(runs, "engine", args.quick, args.workdir)
        write_curve_report(args, runs, sweep_runs=len(args.variants) * len(args.seeds))
        return 0
    if args.phase in ("all", "train"):
        train_all(sweep_runs(args.variants, args.seeds, args.steps, args.workdir), "engine", args.quick, args.workdir)
    if args.phase == "sensitivity":
        train_all(sweep_runs(args.sensitivity_runs, args.sensitivity_seeds, args.steps, args.workdir), "engine",
                  args.quick, args.workdir)
    if args.phase in ("all", "mechanism"):
        write_mechanism(args, args.mechanism_sizes)
    if args.phase in ("all", "report", "sensitivity"):
        runs, names = engine_runs(args)
        write_engine_report(args, runs, names)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
