"""Pictures drawn with Pillow (dualfocus_jax/visualize.py): matplotlib's colours, what each panel shows, round
colour-bar ticks, and no matplotlib imported to draw them."""

import subprocess
import sys

import matplotlib
import numpy as np
import pytest
from PIL import Image

from dualfocus_jax.colormap_tables import NAMES, colormap_table
from dualfocus_jax.visualize import Panel, _ticks, colormap_rgb, render_panels, save_panels_png, save_scalar_png


@pytest.mark.parametrize("name", [*NAMES, "turbo_r", "magma_r", "RdBu"])
def test_colours_are_matplotlibs(name):
    colormap = matplotlib.colormaps[name]
    if colormap_table(name.removesuffix("_r")) is not None:
        np.testing.assert_array_equal(colormap_table(name), colormap(np.arange(256), bytes=True)[:, :3])
    values = np.random.default_rng(0).uniform(-0.2, 1.2, 1000)  # beyond the range too: the end colours
    expected = colormap(matplotlib.colors.Normalize(0.0, 1.0)(values), bytes=True)[:, :3]
    np.testing.assert_array_equal(colormap_rgb(values, name, 0.0, 1.0), expected)


def test_a_scalar_panel_shows_the_mapped_values_with_a_colour_bar_and_grey_invalid_pixels():
    values = np.tile(np.linspace(0.5, 2.0, 200, dtype=np.float32), (100, 1))  # left to right: near to far
    valid = np.ones_like(values, bool)
    valid[:, :20] = False
    image = render_panels([Panel("depth (m)", values, cmap="turbo_r", vmin=0.5, vmax=2.0, label="m", valid=valid)],
                          panel_width_in=4.0)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and image.width == 400
    table = colormap_table("turbo_r")
    row = pixels[pixels.shape[0] // 2]
    white = (row == 255).all(axis=-1)
    start = int(np.argmin(white))  # the picture: from the margin to the gap before the colour bar
    picture = row[start:start + int(np.argmax(white[start:]))]
    assert 300 <= len(picture) < 380
    grey = (picture == (128, 128, 128)).all(axis=-1)
    assert 15 <= grey[:len(picture) // 5].sum() and not grey[len(picture) // 5:].any()  # the invalid strip
    # Values are resampled, then mapped: every pixel is an entry of the table, near (left) to far (right).
    index = {tuple(c): i for i, c in enumerate(table)}
    entries = [index[tuple(c)] for c in picture[~grey]]
    assert entries == sorted(entries) and entries[-1] == 255 and entries[0] < 40
    # The colour bar on the right: a column of every colour of the map, from vmax (top) to vmin (bottom).
    column = next(x for x in range(pixels.shape[1] - 1, 0, -1)
                  if len({tuple(c) for c in pixels[:, x]}) > 100)
    bar = pixels[:, column]
    top = next(tuple(c) for c in bar if tuple(c) != (255, 255, 255) and tuple(c) != (0, 0, 0))
    assert np.abs(np.subtract(top, table[-1])).max() <= 12


def test_panels_wrap_into_rows_under_a_title(tmp_path):
    rgb = np.random.default_rng(1).random((60, 80, 3)).astype(np.float32)
    panels = [Panel(f"slice {i}", rgb, kind="rgb") for i in range(5)]
    path = save_panels_png(tmp_path / "panels.png", panels, columns=3, title="two\nlines", format="png")
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width == 1200
        assert image.height > 2 * 3 * 60  # two rows of 380 px wide pictures (60:80) and the title
    scalar = save_scalar_png(tmp_path / "depth.png", Panel("depth", rgb[..., 0], label="m"))
    with Image.open(scalar) as image:
        assert image.width == 600


def test_colour_bar_ticks_are_round_and_inside_the_range():
    assert _ticks(0.0, 0.7139) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    assert _ticks(0.55, 1.88) == pytest.approx([0.6, 0.8, 1.0, 1.2, 1.4, 1.6, 1.8])
    assert _ticks(-0.35, 0.35) == pytest.approx([-0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3])
    assert _ticks(2.0, 2.0) == [2.0]
    for low, high in [(1e-3, 3e-3), (100.0, 5000.0), (-7.0, 13.0)]:
        ticks = _ticks(low, high)
        assert 2 <= len(ticks) <= 8 and low <= min(ticks) and max(ticks) <= high


def test_drawing_pictures_imports_no_matplotlib(tmp_path):
    script = ("import sys\nimport numpy as np\nfrom dualfocus_jax.visualize import Panel, save_panels_png\n"
              f"save_panels_png({str(tmp_path / 'p.png')!r}, [Panel('d', np.eye(8), label='m'), "
              "Panel('i', np.ones((8, 8, 3)), kind='rgb')], title='t')\n"
              "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
