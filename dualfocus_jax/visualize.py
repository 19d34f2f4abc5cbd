"""Pictures a person looks at: colour-mapped depth with a colour bar, RGB images, side-by-side panels.

PNG files (`save_panels_png`, `save_scalar_png`, `save_rgb_png`) are drawn with Pillow and the colour tables
of colormap_tables.py: no matplotlib is imported, which keeps it (about a second of importing and drawing)
off every prediction. In Jupyter or Colab, `panels_figure(...)` builds the same panels as a
`matplotlib.figure.Figure` (without pyplot and without choosing a backend) that shows inline as the cell's
result (or with `display(figure)`); matplotlib is imported only then.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dualfocus_jax.colormap_tables import colormap_table

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100  # pixels per inch of `panel_width_in`
BAD_RGB = (128, 128, 128)  # pixels where a panel's `valid` is False
_PIXEL_LIMIT_LOCK = threading.Lock()


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
    """Panels side by side (wrapping after `columns`) in one matplotlib Figure (not registered with pyplot)."""
    from matplotlib.figure import Figure  # here: only notebooks draw with matplotlib (module docstring)

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


def render_panels(panels: Sequence[Panel], *, columns: int | None = None, title: str = "",
                  panel_width_in: float = 4.0) -> Image.Image:
    """Panels side by side (wrapping after `columns`) as one RGB Pillow image, `panel_width_in` × 100 px per
    column: each panel's title above it, scalar maps colour-mapped with a labelled colour bar on their right,
    and `title` (may hold several lines) centred on top."""
    columns = columns or len(panels)
    rows = int(math.ceil(len(panels) / columns))
    cell_width = int(round(panel_width_in * DPI))
    fonts = _Fonts.get()
    margin = 8
    drawn = [_render_panel(panel, cell_width - 2 * margin, fonts) for panel in panels]
    row_heights = [max(d.height for d in drawn[r * columns:(r + 1) * columns]) for r in range(rows)]
    heading = _text_block(title, fonts.title, fill=(0, 0, 0)) if title else None
    top = heading.height + 2 * margin if heading else margin
    canvas = Image.new("RGB", (cell_width * columns, top + sum(row_heights) + (rows + 1) * margin), "white")
    if heading:
        canvas.paste(heading, ((canvas.width - heading.width) // 2, margin), heading)
    y = top
    for r, height in enumerate(row_heights):
        for c, picture in enumerate(drawn[r * columns:(r + 1) * columns]):
            x = c * cell_width + (cell_width - picture.width) // 2
            canvas.paste(picture, (x, y + (height - picture.height) // 2))
        y += height + margin
    return canvas


def save_panels_png(path: str | os.PathLike, panels: Sequence[Panel], *, columns: int | None = None,
                    title: str = "", panel_width_in: float = 4.0, format: str | None = None) -> str:
    """Draws panels side by side (wrapping after `columns`) into one PNG (`render_panels`); returns the path."""
    render_panels(panels, columns=columns, title=title, panel_width_in=panel_width_in).save(
        path, format=format or "PNG", compress_level=3)
    return os.fspath(path)


def save_scalar_png(path: str | os.PathLike, panel: Panel, *, format: str | None = None) -> str:
    """One colour-mapped map with its colour bar, e.g. depth.png."""
    return save_panels_png(path, [panel], panel_width_in=6.0, format=format)


def colormap_rgb(values: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """(..., 3) uint8 colours of `values` through the 256-entry colour map `cmap` between vmin and vmax (as
    matplotlib maps them: entry floor(256 · (v − vmin) / (vmax − vmin)), clipped to the table)."""
    table = _colormap_table(cmap)
    span = vmax - vmin
    normalised = (np.asarray(values, np.float64) - vmin) / span if span > 0 else np.zeros(np.shape(values))
    index = np.clip(np.floor(np.nan_to_num(normalised, nan=0.0) * 256), 0, 255).astype(np.intp)
    return table[index]


@functools.cache
def _colormap_table(name: str) -> np.ndarray:
    table = colormap_table(name)
    if table is None:
        import matplotlib  # a colour map not stored in colormap_tables.py: matplotlib has them all

        table = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256), bytes=True)[:, :3]
    return np.ascontiguousarray(table, np.uint8)


@dataclasses.dataclass(frozen=True)
class _Fonts:
    title: ImageFont.ImageFont | ImageFont.FreeTypeFont
    text: ImageFont.ImageFont | ImageFont.FreeTypeFont

    @staticmethod
    @functools.cache
    def get() -> _Fonts:
        """DejaVu Sans (the font of the earlier matplotlib pictures, from matplotlib's data folder, found
        without importing it) at 17 and 14 px (12 and 10 pt at 100 dpi), else Pillow's own font."""
        spec = importlib.util.find_spec("matplotlib")
        folders = list(spec.submodule_search_locations or []) if spec else []
        for folder in folders:
            path = os.path.join(folder, "mpl-data", "fonts", "ttf", "DejaVuSans.ttf")
            if os.path.isfile(path):
                try:
                    return _Fonts(ImageFont.truetype(path, 17), ImageFont.truetype(path, 14))
                except OSError:
                    break
        return _Fonts(ImageFont.load_default(17), ImageFont.load_default(14))


