"""Resampling of channel-last feature maps: nearest ×2, bilinear resize, adaptive average pooling.

All functions take arrays whose last three axes are (h, w, C), or (h, w) for `resize_bilinear_hw`'s
trailing-axes form, with any leading batch axes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def upsample_nearest_2x(x_NHWC: jax.Array) -> jax.Array:
    """Nearest-neighbour ×2 upsampling in h and w; (..., h, w, C) → (..., 2h, 2w, C)."""
    return jnp.repeat(jnp.repeat(x_NHWC, 2, axis=-3), 2, axis=-2)


def resize_bilinear_hw(x: jax.Array, height: int, width: int, *, channel_last: bool = True) -> jax.Array:
    """Bilinear resize of the spatial axes with half-pixel centres (PyTorch's align_corners=False).

    Args:
      x: (..., h, w, C) if channel_last else (..., h, w).
      height, width: output size.

    Returns the resized array; leading axes untouched (jax.image.resize skips axes whose size is kept).
    Upsampling only interpolates; downsampling would antialias, which no caller here relies on.
    """
    if channel_last:
        shape = x.shape[:-3] + (height, width, x.shape[-1])
    else:
        shape = x.shape[:-2] + (height, width)
    if shape == x.shape:
        return x
    return jax.image.resize(x, shape, method="bilinear")


def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) averaging matrix of adaptive average pooling (PyTorch's bin rule).

    Bin i covers [floor(i·in/out), ceil((i+1)·in/out)), so bins overlap when in_size is not divisible.
    """
    matrix = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        stop = -((-(i + 1) * in_size) // out_size)
        matrix[i, start:stop] = 1.0 / (stop - start)
    return matrix


def adaptive_avg_pool(x_NHWC: jax.Array, grid_h: int, grid_w: int) -> jax.Array:
    """Adaptive average pooling to a (grid_h, grid_w) grid; (N, h, w, C) → (N, grid_h, grid_w, C).

    Two small matrix products with the constant `adaptive_pool_matrix`es: no reduce_window with
    shape-dependent windows, so any h, w works and XLA fuses it.
    """
    _, h, w, _ = x_NHWC.shape
    pool_h = jnp.asarray(adaptive_pool_matrix(h, grid_h), x_NHWC.dtype)
    pool_w = jnp.asarray(adaptive_pool_matrix(w, grid_w), x_NHWC.dtype)
    return jnp.einsum("ih,nhwc,jw->nijc", pool_h, x_NHWC, pool_w)
