"""The whole prediction for a folder of photos: load, align, predict, write (what `dualfocus_jax.predict` runs)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from dualfocus_jax.focal_stack import load_focal_stack
from dualfocus_jax.inference.alignment import align_focal_stack
from dualfocus_jax.inference.checkpoint_io import DEFAULT_CHECKPOINT, load_exported_checkpoint
from dualfocus_jax.inference.depth_prediction import METHODS, predict_depth
from dualfocus_jax.inference.focus_units import focus_working_units
from dualfocus_jax.inference.output_files import write_prediction
from dualfocus_jax.inference.point_cloud import DEFAULT_FOV_DEG


def parse_focus_distances(text: str | None):
    """None, a path to a text file (one value per line; returned as the path) or a comma list of numbers."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if os.path.isfile(text):
        return text
    values = []
    for item in text.split(","):
        try:
            values.append(float(item))
        except ValueError:
            raise ValueError(f"--focus_distances must be a comma-separated list of numbers or the path of an "
                             f"existing text file; {item.strip()!r} is neither (got {text!r}).") from None
    return values


def run_prediction(stack_dir: str, out_dir: str, *, focus_distances=None, checkpoint: str | None = None,
                   max_size: int = 640, align: bool = True, method: str = "network", ply: bool = False,
                   fov_deg: float = DEFAULT_FOV_DEG, unit: str = "m",
                   log: Callable[[str], None] = print) -> dict:
    """Predicts depth for the focal stack in `stack_dir` and writes the files of `write_prediction` to `out_dir`.

    Args:
      focus_distances: None (a focus_distances.txt in the folder, else decimals in the file names), a list of
        numbers (one per image, natural file-name order) or a text-file path; distances from the camera > 0.
      checkpoint: exported checkpoint folder; None = the shipped model. Ignored for method "classical".
      max_size: longer image side in pixels after downscaling.
      align: register the slices (alignment.py) before predicting.
      unit: name of the focus-distance unit, for labels only.
    Returns a summary dict (sizes, timings, working units, alignment, files written).
    All inputs are checked (and the checkpoint loaded) before the slow steps.
    """
    if method not in METHODS:
        raise ValueError(f"unknown --method {method!r}; choose one of {METHODS}.")
    if isinstance(focus_distances, str):
        focus_distances = parse_focus_distances(focus_distances)
    summary: dict = {"method": method}
    started = time.perf_counter()
    params = config = None
    if method == "network":
        params, config = load_exported_checkpoint(checkpoint)
        summary["checkpoint"] = os.path.abspath(checkpoint or DEFAULT_CHECKPOINT)
        log(f"[0/4] model: DualFocus {config.size}/{config.variant} from {summary['checkpoint']}")
    stack = load_focal_stack(stack_dir, focus_distances, max_size=max_size, unit=unit)
    focus = np.asarray(stack.focus_positions)
    units = focus_working_units(focus)  # validates the distances before any heavy step
    log(f"[1/4] loaded {stack.num_slices} slices of {stack.width}x{stack.height} px from {stack_dir}; focus "
        f"{', '.join(f'{f:.3g}' for f in focus)} {unit}; {units.describe(unit)}")
    images = stack.images
    if align:
        t0 = time.perf_counter()
        images, alignment = align_focal_stack(images)
        summary["alignment_scale"] = alignment.scale_S.tolist()
        summary["alignment_shift_yx_px"] = alignment.shift_yx_S2.tolist()
        log(f"[2/4] aligned to slice {alignment.reference_index + 1} in {time.perf_counter() - t0:.1f} s: scale "
            + ", ".join(f"{s:.4f}" for s in alignment.scale_S) + "; shift (px) "
            + ", ".join(f"({dy:+.1f},{dx:+.1f})" for dy, dx in alignment.shift_yx_S2))
    else:
        log("[2/4] alignment skipped (--noalign)")
    t0 = time.perf_counter()
    prediction = predict_depth(images, focus, method=method, params=params, config=config)
    log(f"[3/4] predicted ({method}) in {time.perf_counter() - t0:.1f} s: depth "
        f"{np.percentile(prediction.depth_HW, 1):.3g}-{np.percentile(prediction.depth_HW, 99):.3g} {unit} "
        "(1st-99th percentile)")
    title = f"{os.path.basename(os.path.normpath(stack_dir))}: {method}" + (" (aligned)" if align else "")
    written = write_prediction(out_dir, prediction, images, focus, unit=unit, title=title, ply=ply, fov_deg=fov_deg)
    log(f"[4/4] wrote {', '.join(os.path.basename(p) for p in written)} to {out_dir} "
        f"({time.perf_counter() - started:.1f} s in all)")
    summary.update(height=stack.height, width=stack.width, num_slices=stack.num_slices, focus=focus.tolist(),
                   working_units=units.mode, written=written)
    return summary
