"""Focal stacks rendered from RGB-D with the project's thin-lens renderer, for datasets that have no real stacks.

NYUv2, ARKitScenes and the embedded synthetic set are RGB-D datasets: their focal stacks are synthesised
with `dualfocus_jax.rendering.render_focal_stack` and stored as uint8, like a camera would. The renderer
is jit-compiled once per (H, W, S) and camera, so a builder should feed images of one size.
"""

from __future__ import annotations

import functools

import jax
import numpy as np

from datasets.common.examples import as_uint8_image
from dualfocus_jax.rendering import render_focal_stack


class UnusableFrameError(ValueError):
    """A frame whose valid depth is empty or constant: no focus range can be chosen for it."""


def focus_positions_spanning_depth(depth_HW: np.ndarray, valid_HW: np.ndarray, num_slices: int,
                                   example_id: str) -> np.ndarray:
    """(S,) float32 focus positions linspace(min, max) of the valid depth (the NYUv2/ARKitScenes protocol).

    Raises UnusableFrameError (a ValueError) when the image has no valid pixel or a single valid depth value
    (the positions would coincide); such frames cannot follow the protocol, and builders skip them.
    """
    values = np.asarray(depth_HW, np.float64)[np.asarray(valid_HW, bool)]
    if values.size == 0:
        raise UnusableFrameError(f"{example_id}: no valid depth pixel, so no focus range can be chosen.")
    nearest, farthest = float(values.min()), float(values.max())
    focus = np.linspace(nearest, farthest, num_slices).astype(np.float32)
    if len(np.unique(focus)) != num_slices:
        raise UnusableFrameError(
            f"{example_id}: valid depth spans only [{nearest}, {farthest}], too narrow for {num_slices} distinct "
            "focus positions.")
    return focus


def rendered_stack_u8(image_HWC: np.ndarray, depth_m_HW: np.ndarray, focus_m_S: np.ndarray, camera, *,
                      mode: str = "gaussian", kernel_size: int = 7, num_layers: int = 16) -> np.ndarray:
    """(S, H, W, 3) uint8 focal stack of an all-in-focus image.

    Args:
      image_HWC: (H, W, 3) uint8 or float in [0, 1].
      depth_m_HW: (H, W) depth in metres everywhere the renderer should see a surface; fill holes first
        (`dualfocus_jax.embedded_scenes.fill_invalid_depth`), or they render as very close.
      focus_m_S: (S,) focus distances, metres.
      camera, mode, kernel_size, num_layers: as in `dualfocus_jax.rendering.render_focal_stack`.
    """
    image = as_uint8_image(image_HWC).astype(np.float32) / 255.0
    stack = render_focal_stack(image, np.asarray(depth_m_HW, np.float32), np.asarray(focus_m_S, np.float32),
                               camera, mode=mode, kernel_size=kernel_size, num_layers=num_layers)
    return as_uint8_image(np.asarray(stack))


@functools.cache
def _batched_renderer(camera, mode: str, kernel_size: int, num_layers: int):
    def render_one(image_HWC, depth_HW, focus_S):
        return render_focal_stack(image_HWC, depth_HW, focus_S, camera, mode=mode, kernel_size=kernel_size,
                                  num_layers=num_layers)

    return jax.jit(jax.vmap(render_one))


def rendered_stacks_u8(images_BHWC: np.ndarray, depths_m_BHW: np.ndarray, focus_m_BS: np.ndarray, camera, *,
                       mode: str = "gaussian", kernel_size: int = 7, num_layers: int = 16) -> np.ndarray:
    """(B, S, H, W, 3) uint8: `rendered_stack_u8` for a batch of same-size images in one vmapped call.

    Batching amortises dispatch and lets XLA use larger matmuls (faster per image; README, "Benchmarks").
    Compiled once per batch shape: feed equal-size batches.
    """
    images = np.stack([as_uint8_image(image) for image in images_BHWC]).astype(np.float32) / 255.0
    depths = np.asarray(depths_m_BHW, np.float32)
    focus = np.asarray(focus_m_BS, np.float32)
    if images.ndim != 4 or depths.shape != images.shape[:3] or focus.ndim != 2 or focus.shape[0] != images.shape[0]:
        raise ValueError(
            f"Batch shapes disagree: images {images.shape} (B, H, W, 3), depths {depths.shape} (B, H, W), focus "
            f"{focus.shape} (B, S).")
    # Concrete checks the renderer cannot make under vmap (it sees tracers there).
    if not np.all(np.isfinite(focus)) or np.any(focus <= camera.focal_length_m):
        raise ValueError(f"Focus positions must be finite and beyond the focal length {camera.focal_length_m} m, "
                         f"got {focus.tolist()}.")
    renderer = _batched_renderer(camera, mode, kernel_size, num_layers)
    return as_uint8_image(np.asarray(renderer(images, depths, focus)))
