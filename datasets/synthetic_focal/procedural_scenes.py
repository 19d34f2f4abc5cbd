"""Procedural RGB-D scenes textured with the real photographs scikit-image ships.

Each scene is an all-in-focus image with metric depth built to exercise one difficulty of depth from
focus: fronto-parallel planes, slanted planes, depth steps, occluding objects in front of a background,
fine high-frequency texture (which looks like an edge when defocused), and textureless patches (no focus
cue at all). Depth always spans the scene's design range [near, far] exactly (except the single plane,
which sits inside it), so focus positions linspace(near, far, S) bracket every surface.

Everything is drawn from a `numpy.random.Generator`, so a scene is a pure function of its seed.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
from skimage import data
from skimage.transform import resize

SCENE_FAMILIES = ("plane", "slant", "steps", "occluders", "fine_texture", "textureless")

# Real photographs bundled with scikit-image (no download); grey ones get a random tint.
_PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                "camera", "brick", "grass", "gravel", "moon", "coins", "page", "text", "clock")
# Photographs whose detail is high-frequency everywhere: used, zoomed out, for the fine-texture family.
_FINE_PHOTOGRAPHS = ("grass", "gravel", "brick", "text", "page")
# The design depth range: near in [0.7, 1.5] m, far = near + [0.6, 2.0] m (indoor distances, like NYUv2).
_NEAR_RANGE_M = (0.7, 1.5)
_SPAN_RANGE_M = (0.6, 2.0)


@dataclasses.dataclass(frozen=True)
class ProceduralScene:
    """An all-in-focus image with depth everywhere.

    Attributes:
      image: (H, W, 3) float32 in [0, 1].
      depth_m: (H, W) float32 metres, > 0 everywhere.
      near_m, far_m: the design depth range; depth lies in [near_m, far_m].
      family: one of SCENE_FAMILIES.
    """

    image: np.ndarray
    depth_m: np.ndarray
    near_m: float
    far_m: float
    family: str


@functools.cache
def _photograph(name: str) -> np.ndarray:
    """(H, W, C) float32 in [0, 1], C = 1 or 3."""
    array = np.asarray(getattr(data, name)())
    if array.ndim == 2:
        array = array[..., None]
    return (array[..., :3].astype(np.float32) / 255.0)


def texture_patch(rng: np.random.Generator, size: tuple[int, int], names: tuple[str, ...] = _PHOTOGRAPHS,
                  zoom_range: tuple[float, float] = (0.4, 1.2)) -> np.ndarray:
    """(H, W, 3) float32 crop of a random photograph, rescaled by a random zoom (< 1 = more detail)."""
    photo = _photograph(names[rng.integers(len(names))])
    height, width = size
    zoom = rng.uniform(*zoom_range)
    crop_h = int(min(photo.shape[0], max(8, round(height / zoom))))
    crop_w = int(min(photo.shape[1], max(8, round(width / zoom))))
    top = rng.integers(photo.shape[0] - crop_h + 1)
    left = rng.integers(photo.shape[1] - crop_w + 1)
    crop = photo[top:top + crop_h, left:left + crop_w]
    patch = resize(crop, (height, width), order=1, anti_aliasing=crop_h > height, preserve_range=True)
    if patch.shape[-1] == 1:
        tint = rng.uniform(0.6, 1.0, 3)
        patch = patch * (tint / tint.max())
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return np.clip(patch, 0.0, 1.0).astype(np.float32)


def _ramp(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """(H, W) in [0, 1], linear along a random direction, 0 and 1 both reached."""
    height, width = size
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    ramp = np.cos(angle) * cols + np.sin(angle) * rows
    return (ramp - ramp.min()) / (ramp.max() - ramp.min())


def _slanted_plane(ramp: np.ndarray, near: float, far: float) -> np.ndarray:
    # A plane in 3-D has inverse depth linear in image coordinates (perspective projection).
    return 1.0 / ((1.0 - ramp) / near + ramp / far)


def _shape_mask(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: a random disc, ellipse or rectangle covering roughly 3-25% of the image."""
    height, width = size
    rows, cols = np.meshgrid(np.arange(height) / height, np.arange(width) / width, indexing="ij")
    centre_r, centre_c = rng.uniform(0.2, 0.8, 2)
    radius_r, radius_c = rng.uniform(0.1, 0.28, 2)
    kind = rng.integers(3)
    if kind == 0:  # disc
        return (rows - centre_r) ** 2 + (cols - centre_c) ** 2 <= radius_r ** 2
    angle = rng.uniform(0, np.pi)
    u = np.cos(angle) * (cols - centre_c) + np.sin(angle) * (rows - centre_r)
    v = -np.sin(angle) * (cols - centre_c) + np.cos(angle) * (rows - centre_r)
    if kind == 1:  # rotated ellipse
        return (u / radius_c) ** 2 + (v / radius_r) ** 2 <= 1.0
    return (np.abs(u) <= radius_c) & (np.abs(v) <= radius_r)  # rotated rectangle


