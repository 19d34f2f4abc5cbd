"""Render a focal stack from the motorcycle RGB-D scene, estimate depth classically, write pictures + metrics.

Importable (the tests run it on a downscaled scene); `experiments/demo.py` is its command-line entry.
"""

from __future__ import annotations

import dataclasses
import os
import time

import jax.numpy as jnp
import numpy as np

from dualfocus_jax.classical import estimate_depth_classical
from dualfocus_jax.embedded_scenes import render_motorcycle_stack
from dualfocus_jax.evaluation import metrics as dff_metrics
from dualfocus_jax.evaluation.reports import metrics_markdown, rows_from_arrays, write_metrics_tables
from dualfocus_jax.visualize import Panel, save_panels_png, save_rgb_png, save_scalar_png


@dataclasses.dataclass(frozen=True)
class DemoReport:
    metrics: dict[str, dict[str, float]]
    metrics_markdown: str
    written_files: list[str]


def run_classical_demo(out_dir: str, *, num_slices: int = 10, render_mode: str = "layered",
                       measure: str = "modified_laplacian", downscale: int = 1) -> DemoReport:
    """Runs the whole demo; `downscale` > 1 shrinks the scene (for fast tests)."""
    os.makedirs(out_dir, exist_ok=True)
    started = time.perf_counter()
    # NYUv2 protocol: focus positions spread evenly over the image's valid depth range.
    rendered = render_motorcycle_stack(num_slices, downscale=downscale, mode=render_mode)
    stack, focus, image = rendered.stack, rendered.focus_m, rendered.image
    depth_gt, valid = rendered.depth_m, rendered.valid
    print(f"[1/4] scene: middlebury_motorcycle, {image.shape[1]}x{image.shape[0]} px, depth "
          f"{depth_gt[valid].min():.2f}-{depth_gt[valid].max():.2f} m, {valid.mean():.0%} valid", flush=True)
    print(f"[2/4] rendered {num_slices} slices ({render_mode} thin lens, 50 mm f/8, 12 um pixels) at "
          + ", ".join(f"{f:.2f}" for f in focus) + f" m in {time.perf_counter() - started:.1f} s", flush=True)

    results = {}
    for label, refine in (("classical argmax", False), ("classical + variational refinement", True)):
        started = time.perf_counter()
        result = estimate_depth_classical(jnp.asarray(stack), jnp.asarray(focus), measure=measure, refine=refine)
        result.depth_HW.block_until_ready()
        results[label] = result
        print(f"[3/4] {label} ({measure}) in {time.perf_counter() - started:.1f} s", flush=True)

    # Score only where the ground truth lies inside the focus range (the DFF convention of L_depth).
    mask = rendered.scored
    rows = {}
    for label, result in results.items():
        values = dff_metrics.depth_metrics(result.depth_HW[None], jnp.asarray(depth_gt)[None],
                                           jnp.asarray(mask)[None])
        rows[label] = dict(values)
    rows = rows_from_arrays(rows)
    table = metrics_markdown(rows)
    written = write_metrics_tables(out_dir, rows, extra={
        "scene": "middlebury_motorcycle", "units": "metres", "num_slices": num_slices, "render_mode": render_mode,
        "focus_positions_m": focus.tolist(), "measure": measure, "downscale": downscale})
    written += _write_pictures(out_dir, stack, focus, depth_gt, valid, results["classical + variational refinement"],
                               results["classical argmax"])
    written += _write_sample_stack(os.path.join(out_dir, "focal_stack"), stack, focus)
    print(f"[4/4] wrote {len(written)} files", flush=True)
    return DemoReport(metrics=rows, metrics_markdown=table, written_files=written)


def _write_sample_stack(folder: str, stack: np.ndarray, focus: np.ndarray, num_slices: int = 5) -> list[str]:
    """Saves evenly spaced slices as PNGs + focus_distances.txt: a folder the prediction command reads.

    Five slices, one of the counts the shipped network was trained on (3, 5, 7, 10 and 16).
    """
    os.makedirs(folder, exist_ok=True)
    picks = np.unique(np.linspace(0, len(focus) - 1, min(num_slices, len(focus))).round().astype(int))
    written = [save_rgb_png(os.path.join(folder, f"slice_{n + 1}.png"), stack[i]) for n, i in enumerate(picks)]
    focus_file = os.path.join(folder, "focus_distances.txt")
    with open(focus_file, "w", encoding="utf-8") as handle:
        handle.writelines(f"{focus[i]:.4f}\n" for i in picks)
    return written + [focus_file]


def _write_pictures(out_dir, stack, focus, depth_gt, valid, refined, raw) -> list[str]:
    depth = np.asarray(refined.depth_HW)
    uncertainty = np.asarray(refined.uncertainty_HW)
    error = np.where(valid, np.abs(depth - depth_gt), np.nan)
    depth_range = dict(vmin=float(focus[0]), vmax=float(focus[-1]), label="depth [m]")
    np.save(os.path.join(out_dir, "depth.npy"), depth.astype(np.float32))
    np.save(os.path.join(out_dir, "uncertainty.npy"), uncertainty.astype(np.float32))
    written = [os.path.join(out_dir, "depth.npy"), os.path.join(out_dir, "uncertainty.npy")]
    written.append(save_scalar_png(os.path.join(out_dir, "depth.png"),
                                   Panel("depth (classical + refinement)", depth, **depth_range)))
    written.append(save_scalar_png(os.path.join(out_dir, "uncertainty.png"),
                                   Panel("uncertainty σ", uncertainty, cmap="magma", label="σ [m]")))
    written.append(save_rgb_png(os.path.join(out_dir, "aif.png"), np.asarray(refined.all_in_focus_HWC)))
    picks = np.unique(np.linspace(0, len(focus) - 1, 3).round().astype(int))
    slices = [Panel(f"slice {i + 1}: focus {focus[i]:.2f} m", stack[i], kind="rgb") for i in picks]
    written.append(save_panels_png(os.path.join(out_dir, "stack.png"), slices))
    panels = [
        *slices,
        Panel("all-in-focus (estimated)", np.asarray(refined.all_in_focus_HWC), kind="rgb"),
        Panel("ground truth", depth_gt, valid=valid, **depth_range),
        Panel("classical argmax", np.asarray(raw.depth_HW), **depth_range),
        Panel("+ variational refinement", depth, **depth_range),
        Panel("|error| (refined)", error, cmap="inferno", vmin=0.0,
              vmax=float(np.nanpercentile(error, 99)), label="[m]"),
        Panel("uncertainty σ", uncertainty, cmap="magma", label="[m]"),
    ]
    written.append(save_panels_png(os.path.join(out_dir, "summary.png"), panels, columns=5,
                                   title="Depth from focus on the Middlebury motorcycle (rendered focal stack)"))
    return written
