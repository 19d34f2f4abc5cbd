"""Padding of any H×W input up to a multiple of the network's coarsest stride, and cropping back.

The same padding is used by the model (on the images) and by the losses (on the ground truth, to meet the
solver-resolution outputs on the padded grid), so both import it from here. The pad is split evenly between
the two sides (the extra pixel of an odd pad goes after), which keeps the image centred in the padded grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def padding_to_multiple(height: int, width: int, multiple: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) pads that bring (height, width) up to multiples of `multiple`."""
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be ≥ 1, got {height}×{width}.")
    pad_h = -height % multiple
    pad_w = -width % multiple
    return (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2)


def pad_spatial(x: jax.Array, pads: tuple[tuple[int, int], tuple[int, int]], *, spatial_axes: tuple[int, int],
                mode: str, constant: float = 0.0) -> jax.Array:
    """Pads the two `spatial_axes` of x by `pads` with numpy-style `mode` ("edge", "reflect", "constant").

    "reflect" needs a pad smaller than the axis; wider pads fall back to "edge" on that call, because
    repeated reflections of a tiny image are no more natural than its edge.
    """
    widths = [(0, 0)] * x.ndim
    widths[spatial_axes[0]] = pads[0]
    widths[spatial_axes[1]] = pads[1]
    if not any(p for pair in pads for p in pair):
        return x
    if mode == "constant":
        return jnp.pad(x, widths, mode="constant", constant_values=constant)
    if mode == "reflect":
        sizes = (x.shape[spatial_axes[0]], x.shape[spatial_axes[1]])
        if any(max(pair) > size - 1 for pair, size in zip(pads, sizes)):
            mode = "edge"
    return jnp.pad(x, widths, mode=mode)


def crop_spatial(x: jax.Array, pads: tuple[tuple[int, int], tuple[int, int]], *,
                 spatial_axes: tuple[int, int]) -> jax.Array:
    """Removes `pads` (as given to `pad_spatial`) from the two `spatial_axes` of x."""
    index = [slice(None)] * x.ndim
    for axis, (before, after) in zip(spatial_axes, pads):
        index[axis] = slice(before, x.shape[axis] - after)
    return x[tuple(index)]
