"""Colour-guided upsampling of the finest focus costs (our extension; `DualFocusConfig.cost_upsampling`).

The decoder's finest costs live at 1/4 of the input. Bilinear upsampling blends the costs of the cells on
both sides of a depth edge, so the depth there is a mix of the two surfaces over about four pixels. Joint
bilateral upsampling (Kopf et al., SIGGRAPH 2007) weights each low-resolution cell by its spatial tent weight
times how close its colour (the guide averaged over the cell) is to the output pixel's colour, so a pixel
takes its costs from the cells of its own surface. Where the guide's colours are alike (a depth edge between
similar textures) the weights fall back to the spatial tent: with `reach=1` that is exactly bilinear.

The guide is the network's own all-in-focus image from a first, bilinear pass: it is sharp where the stack
is, which a single slice or the slices' mean is not.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _low_resolution_coordinates(full_size: int, factor: int) -> np.ndarray:
    """Position of each output pixel's centre on the low-resolution grid (half-pixel centres)."""
    return (np.arange(full_size) + 0.5) / factor - 0.5


def joint_bilateral_upsample(low_BShw: jax.Array, guide_BHWC: jax.Array, *, reach: int,
                             sigma_colour: float) -> jax.Array:
    """Upsamples per-slice costs to the guide's size, weighting cells by colour similarity.

    Args:
      low_BShw: (B, S, h, w) costs (logits) on the low-resolution grid.
      guide_BHWC: (B, H, W, C) guide image with H = k·h, W = k'·w for integers k, k'.
      reach: half-width of the spatial tent in low-resolution cells (1: the 2×2 cells bilinear reads).
      sigma_colour: colour scale σ of the range weight exp(−d / 2σ²), d the mean squared channel difference
        between the pixel's guide colour and the cell's (so σ is an RMS difference, in the guide's units).

    Returns:
      (B, S, H, W) float32 costs. With sigma_colour = inf this is bilinear upsampling with half-pixel centres
      and clamped borders (`resampling.resize_bilinear_hw`).
    """
    b, s, h, w = low_BShw.shape
    height, width = guide_BHWC.shape[1:3]
    if height % h or width % w:
        raise ValueError(f"the guide's size {height}x{width} must be a whole multiple of the costs' {h}x{w}.")
    factor_y, factor_x = height // h, width // w
    guide = guide_BHWC.astype(jnp.float32)
    channels = guide.shape[-1]
    guide_low = guide.reshape(b, h, factor_y, w, factor_x, channels).mean(axis=(2, 4))
    coord_y = _low_resolution_coordinates(height, factor_y)
    coord_x = _low_resolution_coordinates(width, factor_x)
    base_y, base_x = np.floor(coord_y).astype(int), np.floor(coord_x).astype(int)
    offsets = range(1 - reach, reach + 1)

    # Per candidate cell: its spatial tent along rows (H,) and columns (W,), and which rows and columns it reads.
    tents_y, tents_x, cell_rows, cell_cols = [], [], [], []
    for dy in offsets:
        rows = base_y + dy
        tent_y = np.maximum(0.0, 1.0 - np.abs(coord_y - rows) / reach)
        for dx in offsets:
            cols = base_x + dx
            tent_x = np.maximum(0.0, 1.0 - np.abs(coord_x - cols) / reach)
            tents_y.append(tent_y)
            tents_x.append(tent_x)
            cell_rows.append(np.clip(rows, 0, h - 1))
            cell_cols.append(np.clip(cols, 0, w - 1))
    candidates = (jnp.asarray(np.stack(tents_y), jnp.float32), jnp.asarray(np.stack(tents_x), jnp.float32),
                  jnp.asarray(np.stack(cell_rows)), jnp.asarray(np.stack(cell_cols)))
    low = low_BShw.astype(jnp.float32)

    def colour_distance(rows, cols):
        return jnp.mean(jnp.square(guide - guide_low[:, rows][:, :, cols]), axis=-1)  # (B, H, W)

    # Loops over the (2·reach)² candidates (lax.scan), so memory and compile time stay those of one candidate.
    def closer(closest, candidate):
        tent_y, tent_x, rows, cols = candidate
        tent = jnp.outer(tent_y, tent_x)
        return jnp.minimum(closest, jnp.where(tent > 0, colour_distance(rows, cols), jnp.inf)), None

    # Distances relative to the closest candidate with spatial weight, so the best match weighs 1 and the
    # normaliser never underflows, however far the colours are.
    closest, _ = jax.lax.scan(closer, jnp.full((b, height, width), jnp.inf, jnp.float32), candidates)

    def accumulate(sums, candidate):
        tent_y, tent_x, rows, cols = candidate
        colour_weight = jnp.exp(-(colour_distance(rows, cols) - closest) / (2.0 * sigma_colour ** 2))
        weight = (jnp.outer(tent_y, tent_x) * colour_weight)[:, None]
        return (sums[0] + weight * low[:, :, rows][:, :, :, cols], sums[1] + weight), None

    initial = (jnp.zeros((b, s, height, width), jnp.float32), jnp.zeros((b, 1, height, width), jnp.float32))
    (weighted_sum, weight_sum), _ = jax.lax.scan(accumulate, initial, candidates)
    return weighted_sum / weight_sum
