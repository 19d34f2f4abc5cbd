"""A picture of what the focal-stack engine draws: a few stacks (three of their slices), their depth, and the
camera and focus of each, for the README.

    python -m experiments.engine_samples                      # writes docs/engine_samples.png
    python -m experiments.engine_samples --out /tmp/s.png --seed 3

Each row is one draw of `dualfocus_jax.engine.draw_focal_stack` with the engine's default settings (noise,
JPEG, misalignment included), for a fixed camera family, scene family and slice count so the rows show the
range of the engine; everything else comes from the seed. Takes a few seconds.
"""

from __future__ import annotations

import os

import numpy as np
from absl import flags
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from dualfocus_jax.command_flags import parse_flags
from dualfocus_jax.engine import CATALOGUE, EngineSettings, draw_focal_stack

DEFAULT_OUT = os.path.join("docs", "engine_samples.png")
# (camera family, scene family, slices) of each row.
ROWS = (("phone", "occluders", 5), ("dslr", "similar_texture_edge", 7), ("protocol", "texture_edge", 10),
        ("phone", "layered", 16), ("dslr", "textureless", 3))

FLAGS = flags.FlagValues()  # this command's own (dualfocus_jax/command_flags.py says why)
flags.DEFINE_string("out", DEFAULT_OUT, "PNG to write", flag_values=FLAGS)
flags.DEFINE_integer("seed", 11, "seed of the draws", flag_values=FLAGS)


def sample_stacks(seed: int, size: tuple[int, int] = (128, 128)) -> list[dict]:
    """The engine draws of ROWS (dicts of `draw_focal_stack`), each from its own generator."""
    draws = []
    for row, (camera_family, family, slices) in enumerate(ROWS):
        settings = EngineSettings(cameras=tuple(m.name for m in CATALOGUE if m.family == camera_family))
        draws.append(draw_focal_stack(np.random.default_rng([seed, row]), settings, num_slices=slices, size=size,
                                      family=family))
    return draws


def caption(meta: dict, focus_m: np.ndarray, depth_m: np.ndarray) -> str:
    shown = ", ".join(f"{f:.3g}" for f in focus_m) if len(focus_m) <= 7 else (
        ", ".join(f"{f:.3g}" for f in focus_m[:3]) + ", …, " + ", ".join(f"{f:.3g}" for f in focus_m[-2:]))
    return (f"{meta['camera']}: f = {meta['focal_length_mm']:.3g} mm, f/{meta['f_number']:.2g}, "
            f"{meta['pixel_size_um']:.2g} µm px; {meta['family']}, {meta['psf']} PSF\n"
            f"{len(focus_m)} slices ({meta['spacing']} spacing, {meta['coverage']}) at {shown} m; "
            f"depth {depth_m.min():.3g}–{depth_m.max():.3g} m")


def save_picture(draws: list[dict], path: str) -> None:
    """Rows: first, middle and last slice, then depth (metres, log scale, near = bright), the caption above."""
    figure = Figure(figsize=(8.0, 2.25 * len(draws)), dpi=64)
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(len(draws), 4, hspace=0.55, wspace=0.05, left=0.01, right=0.92, top=0.95,
                               bottom=0.01)
    for row, drawn in enumerate(draws):
        stack, focus, depth = drawn["stack"], drawn["focus_positions"], drawn["depth"]
        picks = [0, len(stack) // 2, len(stack) - 1]
        for column, index in enumerate(picks):
            axis = figure.add_subplot(grid[row, column])
            axis.imshow(stack[index])
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_xlabel(f"slice {index + 1}/{len(stack)}: {focus[index]:.3g} m", fontsize=7, labelpad=2)
            if column == 0:
                axis.set_title(caption(drawn["meta"], focus, depth), fontsize=7.5, loc="left", x=0.0)
        axis = figure.add_subplot(grid[row, 3])
        # Log scale: scenes span up to 300x in depth, and blur follows inverse depth.
        low, high = float(depth.min()), float(depth.max())
        image = axis.imshow(depth, cmap="magma_r", norm=LogNorm(low, max(high, low * 1.001)))
        axis.set_xticks([])
        axis.set_yticks([])
        axis.set_xlabel("depth (m, log scale)", fontsize=7, labelpad=2)
        colorbar = figure.colorbar(image, ax=axis, fraction=0.046, pad=0.03, format="%.3g",
                                   ticks=np.geomspace(low, max(high, low * 1.001), 4))
        colorbar.ax.minorticks_off()
        colorbar.ax.tick_params(labelsize=6)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    figure.savefig(path + ".tmp", format="png")
    os.replace(path + ".tmp", path)


def main(argv=None) -> int:
    parse_flags(FLAGS, argv, program="python -m experiments.engine_samples", doc=__doc__)
    draws = sample_stacks(FLAGS.seed)
    save_picture(draws, FLAGS.out)
    print(f"wrote {FLAGS.out} ({os.path.getsize(FLAGS.out) / 1e3:.0f} kB): "
          + "; ".join(f"{d['meta']['camera']} {len(d['focus_positions'])} slices" for d in draws))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
