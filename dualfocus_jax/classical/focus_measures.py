"""Hand-crafted focus measures for classical depth from focus.

Each measure maps a focal stack `stack_SHWC` (S slices, H×W pixels, C channels, any intensity scale) to a
focus volume `focus_SHW` (float32, >= 0, higher = sharper). The measure is computed per slice on grey values
and then averaged over a square `window`×`window` neighbourhood (a box filter), because a single pixel's
response is dominated by noise while the window's mean tracks the local contrast that defocus destroys.

Borders use symmetric (half-sample) reflection, ``d c b a | a b c d``, which is `scipy.ndimage`'s default
``mode="reflect"``; the tests compare against `scipy.ndimage` with that mode.

Definitions (I = grey slice, box_w = mean over the window):
  - modified Laplacian (Nayar & Nakagawa 1994):
      box_w( |2I(y,x) − I(y,x−1) − I(y,x+1)| + |2I(y,x) − I(y−1,x) − I(y+1,x)| )
  - grey-level variance: box_w(I²) − box_w(I)²  (population variance of the window)
  - Tenengrad (Sobel gradient energy): box_w( Gx² + Gy² ), Gx, Gy the 3×3 Sobel responses
    ([1,2,1] smoothing across, [−1,0,1] difference along the axis, unnormalised as in `scipy.ndimage.sobel`).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

# ITU-R BT.601 luma weights: the usual grey conversion for RGB focal stacks.
_LUMA_WEIGHTS_RGB = (0.299, 0.587, 0.114)


def check_stack_and_window(stack_SHWC, window: int) -> None:
    """Raises ValueError for a stack that is not (S, H, W, C) or a window that is not a usable odd size."""
    shape = getattr(stack_SHWC, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(
            f"stack_SHWC must have shape (S, H, W, C), got shape {shape}; for a grey stack of shape (S, H, W) "
            "pass stack[..., None], and for a batch vmap over the batch axis."
        )
    num_slices, height, width, channels = shape
    if num_slices < 1 or height < 1 or width < 1 or channels < 1:
        raise ValueError(f"stack_SHWC has an empty axis: shape {tuple(shape)}; every axis needs length >= 1.")
    if isinstance(window, bool) or not isinstance(window, numbers.Integral):
        raise ValueError(f"window must be a Python int (odd, >= 1), got {window!r} of type {type(window).__name__}.")
    if window < 1 or window % 2 == 0:
        raise ValueError(
            f"window must be an odd integer >= 1 so that it is centred on the pixel, got {window}; "
            f"use {window + 1 if window >= 0 else 1} instead."
        )


def grey_stack(stack_SHWC: jax.Array) -> jax.Array:
    """Grey values of a stack: (S, H, W, C) -> (S, H, W) float32.

    RGB (C = 3) uses BT.601 luma weights; any other channel count uses the channel mean (C = 1 is unchanged).
    """
    stack = jnp.asarray(stack_SHWC, jnp.float32)
    if stack.shape[-1] == 3:
        return stack @ jnp.asarray(_LUMA_WEIGHTS_RGB, jnp.float32)
    return jnp.mean(stack, axis=-1)


def _pad_reflect_HW(images_SHW: jax.Array, radius: int) -> jax.Array:
    """Symmetric reflection of the two image axes by `radius` pixels (scipy.ndimage mode 'reflect')."""
    return jnp.pad(images_SHW, ((0, 0), (radius, radius), (radius, radius)), mode="symmetric")


def box_mean(images_SHW: jax.Array, window: int) -> jax.Array:
    """Mean over a `window`×`window` square centred on each pixel, per slice: (S, H, W) -> (S, H, W).

    Separable (a row sum then a column sum), so the cost is O(window) per pixel rather than O(window²).
    """
    window = int(window)
    if window == 1:
        return images_SHW
    padded = _pad_reflect_HW(images_SHW, window // 2)
    rows = lax.reduce_window(padded, 0.0, lax.add, (1, window, 1), (1, 1, 1), "VALID")
    both = lax.reduce_window(rows, 0.0, lax.add, (1, 1, window), (1, 1, 1), "VALID")
    return both / float(window * window)


def _neighbours(images_SHW: jax.Array):
    """Centre and its 4-neighbours (up, down, left, right) with reflected borders, each (S, H, W)."""
    padded = _pad_reflect_HW(images_SHW, 1)
    centre = padded[:, 1:-1, 1:-1]
    up, down = padded[:, :-2, 1:-1], padded[:, 2:, 1:-1]
    left, right = padded[:, 1:-1, :-2], padded[:, 1:-1, 2:]
    return padded, centre, up, down, left, right


@functools.partial(jax.jit, static_argnames="window")
def modified_laplacian(stack_SHWC: jax.Array, window: int = 9) -> jax.Array:
    """Nayar's modified Laplacian, box-averaged: (S, H, W, C) -> focus_SHW (>= 0, higher = sharper).

    Units: grey-level units of the input (per pixel). Sum of the absolute second differences along x and y,
    so that opposite-signed curvatures along the two axes do not cancel (which the plain Laplacian allows).
    """
    check_stack_and_window(stack_SHWC, window)
    grey = grey_stack(stack_SHWC)
    _, centre, up, down, left, right = _neighbours(grey)
    response = jnp.abs(2.0 * centre - left - right) + jnp.abs(2.0 * centre - up - down)
    return box_mean(response, window)


@functools.partial(jax.jit, static_argnames="window")
def graylevel_variance(stack_SHWC: jax.Array, window: int = 9) -> jax.Array:
    """Local grey-level variance over the window: (S, H, W, C) -> focus_SHW (>= 0, grey units squared).

    Defocus is a low-pass filter, so it lowers the local variance of a textured patch.
    """
    check_stack_and_window(stack_SHWC, window)
    grey = grey_stack(stack_SHWC)
    # Variance is shift invariant; removing each slice's mean first keeps E[I²] − E[I]² from cancelling
    # catastrophically in float32 when the input is on a 0..255 scale.
    grey = grey - jnp.mean(grey, axis=(1, 2), keepdims=True)
    mean = box_mean(grey, window)
    mean_of_square = box_mean(grey * grey, window)
    return jnp.maximum(mean_of_square - mean * mean, 0.0)


@functools.partial(jax.jit, static_argnames="window")
def tenengrad(stack_SHWC: jax.Array, window: int = 9) -> jax.Array:
    """Tenengrad: box-averaged Sobel gradient energy Gx² + Gy²: (S, H, W, C) -> focus_SHW (grey units squared)."""
    check_stack_and_window(stack_SHWC, window)
    grey = grey_stack(stack_SHWC)
    padded = _pad_reflect_HW(grey, 1)
    height, width = grey.shape[1], grey.shape[2]

    def shifted(dy: int, dx: int) -> jax.Array:
        return padded[:, 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]

    # Sobel along x: difference [-1, 0, 1] in x, smoothing [1, 2, 1] in y.
    grad_x = (shifted(-1, 1) + 2.0 * shifted(0, 1) + shifted(1, 1)) - (
        shifted(-1, -1) + 2.0 * shifted(0, -1) + shifted(1, -1)
    )
    grad_y = (shifted(1, -1) + 2.0 * shifted(1, 0) + shifted(1, 1)) - (
        shifted(-1, -1) + 2.0 * shifted(-1, 0) + shifted(-1, 1)
    )
    return box_mean(grad_x * grad_x + grad_y * grad_y, window)


FOCUS_MEASURES: dict[str, Callable[..., jax.Array]] = {
    "modified_laplacian": modified_laplacian,
    "graylevel_variance": graylevel_variance,
    "tenengrad": tenengrad,
}
