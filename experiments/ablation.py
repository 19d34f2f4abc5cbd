"""The constraint ablation: the `small` network in its five variants × several seeds, under one training budget.

    python -m experiments.ablation                     # train what is missing, then evaluate and publish
    python -m experiments.ablation --phase=train       # only the trainings (resumable: re-run to continue)
    python -m experiments.ablation --phase=report      # only the evaluation + tables of finished runs
    python -m experiments.ablation --phase=sensitivity # DualFocus with one setting changed (seed 0), then report
    python -m experiments.ablation --phase=sensitivity --sensitivity_runs=dualfocus-stride8 --sensitivity_seeds=1,2
    python -m experiments.ablation --steps=40 --seeds=0 --workdir=/tmp/abl --results=/tmp/abl/results  # smoke

Every run is `python -m experiments.train --config configs/demo.py:variant=V --config.seed=S` with the same
steps, batch, crops, optimiser and data (synthetic_focal train[:180]); only the variant and the seed change.
Runs go to <workdir>/<variant>_seed<S>/ and one that reached its last step is not trained again. The report
phase (experiments/ablation_report.py) scores the final checkpoint of each run on the synthetic_focal test split
and on the motorcycle scene, over all pixels, depth-edge pixels and fine-texture pixels
(dualfocus_jax/evaluation/regions.py), beside the classical baseline with and without its refinement, and writes
<results>/ablation.{md,csv} and a picture of where the constraints change the prediction. The sensitivity
runs (SENSITIVITY: solver resolution, λ_sv, λ_fv, τ) are the full model with one setting changed; the report
adds them, when present, as a table beside the seed spread of the default settings.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from dualfocus_jax.model.config import VARIANTS
from experiments.ablation_report import write_report
from experiments.ablation_runs import SENSITIVITY, finished, run_dir, variant_and_overrides

DEFAULT_STEPS = 1200


def train_command(name: str, seed: int, steps: int, workdir: str) -> list[str]:
    # The demo recipe with a fixed budget; only training (the report phase scores every run with masks).
    variant, overrides = variant_and_overrides(name)
    return [sys.executable, "-m", "experiments.train", f"--config=configs/demo.py:variant={variant}",
            f"--workdir={run_dir(workdir, name, seed)}", "--mode=train", f"--config.seed={seed}",
            f"--config.train.total_steps={steps}", f"--config.train.validate_every_steps={max(steps // 4, 1)}",
            f"--config.checkpoint.every_steps={max(steps // 4, 1)}",
            *(f"--config.model.{key}={value}" for key, value in overrides.items())]


def train_all(names, seeds, steps: int, workdir: str) -> None:
    # Seed-major order: an interrupted sweep still has every run name for the seeds it finished.
    runs = [(name, seed) for seed in seeds for name in names]
    for index, (name, seed) in enumerate(runs, 1):
        if finished(workdir, name, seed, steps):
            print(f"[{index}/{len(runs)}] {name} seed {seed}: done before, skipped", flush=True)
            continue
        log_path = run_dir(workdir, name, seed) + ".log"
        os.makedirs(workdir, exist_ok=True)
        print(f"[{index}/{len(runs)}] training {name} seed {seed} for {steps} steps (log: {log_path})",
              flush=True)
        started = time.perf_counter()
        with open(log_path, "a", encoding="utf-8") as log:
            code = subprocess.call(train_command(name, seed, steps, workdir), stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            raise SystemExit(f"training {name} seed {seed} failed (exit {code}); see {log_path}. Re-running "
                             "this command resumes it from its last checkpoint.")
        print(f"    finished in {time.perf_counter() - started:.0f} s", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=["all", "train", "report", "sensitivity"], default="all")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of " + ",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated integer seeds")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help="optimizer updates per run")
    parser.add_argument("--workdir", default=os.path.join("runs", "ablation"))
    parser.add_argument("--results", default=os.path.join("experiments", "results"))
    parser.add_argument("--motorcycle_downscale", type=int, default=2)
    parser.add_argument("--sensitivity_runs", default=",".join(SENSITIVITY),
                        help="with --phase=sensitivity: comma-separated subset of " + ",".join(SENSITIVITY))
    parser.add_argument("--sensitivity_seeds", default="0", help="with --phase=sensitivity: seeds to train")
    args = parser.parse_args(argv)
    args.sensitivity_runs = [n.strip() for n in args.sensitivity_runs.split(",") if n.strip()]
    if set(args.sensitivity_runs) - set(SENSITIVITY):
        parser.error(f"unknown sensitivity runs {sorted(set(args.sensitivity_runs) - set(SENSITIVITY))}; choose "
                     f"from {list(SENSITIVITY)}.")
    try:
        args.sensitivity_seeds = [int(s) for s in args.sensitivity_seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sensitivity_seeds must be comma-separated integers, got {args.sensitivity_seeds!r}.")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}.")
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}.")
    if args.steps < 1 or not args.seeds or not args.variants:
        parser.error("need --steps ≥ 1, at least one seed and one variant.")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.phase in ("all", "train"):
        train_all(args.variants, args.seeds, args.steps, args.workdir)
    if args.phase == "sensitivity":
        train_all(args.sensitivity_runs, args.sensitivity_seeds, args.steps, args.workdir)
    if args.phase in ("all", "report", "sensitivity"):
        write_report(args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
