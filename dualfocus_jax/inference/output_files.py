"""The files `python -m dualfocus_jax.predict` writes: arrays for programs, pictures for people."""

from __future__ import annotations

import os

import numpy as np

from dualfocus_jax.inference.depth_prediction import DepthPrediction
from dualfocus_jax.inference.point_cloud import DEFAULT_FOV_DEG, depth_to_points, intrinsics_from_fov, write_ply
from dualfocus_jax.visualize import Panel, save_panels_png, save_rgb_png, save_scalar_png


def write_prediction(out_dir: str, prediction: DepthPrediction, images_SHWC: np.ndarray, focus_distances_S,
                     *, unit: str, title: str, ply: bool = False, fov_deg: float = DEFAULT_FOV_DEG) -> list[str]:
    """Writes depth.npy, uncertainty.npy (float32 (H, W), unit of the focus distances), depth.png, aif.png,
    summary.png and, with `ply`, points.ply; returns the paths written."""
    os.makedirs(out_dir, exist_ok=True)
    depth, uncertainty = prediction.depth_HW, prediction.uncertainty_HW
    written = []
    for name, array in (("depth.npy", depth), ("uncertainty.npy", uncertainty)):
        path = os.path.join(out_dir, name)
        np.save(path, np.asarray(array, np.float32))
        written.append(path)
    focus = np.asarray(focus_distances_S, np.float64)
    depth_panel = _depth_panel(depth, focus, unit, prediction.units.mode)
    written.append(save_scalar_png(os.path.join(out_dir, "depth.png"), depth_panel))
    written.append(save_rgb_png(os.path.join(out_dir, "aif.png"), prediction.all_in_focus_HWC))
    picks = np.unique(np.linspace(0, len(focus) - 1, min(3, len(focus))).round().astype(int))
    panels = [Panel(f"slice {i + 1}/{len(focus)}: focus {focus[i]:.3g} {unit}", images_SHWC[i], kind="rgb")
              for i in picks]
    panels += [depth_panel,
               Panel(f"uncertainty (std, {unit})", uncertainty, cmap="magma", vmin=0.0,
                     vmax=float(np.percentile(uncertainty, 98)) or None, label=unit),
               Panel("all-in-focus", prediction.all_in_focus_HWC, kind="rgb")]
    written.append(save_panels_png(os.path.join(out_dir, "summary.png"), panels, columns=3,
                                   title=f"{title}\n{prediction.units.describe(unit)}"))
    if ply:
        h, w = depth.shape
        points = depth_to_points(depth, intrinsics_from_fov(h, w, fov_deg))
        written.append(write_ply(os.path.join(out_dir, "points.ply"), points,
                                 prediction.all_in_focus_HWC.reshape(-1, 3)))
    return written


def _depth_panel(depth_HW: np.ndarray, focus_S: np.ndarray, unit: str, mode: str) -> Panel:
    """The colour-mapped depth (turbo_r: near red, far blue). Colours span the 1st-99th percentile of the
    depths present, inside the focus range (depth cannot leave it). For wide focus spans (inverse-distance
    mode) the map shows log10 depth, so near structure is not squeezed into one colour by the far values."""
    values, label, title = depth_HW.astype(np.float64), unit, f"depth ({unit})"
    low_focus, high_focus = focus_S.min(), focus_S.max()
    if mode == "inverse distance":
        values, label, title = np.log10(values), f"log10 depth ({unit})", f"depth ({unit}, log scale)"
        low_focus, high_focus = np.log10(low_focus), np.log10(high_focus)
    low, high = np.percentile(values, [1, 99])
    low, high = max(low, low_focus), min(high, high_focus)
    if not high > low:
        low, high = low_focus, high_focus
    return Panel(title, values.astype(np.float32), vmin=float(low), vmax=float(high), label=label)