def _steps(rng, size, near, far, texture_names, zoom_range):
    ramp = _ramp(rng, size)
    num_steps = int(rng.integers(2, 5))
    band = np.minimum((ramp * num_steps).astype(int), num_steps - 1)
    depths = np.concatenate([[near, far], rng.uniform(near, far, num_steps - 2)])
    rng.shuffle(depths)
    depth = depths[band]
    image = np.zeros(size + (3,), np.float32)
    for step in range(num_steps):
        image[band == step] = texture_patch(rng, size, texture_names, zoom_range)[band == step]
    return image, depth


def _occluders(rng, size, near, far):
    background_near = rng.uniform(near + 0.5 * (far - near), far)
    if rng.random() < 0.5:
        depth = _slanted_plane(_ramp(rng, size), background_near, far)
    else:
        depth = np.full(size, far)
    image = texture_patch(rng, size)
    num_objects = int(rng.integers(1, 4))
    object_depths = np.sort(np.concatenate([[near], rng.uniform(near, 0.9 * background_near, num_objects - 1)]))
    for object_depth in object_depths[::-1]:  # far to near, so nearer objects cover farther ones
        mask = _shape_mask(rng, size)
        depth = np.where(mask, object_depth, depth)
        image[mask] = texture_patch(rng, size)[mask]
    return image, depth


def _flatten_patches(rng, image):
    """Paints 1-3 random shapes in their own mean colour: textureless regions with no focus cue."""
    image = image.copy()
    for _ in range(int(rng.integers(1, 4))):
        mask = _shape_mask(rng, image.shape[:2])
        if mask.any():
            image[mask] = image[mask].mean(axis=0)
    return image


def procedural_scene(family: str, rng: np.random.Generator, size: tuple[int, int] = (128, 128)) -> ProceduralScene:
    """One scene of `family` (see SCENE_FAMILIES), drawn from `rng`."""
    if family not in SCENE_FAMILIES:
        raise ValueError(f"Unknown scene family {family!r}; choose one of {SCENE_FAMILIES}.")
    size = (int(size[0]), int(size[1]))
    if min(size) < 16:
        raise ValueError(f"Scene size must be at least 16x16 pixels, got {size}.")
    near = float(rng.uniform(*_NEAR_RANGE_M))
    far = near + float(rng.uniform(*_SPAN_RANGE_M))
    if family == "plane":
        depth = np.full(size, rng.uniform(near, far))
        image = texture_patch(rng, size)
    elif family == "slant":
        depth = _slanted_plane(_ramp(rng, size), near, far)
        image = texture_patch(rng, size)
    elif family == "steps":
        image, depth = _steps(rng, size, near, far, _PHOTOGRAPHS, (0.4, 1.2))
    elif family == "occluders":
        image, depth = _occluders(rng, size, near, far)
    elif family == "fine_texture":
        if rng.random() < 0.5:
            depth = _slanted_plane(_ramp(rng, size), near, far)
            image = texture_patch(rng, size, _FINE_PHOTOGRAPHS, (0.25, 0.5))
        else:
            image, depth = _steps(rng, size, near, far, _FINE_PHOTOGRAPHS, (0.25, 0.5))
    else:  # textureless
        if rng.random() < 0.5:
            image, depth = _steps(rng, size, near, far, _PHOTOGRAPHS, (0.4, 1.2))
        else:
            depth = _slanted_plane(_ramp(rng, size), near, far)
            image = texture_patch(rng, size)
        image = _flatten_patches(rng, image)
    return ProceduralScene(image=np.clip(image, 0, 1).astype(np.float32), depth_m=depth.astype(np.float32),
                           near_m=near, far_m=far, family=family)