def _text_size(text: str, font) -> tuple[int, int]:
    left, top, right, bottom = font.getbbox(text or " ")
    return int(math.ceil(right - min(left, 0))), int(math.ceil(bottom))


def _text_block(text: str, font, *, fill) -> Image.Image:
    """Centred lines of text on a transparent background."""
    lines = text.split("\n")
    sizes = [_text_size(line, font) for line in lines]
    line_height = max(h for _, h in sizes) + 3
    block = Image.new("RGBA", (max(w for w, _ in sizes) + 2, line_height * len(lines)), (255, 255, 255, 0))
    draw = ImageDraw.Draw(block)
    for index, (line, (width, _)) in enumerate(zip(lines, sizes)):
        _draw_text(draw, ((block.width - width) // 2, index * line_height), line, font, fill=fill)
    return block


def _draw_text(draw: ImageDraw.ImageDraw, xy, text: str, font, **options) -> None:
    """`draw.text` with Pillow's decompression-bomb limit lifted: Pillow checks every rendered text mask against
    that global limit, which is meant for decoding untrusted files (and which a caller may have lowered for
    the photos). The lock keeps two drawing threads from restoring each other's lifted value."""
    with _PIXEL_LIMIT_LOCK:
        limit = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            draw.text(xy, text, font=font, **options)
        finally:
            Image.MAX_IMAGE_PIXELS = limit


def _fitted(image: Image.Image, width: int, height: int) -> Image.Image:
    """The image scaled to fit in width × height, keeping its aspect (antialiased)."""
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image if size == image.size else image.resize(size, Image.Resampling.BILINEAR)


def _render_panel(panel: Panel, width: int, fonts: _Fonts) -> Image.Image:
    """One panel (title, picture, colour bar) at most `width` px wide."""
    title = _text_block(panel.title, fonts.text, fill=(0, 0, 0))
    height, image_width = np.shape(panel.array)[:2]
    if panel.kind == "rgb":
        rgb = np.round(np.clip(np.asarray(panel.array, np.float32), 0.0, 1.0) * 255).astype(np.uint8)
        picture = _fitted(Image.fromarray(rgb), width, max(1, round(width * height / image_width)))
        bar = None
    else:
        values = np.asarray(panel.array, np.float32)
        valid = np.isfinite(values) if panel.valid is None else (np.asarray(panel.valid, bool) & np.isfinite(values))
        shown = values[valid] if valid.any() else np.zeros(1, np.float32)
        vmin = float(shown.min()) if panel.vmin is None else float(panel.vmin)
        vmax = float(shown.max()) if panel.vmax is None else float(panel.vmax)
        ticks = _ticks(vmin, vmax)
        labels = _tick_labels(ticks)
        label_width = max(_text_size(text, fonts.text)[0] for text in labels) if labels else 0
        unit_height = _text_size(panel.label, fonts.text)[1] if panel.label else 0
        bar_space = 10 + 18 + 4 + label_width + (8 + unit_height if panel.label else 0)  # gap, bar, tick, labels
        box_width = max(16, width - bar_space)
        filled = np.where(valid, values, vmin)  # NaNs would spread through the resampling
        small = _fitted(Image.fromarray(filled), box_width, max(1, round(box_width * height / image_width)))
        rgb = colormap_rgb(np.asarray(small), panel.cmap, vmin, vmax)
        if not valid.all():
            mask = np.asarray(Image.fromarray(valid.astype(np.uint8) * 255).resize(small.size,
                                                                                  Image.Resampling.NEAREST))
            rgb[mask == 0] = BAD_RGB
        picture = Image.fromarray(rgb)
        bar = _colour_bar(picture.height, panel.cmap, vmin, vmax, ticks, labels, panel.label, fonts)
    total_width = picture.width + (10 + bar.width if bar is not None else 0)
    # The colour bar's end labels reach half a line above and below the picture.
    overhang = (bar.height - picture.height) // 2 if bar is not None else 0
    top = title.height + 4 + overhang
    out = Image.new("RGB", (max(total_width, min(title.width, width)), top + picture.height + overhang), "white")
    out.paste(title, ((picture.width - title.width) // 2 if title.width <= picture.width else 0, 0), title)
    out.paste(picture, (0, top))
    if bar is not None:
        out.paste(bar, (picture.width + 10, top - overhang))
    return out


def _colour_bar(height: int, cmap: str, vmin: float, vmax: float, ticks, labels, label: str,
                fonts: _Fonts) -> Image.Image:
    """A vertical colour bar `height` px tall (vmax at the top) with tick marks, tick labels and, rotated on
    its right, `label`."""
    bar_width, tick_length = 18, 4
    gradient = np.linspace(vmax, vmin, height)[:, None].repeat(bar_width, axis=1)
    strip = Image.fromarray(colormap_rgb(gradient, cmap, vmin, vmax) if vmax > vmin
                            else colormap_rgb(np.zeros((height, bar_width)), cmap, 0.0, 1.0))
    label_width = max((_text_size(text, fonts.text)[0] for text in labels), default=0)
    text_height = _text_size("0", fonts.text)[1]
    unit = None
    if label:
        unit = _text_block(label, fonts.text, fill=(0, 0, 0)).rotate(90, expand=True)
    width = bar_width + tick_length + 3 + label_width + (8 + unit.width if unit is not None else 0)
    out = Image.new("RGB", (width, height + 2 * (text_height // 2)), "white")
    out.paste(strip, (0, text_height // 2))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, text_height // 2, bar_width - 1, text_height // 2 + height - 1), outline=(0, 0, 0))
    for value, text in zip(ticks, labels):
        fraction = (vmax - value) / (vmax - vmin) if vmax > vmin else 0.5
        y = text_height // 2 + round(fraction * (height - 1))
        draw.line((bar_width, y, bar_width + tick_length - 1, y), fill=(0, 0, 0))
        _draw_text(draw, (bar_width + tick_length + 3, y), text, fonts.text, fill=(0, 0, 0), anchor="lm")
    if unit is not None:
        out.paste(unit, (width - unit.width, text_height // 2 + (height - unit.height) // 2), unit)
    return out


def _ticks(vmin: float, vmax: float, most: int = 8) -> list[float]:
    """Round tick values inside [vmin, vmax] (steps of 1, 2, 2.5 or 5 × 10^k), as many as fit in `most`."""
    if not (math.isfinite(vmin) and math.isfinite(vmax)):
        return []
    if vmax <= vmin:
        return [vmin]
    power = 10.0 ** math.floor(math.log10((vmax - vmin) / most))
    for multiple in (1, 2, 2.5, 5, 10):  # 10 × power > span / most: at most `most` ticks, so the loop ends
        step = power * multiple
        first, last = math.ceil(vmin / step - 1e-9), math.floor(vmax / step + 1e-9)
        if last - first + 1 <= most:
            break
    return [0.0 if index == 0 else index * step for index in range(first, last + 1)]


def _tick_labels(ticks: list[float]) -> list[str]:
    """The ticks with as many decimals as their step needs (0.5, 1.0, 1.5 -> "0.5", "1.0", "1.5")."""
    if len(ticks) < 2:
        return [f"{t:.3g}" for t in ticks]
    step = abs(ticks[1] - ticks[0])
    decimals = 0
    while decimals < 10 and abs(round(step, decimals) - step) > step * 1e-6:
        decimals += 1
    largest = max(abs(t) for t in ticks)
    if largest >= 1e5 or largest < 1e-4 and largest > 0:
        return [f"{t:.3g}" for t in ticks]
    return [f"{t:.{decimals}f}" for t in ticks]


def _draw_panel(figure, axis, panel: Panel) -> None:
    import matplotlib  # panels_figure's: matplotlib only for notebook figures

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
