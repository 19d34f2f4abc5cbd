"""Scene layouts of the focal-stack engine: an all-in-focus image and a nearness map per draw.

Nearness t(x) ∈ [0, 1] is inverse depth rescaled to the scene's span (0 = the farthest surface, 1 = the
nearest); the engine maps it to diopters, so a plane in 3-D (inverse depth affine in image coordinates) is
affine in t. Families:

| family               | what it exercises                                                                   |
|----------------------|-------------------------------------------------------------------------------------|
| plane                | one fronto-parallel surface                                                         |
| slant                | a slanted plane                                                                     |
| curved               | a dome, bowl, cylinder or wave (smooth curvature)                                   |
| steps                | piecewise-constant depth bands or cells (depth steps)                               |
| occluders            | objects of several sizes, thin bars and branches in front of a background           |
| layered              | 2–4 perforated layers one behind the other                                          |
| texture_edge         | stripes, checkers, text or fine photos on a smooth surface: looks like a depth edge |
| similar_texture_edge | depth steps between regions of the same texture: depth edges with no colour edge    |
| textureless          | any layout with patches painted flat: no focus cue there                            |
"""

from __future__ import annotations

import dataclasses

import numpy as np
import scipy.ndimage

from dualfocus_jax.engine import textures

SCENE_FAMILIES = ("plane", "slant", "curved", "steps", "occluders", "layered", "texture_edge",
                  "similar_texture_edge", "textureless")
# Hard families of DualFocus's claims, reported separately by the evaluation.
HARD_FAMILIES = ("texture_edge", "similar_texture_edge", "textureless", "occluders")
FAMILY_WEIGHTS = (0.06, 0.10, 0.10, 0.12, 0.18, 0.10, 0.12, 0.12, 0.10)


@dataclasses.dataclass(frozen=True)
class SceneLayout:
    """image: (H, W, 3) float32 in [0, 1]; nearness: (H, W) float32 in [0, 1]; family: SCENE_FAMILIES."""

    image: np.ndarray
    nearness: np.ndarray
    family: str


def _grid(size):
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    scale = float(max(height, width))
    return (rows - height / 2) / scale, (cols - width / 2) / scale


def _normalised(values: np.ndarray) -> np.ndarray:
    span = float(np.ptp(values))
    return ((values - values.min()) / span if span > 1e-9 else np.zeros_like(values)).astype(np.float32)


def slanted_plane(rng, size) -> np.ndarray:
    rows, cols = _grid(size)
    angle = rng.uniform(0, 2 * np.pi)
    return _normalised(np.cos(angle) * cols + np.sin(angle) * rows)


def curved_surface(rng, size) -> np.ndarray:
    rows, cols = _grid(size)
    kind = rng.integers(4)
    centre_r, centre_c = rng.uniform(-0.3, 0.3, 2)
    if kind == 0:  # dome (nearest in the middle) or bowl
        surface = -((rows - centre_r) ** 2 + (cols - centre_c) ** 2)
        surface = surface if rng.random() < 0.5 else -surface
    elif kind == 1:  # cylinder along a random axis
        angle = rng.uniform(0, np.pi)
        surface = -np.square(np.cos(angle) * (cols - centre_c) + np.sin(angle) * (rows - centre_r))
    elif kind == 2:  # a gentle wave
        angle = rng.uniform(0, np.pi)
        surface = np.sin(2 * np.pi * (np.cos(angle) * cols + np.sin(angle) * rows) * rng.uniform(0.7, 2.0))
    else:  # a saddle
        surface = (rows - centre_r) * (cols - centre_c)
    tilt = 0.5 * rng.uniform(-1, 1) * (np.cos(rng.uniform(0, 2 * np.pi)) * cols + rows * rng.uniform(-1, 1))
    return _normalised(surface + tilt)


def smooth_surface(rng, size) -> np.ndarray:
    """A plane (constant), a slant or a curved surface."""
    choice = rng.integers(3)
    if choice == 0:
        return np.full(size, rng.uniform(0, 1), np.float32)
    return slanted_plane(rng, size) if choice == 1 else curved_surface(rng, size)


def shape_mask(rng, size, scale_range=(0.08, 0.35)) -> np.ndarray:
    """(H, W) bool: a disc, rotated ellipse, rectangle or polygon of radius `scale_range` × image size."""
    rows, cols = _grid(size)
    centre_r, centre_c = rng.uniform(-0.4, 0.4, 2)
    radius_r, radius_c = rng.uniform(*scale_range, 2)
    angle = rng.uniform(0, np.pi)
    u = np.cos(angle) * (cols - centre_c) + np.sin(angle) * (rows - centre_r)
    v = -np.sin(angle) * (cols - centre_c) + np.cos(angle) * (rows - centre_r)
    kind = rng.integers(4)
    if kind == 0:
        return u ** 2 + v ** 2 <= radius_r ** 2
    if kind == 1:
        return (u / radius_c) ** 2 + (v / radius_r) ** 2 <= 1.0
    if kind == 2:
        return (np.abs(u) <= radius_c) & (np.abs(v) <= radius_r)
    # A star-convex polygon: radius varying with the polar angle.
    theta = np.arctan2(v, u)
    count = int(rng.integers(3, 9))
    radii = rng.uniform(0.5, 1.0, count) * radius_r
    radius_at = np.interp(theta, np.linspace(-np.pi, np.pi, count + 1), np.append(radii, radii[0]))
    return np.hypot(u, v) <= radius_at


