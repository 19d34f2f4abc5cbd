"""The runs of the constraint ablation (experiments/ablation.py): their names, model settings and folders.

Shared by the sweep (experiments/ablation.py), its scoring and reports (experiments/ablation_scoring.py,
experiments/ablation_report.py for the synthetic recipe, experiments/ablation_engine.py and
experiments/ablation_mechanism.py for the engine recipe), which import this module and not each other in a circle.
"""

from __future__ import annotations

import dataclasses
import os

from dualfocus_jax.training.checkpointing import latest_saved_step

# name → (variant, model overrides): the full model with one setting changed. At the demo's and the engine's
# stage-1 64×64 training crops the default solver_stride 16 gives the spatial solver a 4×4 grid, hence the
# finer strides.
SENSITIVITY = {
    "dualfocus-stride4": ("dualfocus", {"solver_stride": 4}),
    "dualfocus-stride8": ("dualfocus", {"solver_stride": 8}),
    "dualfocus-lambda_sv1": ("dualfocus", {"lambda_sv": 1.0}),
    "dualfocus-lambda_fv10": ("dualfocus", {"lambda_fv": 10.0}),
    "dualfocus-tau0.25": ("dualfocus", {"tau_rel": 0.25}),
}

# name → (the sweep run it scores again, inference-time model overrides): the same checkpoints predicted another
# way, nothing trained. "dualfocus-raw_p" asks whether the focal constraint's effect comes from the inference-time
# projection of p onto unimodal curves rather than from L_fv in training (engine recipe only).
INFERENCE_SENSITIVITY = {
    "dualfocus-raw_p": ("dualfocus", {"project_unimodal_at_inference": False}),
}


# Every sensitivity run's name, trained ones first: the report's rows after the variants.
ALL_SENSITIVITY = (*SENSITIVITY, *INFERENCE_SENSITIVITY)


def sensitivity_settings(name: str) -> dict:
    """The settings a sensitivity run (trained or inference-only) changes from the full model."""
    return {**SENSITIVITY, **INFERENCE_SENSITIVITY}[name][1]


# The training recipes: "engine" (configs/engine_small.py, stage 1: the focal-stack engine, 64² crops, 3/5/7/10/16
# slices), the default; "synthetic" (configs/demo.py on synthetic_focal train[:180]), the published old ablation.
RECIPES = ("engine", "synthetic")
DEFAULT_WORKDIRS = {"engine": os.path.join("runs", "ablation_engine"), "synthetic": os.path.join("runs", "ablation")}
DEFAULT_RESULTS = {"engine": os.path.join("experiments", "results", "ablation_engine"),
                   "synthetic": os.path.join("experiments", "results")}
# Budgets (optimizer updates): the synthetic recipe's published one; for the engine, the middle of the default
# learning curve until the curve phase has chosen one (its report says which; pass it as --steps).
DEFAULT_STEPS = {"engine": 3000, "synthetic": 1200}
# The learning-curve check: DualFocus against DFV (neither constraint) on one seed, one run per budget.
CURVE_VARIANTS = ("dualfocus", "dfv")
DEFAULT_CURVE_STEPS = (1000, 3000, 10000)
CURVE_FOLDER = "curve"


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: `name` is a variant or a key of SENSITIVITY; `directory` its training workdir."""

    name: str
    seed: int
    steps: int
    directory: str
    # model overrides applied when scoring (INFERENCE_SENSITIVITY): ((setting, value), ...), hashable
    inference_overrides: tuple = ()


def variant_and_overrides(name: str) -> tuple[str, dict]:
    """A run name (a variant, or a key of SENSITIVITY) → (variant, model overrides)."""
    return SENSITIVITY.get(name, (name, {}))


def run_dir(workdir: str, name: str, seed: int) -> str:
    return os.path.join(workdir, f"{name}_seed{seed}")


def curve_run_dir(workdir: str, name: str, steps: int) -> str:
    return os.path.join(workdir, CURVE_FOLDER, f"{name}_steps{steps}")


def sweep_runs(names, seeds, steps: int, workdir: str) -> list[Run]:
    """The runs of the variants × seeds sweep, seed-major: an interrupted sweep still has every run name for the
    seeds it finished."""
    return [Run(name, seed, steps, run_dir(workdir, name, seed)) for seed in seeds for name in names]


def inference_runs(seeds, steps: int, workdir: str) -> list[Run]:
    """The INFERENCE_SENSITIVITY runs: each scores its base run's workdir with its overrides."""
    return [Run(name, seed, steps, run_dir(workdir, base, seed), tuple(sorted(overrides.items())))
            for seed in seeds for name, (base, overrides) in INFERENCE_SENSITIVITY.items()]


def curve_runs(budgets, seed: int, workdir: str, names=CURVE_VARIANTS) -> list[Run]:
    """The learning-curve runs, budget-major (the cheap budgets first): each budget is its own run with its own
    cosine schedule, not a checkpoint of a longer run."""
    return [Run(name, seed, steps, curve_run_dir(workdir, name, steps)) for steps in sorted(budgets)
            for name in names]


def finished(workdir: str, name: str, seed: int, steps: int) -> bool:
    return (latest_saved_step(run_dir(workdir, name, seed)) or 0) >= steps


def run_finished(run: Run) -> bool:
    return (latest_saved_step(run.directory) or 0) >= run.steps
