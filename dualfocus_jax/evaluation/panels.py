"""PNG panels of evaluated examples: stack, prediction, ground truth, error, uncertainty and focus curves.

One figure per example, one row: three slices of the stack (nearest, middle, farthest focus), predicted
depth, ground truth (unscored pixels grey), absolute error on scored pixels, uncertainty σ, and the focus
probability p_n along the focal axis at three marked pixels (where the error is smallest, median and
largest), plotted against the focus positions with the ground truth as a dashed line.
"""

from __future__ import annotations

import os

import matplotlib
import numpy as np
from matplotlib.figure import Figure  # no pyplot: files only, no backend chosen at import (notebooks keep theirs)

from dualfocus_jax.evaluation.evaluate import EvaluatedExample

_CURVE_COLOURS = ("tab:green", "tab:orange", "tab:red")


def probe_pixels(example: EvaluatedExample) -> list[tuple[int, int]]:
    """(row, col) of the scored pixels with the smallest, the median and the largest absolute error (or the
    image centre three times when no pixel is scored)."""
    error = np.abs(example.depth_HW - example.depth_gt_HW)
    rows, cols = np.nonzero(example.mask_HW)
    if rows.size == 0:
        centre = (example.depth_HW.shape[0] // 2, example.depth_HW.shape[1] // 2)
        return [centre] * 3
    order = np.argsort(error[rows, cols], kind="stable")
    picks = (order[0], order[len(order) // 2], order[-1])
    return [(int(rows[i]), int(cols[i])) for i in picks]


def save_example_panel(path: str | os.PathLike, example: EvaluatedExample, *, unit: str = "m",
                       title: str = "") -> str:
    """Writes the panel of one evaluated example to `path` (PNG); returns the path."""
    slices = example.stack_SHWC.shape[0]
    slice_picks = sorted({0, slices // 2, slices - 1})
    low, high = float(example.focus_S.min()), float(example.focus_S.max())
    error = np.where(example.mask_HW, np.abs(example.depth_HW - example.depth_gt_HW), np.nan)
    gt = np.where(example.mask_HW, example.depth_gt_HW, np.nan)
    maps = [("prediction", example.depth_HW, "turbo_r", (low, high), unit),
            ("ground truth", gt, "turbo_r", (low, high), unit),
            ("|error|", error, "magma", (0.0, max(float(np.nanmax(error)) if np.isfinite(error).any() else 0.0,
                                                  1e-6)), unit),
            ("uncertainty σ", example.uncertainty_HW, "viridis", (0.0, max(float(example.uncertainty_HW.max()),
                                                                           1e-6)), unit)]
    columns = len(slice_picks) + len(maps) + 1
    height, width = example.depth_HW.shape
    figure = Figure(figsize=(2.6 * columns, 2.6 * height / width + 0.9))
    axes = figure.subplots(1, columns, squeeze=False)
    axes = axes[0]
    for axis, index in zip(axes, slice_picks):
        axis.imshow(np.clip(example.stack_SHWC[index], 0, 1))
        axis.set_title(f"slice {index}: f={example.focus_S[index]:.3g} {unit}", fontsize=8)
        axis.axis("off")
    probes = probe_pixels(example)
    for axis, (name, array, cmap, (vmin, vmax), label) in zip(axes[len(slice_picks):], maps):
        colours = matplotlib.colormaps[cmap].with_extremes(bad="0.6")  # unscored pixels grey
        image = axis.imshow(np.ma.masked_invalid(array), cmap=colours, vmin=vmin, vmax=vmax)
        figure.colorbar(image, ax=axis, fraction=0.046, pad=0.03).set_label(label, fontsize=7)
        axis.set_title(name, fontsize=8)
        axis.axis("off")
        if name == "prediction":
            for colour, (row, col) in zip(_CURVE_COLOURS, probes):
                axis.plot(col, row, marker="o", markersize=5, markerfacecolor="none", markeredgecolor=colour)
    curves = axes[-1]
    for colour, (row, col) in zip(_CURVE_COLOURS, probes):
        curves.plot(example.focus_S, example.prob_SHW[:, row, col], marker=".", color=colour)
        curves.axvline(float(example.depth_gt_HW[row, col]), color=colour, linestyle="--", linewidth=0.8)
    curves.set_xlabel(f"focus position ({unit})", fontsize=8)
    curves.set_ylabel("p_n", fontsize=8)
    curves.set_ylim(0, 1)
    curves.set_title("focus probability (-- GT)", fontsize=8)
    curves.tick_params(labelsize=7)
    figure.suptitle(title or example.example_id, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    return os.fspath(path)