def thin_mask(rng, size) -> np.ndarray:
    """(H, W) bool: a thin bar (1–4 px wide) or a branching stick across the image."""
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    mask = np.zeros(size, bool)
    for _ in range(int(rng.integers(1, 4))):
        angle = rng.uniform(0, np.pi)
        half_width = rng.uniform(0.5, 2.0)
        centre_r, centre_c = rng.uniform(0, height), rng.uniform(0, width)
        distance = np.abs(np.cos(angle) * (rows - centre_r) - np.sin(angle) * (cols - centre_c))
        along = np.sin(angle) * (rows - centre_r) + np.cos(angle) * (cols - centre_c)
        length = rng.uniform(0.3, 1.2) * max(height, width)
        mask |= (distance <= half_width) & (np.abs(along) <= length / 2)
    return mask


def perforated_mask(rng, size) -> np.ndarray:
    """(H, W) bool: a layer with holes (thresholded smooth noise), covering 30–80% of the image."""
    noise = scipy.ndimage.gaussian_filter(rng.normal(size=size), rng.uniform(2, 8))
    return noise > np.quantile(noise, rng.uniform(0.2, 0.7))


def steps_partition(rng, size) -> np.ndarray:
    """(H, W) int labels 0..K-1: bands along a direction, or Voronoi cells."""
    count = int(rng.integers(2, 6))
    if rng.random() < 0.5:
        ramp = slanted_plane(rng, size)
        cuts = np.sort(rng.uniform(0.1, 0.9, count - 1))
        return np.searchsorted(cuts, ramp)
    rows, cols = _grid(size)
    seeds = rng.uniform(-0.5, 0.5, (count, 2))
    distances = (rows[None] - seeds[:, 0, None, None]) ** 2 + (cols[None] - seeds[:, 1, None, None]) ** 2
    return np.argmin(distances, axis=0)


def _flatten_patches(rng, image) -> np.ndarray:
    image = image.copy()
    for _ in range(int(rng.integers(1, 4))):
        mask = shape_mask(rng, image.shape[:2], (0.1, 0.4))
        if mask.any():
            image[mask] = image[mask].mean(axis=0)
    return image


def _occluders(rng, size, base_kind=None):
    nearness = 0.6 * smooth_surface(rng, size)
    image = textures.texture(rng, size, base_kind)
    objects = sorted(rng.uniform(0.3, 1.0, int(rng.integers(1, 5))))
    objects[-1] = 1.0
    for object_nearness in objects:  # far to near: a nearer object covers a farther one
        mask = thin_mask(rng, size) if rng.random() < 0.3 else shape_mask(rng, size, (0.04, 0.35))
        nearness = np.where(mask, object_nearness, nearness)
        image[mask] = textures.texture(rng, size)[mask]
    return image, nearness


def scene_layout(family: str, rng: np.random.Generator, size: tuple[int, int]) -> SceneLayout:
    """One scene of `family` (SCENE_FAMILIES) at `size` (H, W), drawn from `rng`."""
    if family not in SCENE_FAMILIES:
        raise ValueError(f"unknown scene family {family!r}; choose one of {SCENE_FAMILIES}.")
    size = (int(size[0]), int(size[1]))
    if family == "plane":
        nearness, image = np.full(size, rng.uniform(0, 1), np.float32), textures.texture(rng, size)
    elif family == "slant":
        nearness, image = slanted_plane(rng, size), textures.texture(rng, size)
    elif family == "curved":
        nearness, image = curved_surface(rng, size), textures.texture(rng, size)
    elif family == "steps":
        labels = steps_partition(rng, size)
        levels = rng.permutation(np.linspace(0, 1, labels.max() + 1))
        nearness = levels[labels].astype(np.float32)
        image = np.zeros(size + (3,), np.float32)
        for label in range(labels.max() + 1):
            image[labels == label] = textures.texture(rng, size)[labels == label]
    elif family == "occluders":
        image, nearness = _occluders(rng, size)
    elif family == "layered":
        nearness = np.zeros(size, np.float32)
        image = textures.texture(rng, size)
        count = int(rng.integers(2, 5))
        for level in np.linspace(0, 1, count + 1)[1:]:
            mask = perforated_mask(rng, size)
            nearness = np.where(mask, level + 0.15 * (smooth_surface(rng, size) - 0.5) / count, nearness)
            image[mask] = textures.texture(rng, size)[mask]
        nearness = _normalised(nearness)
    elif family == "texture_edge":
        nearness = smooth_surface(rng, size)
        kind = str(rng.choice(textures.EDGE_LIKE_KINDS))
        image = textures.texture(rng, size, kind)
        if rng.random() < 0.5:  # edge-like texture over part of the surface only, on a photo elsewhere
            mask = shape_mask(rng, size, (0.2, 0.5))
            image[~mask] = textures.texture(rng, size)[~mask]
    elif family == "similar_texture_edge":
        # One texture across the whole image: every depth edge lies inside it, with no colour edge along it.
        image = textures.texture(rng, size, str(rng.choice(["photo", "fine_photo", "fractal_noise", "stripes"])))
        if rng.random() < 0.5:
            labels = steps_partition(rng, size)
            levels = rng.permutation(np.linspace(0, 1, labels.max() + 1))
            nearness = levels[labels].astype(np.float32)
        else:
            nearness = 0.5 * smooth_surface(rng, size)
            for _ in range(int(rng.integers(1, 3))):
                nearness = np.where(shape_mask(rng, size, (0.1, 0.35)), rng.uniform(0.6, 1.0), nearness)
            nearness = _normalised(nearness)
    else:  # textureless
        inner = str(rng.choice(["slant", "curved", "steps", "occluders"]))
        layout = scene_layout(inner, rng, size)
        nearness = layout.nearness
        image = _flatten_patches(rng, layout.image) if rng.random() < 0.7 else textures.gradient(rng, size)
    return SceneLayout(np.clip(image, 0, 1).astype(np.float32), np.clip(nearness, 0, 1).astype(np.float32), family)
