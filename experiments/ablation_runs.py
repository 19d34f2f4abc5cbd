"""The runs of the constraint ablation (experiments/ablation.py): their names, model settings and folders.

Shared by the sweep (experiments/ablation.py), its scoring (experiments/ablation_scoring.py) and its report
(experiments/ablation_report.py), which import this module and not each other in a circle.
"""

from __future__ import annotations

import os

from dualfocus_jax.training.checkpointing import latest_saved_step

# name → (variant, model overrides): the full model with one setting changed. At the demo's 64×64 training
# crops the default solver_stride 16 gives the spatial solver a 4×4 grid, hence the finer strides.
SENSITIVITY = {
    "dualfocus-stride4": ("dualfocus", {"solver_stride": 4}),
    "dualfocus-stride8": ("dualfocus", {"solver_stride": 8}),
    "dualfocus-lambda_sv1": ("dualfocus", {"lambda_sv": 1.0}),
    "dualfocus-lambda_fv10": ("dualfocus", {"lambda_fv": 10.0}),
    "dualfocus-tau0.25": ("dualfocus", {"tau_rel": 0.25}),
}


def variant_and_overrides(name: str) -> tuple[str, dict]:
    """A run name (a variant, or a key of SENSITIVITY) → (variant, model overrides)."""
    return SENSITIVITY.get(name, (name, {}))


def run_dir(workdir: str, name: str, seed: int) -> str:
    return os.path.join(workdir, f"{name}_seed{seed}")


def finished(workdir: str, name: str, seed: int, steps: int) -> bool:
    return (latest_saved_step(run_dir(workdir, name, seed)) or 0) >= steps
