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

import os
import subprocess
import sys
import time
from types import SimpleNamespace

from absl import flags

from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.model.config import VARIANTS
from experiments.ablation_report import write_report
from experiments.ablation_runs import SENSITIVITY, finished, run_dir, variant_and_overrides

DEFAULT_STEPS = 1200


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


FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_enum("phase", "all", ["all", "train", "report", "sensitivity"], "what to run", flag_values=FLAGS)
flags.DEFINE_list("variants", list(VARIANTS), "comma-separated subset of " + ",".join(VARIANTS), flag_values=FLAGS)
flags.DEFINE_list("seeds", ["0", "1", "2"], "comma-separated integer seeds", flag_values=FLAGS)
flags.DEFINE_integer("steps", DEFAULT_STEPS, "optimizer updates per run", lower_bound=1, flag_values=FLAGS)
flags.DEFINE_string("workdir", os.path.join("runs", "ablation"), "folder of the runs", flag_values=FLAGS)
flags.DEFINE_string("results", os.path.join("experiments", "results"), "folder for the tables and pictures",
                    flag_values=FLAGS)
flags.DEFINE_integer("motorcycle_downscale", 2, "downscale of the motorcycle scene", flag_values=FLAGS)
flags.DEFINE_list("sensitivity_runs", list(SENSITIVITY),
                  "with --phase=sensitivity: comma-separated subset of " + ",".join(SENSITIVITY), flag_values=FLAGS)
flags.DEFINE_list("sensitivity_seeds", ["0"], "with --phase=sensitivity: seeds to train", flag_values=FLAGS)
flags.register_validator("variants", _names_among(VARIANTS, "variants"), flag_values=FLAGS)
flags.register_validator("variants", lambda names: any(names), "needs at least one variant.", flag_values=FLAGS)
flags.register_validator("seeds", _integers, flag_values=FLAGS)
flags.register_validator("seeds", lambda names: any(names), "needs at least one seed.", flag_values=FLAGS)
flags.register_validator("sensitivity_runs", _names_among(SENSITIVITY, "sensitivity runs"), flag_values=FLAGS)
flags.register_validator("sensitivity_seeds", _integers, flag_values=FLAGS)


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


def parse_args(argv=None) -> SimpleNamespace:
    """The command's settings from `argv` (without the program name; None: the command line), lists split."""
    parse_flags(FLAGS, argv, program="python -m experiments.ablation", doc=__doc__)
    return SimpleNamespace(
        phase=FLAGS.phase, variants=[v for v in FLAGS.variants if v], seeds=[int(s) for s in FLAGS.seeds if s],
        steps=FLAGS.steps, workdir=FLAGS.workdir, results=FLAGS.results,
        motorcycle_downscale=FLAGS.motorcycle_downscale,
        sensitivity_runs=[n for n in FLAGS.sensitivity_runs if n],
        sensitivity_seeds=[int(s) for s in FLAGS.sensitivity_seeds if s])


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
