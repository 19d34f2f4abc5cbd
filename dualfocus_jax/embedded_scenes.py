"""Real RGB-D scenes that ship with installed packages, so demos and tests need no download.

The motorcycle scene is the Middlebury 2014 "Motorcycle" stereo pair as scikit-image ships it
(`skimage.data.stereo_motorcycle()`): the left image and its ground-truth disparity, downscaled 4x from the
original 2964x1988. Depth follows from the calibration of the full-size pair, scaled by 1/4:
depth = baseline * focal / (disparity + doffs), baseline 0.193001 m, focal 3979.911 / 4 px,
doffs 124.343 / 4 px. Pixels without a disparity (inf) are invalid.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from scipy import ndimage
from skimage import data

from dualfocus_jax.rendering import NYUV2_CAMERA, render_focal_stack

MOTORCYCLE_BASELINE_M = 0.193001
MOTORCYCLE_FOCAL_PX = 3979.911 / 4.0
MOTORCYCLE_DOFFS_PX = 124.343 / 4.0


@dataclasses.dataclass(frozen=True)
class RGBDScene:
    """An all-in-focus image with metric depth.

    Attributes:
      image: (H, W, 3) float32 in [0, 1].
      depth_m: (H, W) float32 metres; 0 where invalid.
      valid: (H, W) bool.
      name: scene identifier.
    """

    image: np.ndarray
    depth_m: np.ndarray
    valid: np.ndarray
    name: str


def motorcycle_scene() -> RGBDScene:
    """The Middlebury motorcycle (500x741, depth 2.1-5.0 m, ~93% valid pixels)."""
    left, _, disparity = data.stereo_motorcycle()
    valid = np.isfinite(disparity) & (disparity > 0)
    depth = np.where(
        valid, MOTORCYCLE_BASELINE_M * MOTORCYCLE_FOCAL_PX / (np.where(valid, disparity, 0) + MOTORCYCLE_DOFFS_PX),
        0.0)
    return RGBDScene(image=(left.astype(np.float32) / 255.0), depth_m=depth.astype(np.float32), valid=valid,
                     name="middlebury_motorcycle")


def fill_invalid_depth(depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth with each invalid pixel set to its nearest valid neighbour's value.

    A renderer needs a depth everywhere; nearest-valid filling keeps occlusion holes at the depth of the
    surface next to them instead of pulling them to zero (which would read as 'infinitely close').
    """
    if valid.all():
        return depth.astype(np.float32)
    if not valid.any():
        raise ValueError("The depth map has no valid pixel to fill from.")
    _, (rows, cols) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return depth[rows, cols].astype(np.float32)


@dataclasses.dataclass(frozen=True)
class RenderedStack:
    """A focal stack rendered from an RGB-D scene, with what scoring it needs.

    Attributes:
      stack: (S, H, W, 3) float32 in [0, 1].
      focus_m: (S,) float32 focus distances, metres, increasing.
      image: (H, W, 3) the all-in-focus image it was rendered from.
      depth_m: (H, W) ground-truth depth (0 where invalid).
      valid: (H, W) bool, pixels with ground truth.
      scored: (H, W) bool, valid pixels whose depth lies inside the focus range (the DFF convention).
    """

    stack: np.ndarray
    focus_m: np.ndarray
    image: np.ndarray
    depth_m: np.ndarray
    valid: np.ndarray
    scored: np.ndarray


def render_motorcycle_stack(num_slices: int, *, downscale: int = 1, mode: str = "layered") -> RenderedStack:
    """The motorcycle scene as a focal stack: thin lens with the NYUv2 camera, `num_slices` focus distances
    spread evenly over the valid depth range (the NYUv2 protocol), every `downscale`-th pixel."""
    scene = motorcycle_scene()
    image, depth, valid = (a[::downscale, ::downscale] for a in (scene.image, scene.depth_m, scene.valid))
    focus = np.linspace(depth[valid].min(), depth[valid].max(), num_slices).astype(np.float32)
    stack = np.asarray(render_focal_stack(jnp.asarray(image), jnp.asarray(fill_invalid_depth(depth, valid)),
                                          jnp.asarray(focus), NYUV2_CAMERA, mode=mode))
    scored = valid & (depth >= focus[0]) & (depth <= focus[-1])
    return RenderedStack(stack=stack, focus_m=focus, image=image, depth_m=depth, valid=valid, scored=scored)
