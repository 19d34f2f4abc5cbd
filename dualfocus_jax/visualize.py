"""Pictures a person looks at: colour-mapped depth with a colour bar, RGB images, side-by-side panels.

Figures are built as `matplotlib.figure.Figure` objects, without pyplot and without choosing a backend, so
importing this module changes nothing for the caller: files are rendered with Agg by `Figure.savefig`, and in
Jupyter or Colab `panels_figure(...)` shows inline as the cell's result (or with `display(figure)`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image


@dataclasses.dataclass(frozen=True)
class Panel:
    """One picture of a figure.

    `kind` is "rgb" for an (H, W, 3) image in [0, 1], or "scalar" for an (H, W) map drawn with `cmap`
    between `vmin` and `vmax` and a colour bar labelled `label`. Pixels where `valid` is False are grey.
    """

    title: str
    array: np.ndarray
    kind: str = "scalar"
    cmap: str = "turbo_r"
    vmin: float | None = None
    vmax: float | None = None
    label: str = ""
    valid: np.ndarray | None = None


def save_rgb_png(path: str | os.PathLike, image_HWC: np.ndarray, *, format: str | None = None,
                 compress_level: int = 6) -> str:
    """Writes an (H, W, 3) float image in [0, 1] as an 8-bit PNG; returns the path. compress_level 1 writes
    large photos much faster than the default 6, for slightly larger files (README, "Benchmarks")."""
    array = np.clip(np.asarray(image_HWC, np.float32), 0.0, 1.0)
    Image.fromarray(np.round(array * 255).astype(np.uint8)).save(path, format=format, compress_level=compress_level)
    return os.fspath(path)


def panels_figure(panels: Sequence[Panel], *, columns: int | None = None, title: str = "",
                  panel_width_in: float = 4.0) -> Figure:
    """Panels side by side (wrapping after `columns`) in one Figure (not registered with pyplot)."""
    columns = columns or len(panels)
    rows = int(np.ceil(len(panels) / columns))
    height, width = np.shape(panels[0].array)[:2]
    panel_height_in = panel_width_in * height / width + 0.5
    figure = Figure(figsize=(panel_width_in * columns, panel_height_in * rows))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, panel in zip(axes.ravel(), panels):
        _draw_panel(figure, axis, panel)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def save_panels_png(path: str | os.PathLike, panels: Sequence[Panel], *, columns: int | None = None,
                    title: str = "", panel_width_in: float = 4.0, format: str | None = None) -> str:
    """Draws panels side by side (wrapping after `columns`) into one PNG; returns the path."""
    figure = panels_figure(panels, columns=columns, title=title, panel_width_in=panel_width_in)
    figure.savefig(path, dpi=100, format=format)
    return os.fspath(path)


def save_scalar_png(path: str | os.PathLike, panel: Panel, *, format: str | None = None) -> str:
    """One colour-mapped map with its colour bar, e.g. depth.png."""
    return save_panels_png(path, [panel], panel_width_in=6.0, format=format)


def _draw_panel(figure, axis, panel: Panel) -> None:
    axis.set_title(panel.title, fontsize=10)
    if panel.kind == "rgb":
        axis.imshow(np.clip(panel.array, 0.0, 1.0))
        return
    values = np.asarray(panel.array, np.float32)
    valid = np.isfinite(values) if panel.valid is None else (np.asarray(panel.valid, bool) & np.isfinite(values))
    shown = values[valid] if valid.any() else np.zeros(1, np.float32)
    vmin = float(shown.min()) if panel.vmin is None else panel.vmin
    vmax = float(shown.max()) if panel.vmax is None else panel.vmax
    colormap = matplotlib.colormaps[panel.cmap].with_extremes(bad=(0.5, 0.5, 0.5))
    image = axis.imshow(np.ma.masked_where(~valid, values), cmap=colormap, vmin=vmin, vmax=vmax)
    colorbar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.02)
    if panel.label:
        colorbar.set_label(panel.label)
