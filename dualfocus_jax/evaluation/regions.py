"""Pixel regions where depth from focus is hard: depth edges and fine textures (for region-restricted metrics).

DualFocus claims its constraints help most where a focus measure is misleading: at depth discontinuities
(blur from the far side bleeds over the edge) and on fine texture (strong image gradients that are not depth
edges). These masks pick those pixels from ground truth and the all-in-focus image, so that
`dualfocus_jax.evaluation.metrics` can be computed on them alone:

* depth edges: pixels whose ground-truth depth differs from a 4-neighbour by more than `relative_jump` of the
  focus range (unit free), widened by `radius` pixels on both sides, within the valid mask;
* fine texture: pixels whose all-in-focus luminance gradient (central differences, intensities in [0, 1]) is
  at least `min_gradient` per pixel, on smooth depth (outside the widened depth edges), within the valid mask.

The two are disjoint by construction; pixels in neither are smooth, untextured surfaces.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from dualfocus_jax.evaluation.metrics import depth_metrics_per_image

LUMINANCE_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
REGIONS = ("all", "depth_edges", "fine_texture")


def depth_edge_mask(depth_gt_HW, valid_HW, depth_range: float, *, relative_jump: float = 0.05,
                    radius: int = 2) -> np.ndarray:
    """(H, W) bool: valid pixels within `radius` px of a ground-truth depth jump > relative_jump × depth_range."""
    depth = np.asarray(depth_gt_HW, np.float64)
    valid = np.asarray(valid_HW, bool)
    if depth.ndim != 2 or valid.shape != depth.shape:
        raise ValueError(f"depth_gt must be (H, W) and valid the same shape; got {depth.shape} and {valid.shape}.")
    valid = valid & np.isfinite(depth)
    if not depth_range > 0:
        raise ValueError(f"depth_range must be > 0 (the focus range in the depth unit), got {depth_range}.")
    threshold = relative_jump * depth_range
    jumps = np.zeros(depth.shape, bool)
    # A jump between two valid neighbours marks both pixels (the edge lies between them).
    down = valid[1:, :] & valid[:-1, :] & (np.abs(np.diff(depth, axis=0)) > threshold)
    right = valid[:, 1:] & valid[:, :-1] & (np.abs(np.diff(depth, axis=1)) > threshold)
    jumps[1:, :] |= down
    jumps[:-1, :] |= down
    jumps[:, 1:] |= right
    jumps[:, :-1] |= right
    if radius > 0 and jumps.any():
        jumps = ndimage.binary_dilation(jumps, structure=np.ones((2 * radius + 1, 2 * radius + 1), bool))
    return jumps & valid


def luminance_gradient(image_HWC) -> np.ndarray:
    """(H, W) magnitude of the central-difference gradient of the luminance, intensities scaled to [0, 1]."""
    image = np.asarray(image_HWC, np.float64)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}.")
    if np.issubdtype(np.asarray(image_HWC).dtype, np.integer):
        image = image / 255.0
    luminance = image @ LUMINANCE_WEIGHTS.astype(np.float64)
    gy, gx = np.gradient(luminance)
    return np.hypot(gy, gx)


def fine_texture_mask(image_HWC, valid_HW, depth_edges_HW, *, min_gradient: float = 0.04) -> np.ndarray:
    """(H, W) bool: valid pixels off the depth edges where the all-in-focus luminance gradient ≥ min_gradient."""
    gradient = luminance_gradient(image_HWC)
    valid = np.asarray(valid_HW, bool)
    edges = np.asarray(depth_edges_HW, bool)
    if gradient.shape != valid.shape or edges.shape != valid.shape:
        raise ValueError(f"image {gradient.shape}, valid {valid.shape} and depth edges {edges.shape} must share "
                         "height and width.")
    return valid & ~edges & (gradient >= min_gradient)


def region_masks(depth_gt_HW, valid_HW, image_HWC, depth_range: float) -> dict[str, np.ndarray]:
    """{"all": valid, "depth_edges": ..., "fine_texture": ...} with this module's default thresholds."""
    valid = np.asarray(valid_HW, bool) & np.isfinite(np.asarray(depth_gt_HW, np.float64))
    edges = depth_edge_mask(depth_gt_HW, valid, depth_range)
    return {"all": valid, "depth_edges": edges, "fine_texture": fine_texture_mask(image_HWC, valid, edges)}


def region_metrics_per_image(pred_BHW, gt_BHW, masks: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """{region: {metric: (B,) values per image, "pixels": (B,) pixel counts}} of the depth metrics on each
    region's (B, H, W) mask of `masks` (an image without pixels in a region has NaN metrics there)."""
    scores = {}
    for region, mask in masks.items():
        mask = np.asarray(mask, bool)
        values = depth_metrics_per_image(jnp.asarray(pred_BHW), jnp.asarray(gt_BHW), jnp.asarray(mask))
        scores[region] = {name: np.asarray(value) for name, value in values.items()}
        scores[region]["pixels"] = mask.reshape(len(mask), -1).sum(-1)
    return scores
