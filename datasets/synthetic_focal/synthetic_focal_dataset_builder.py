"""synthetic_focal: the embedded default dataset, rendered from RGB-D that ships with scikit-image.

Needs no download and prepares in about 30 CPU-seconds; the demo and the tests use it.
Splits:
  * train (200) and test (40): procedural scenes (`procedural_scenes.SCENE_FAMILIES`, cycled in order)
    textured with scikit-image's photographs, 128 x 128, 5 slices focused at linspace(near, far) of the
    scene's depth range;
  * middlebury (1): the real Middlebury 2014 motorcycle RGB-D pair (`skimage.data.stereo_motorcycle`),
    2x2 block-averaged to 250 x 370, 5 slices at linspace(min, max) of its valid depth.
All stacks come from `dualfocus_jax.rendering.render_focal_stack` in the occlusion-aware layered mode
with the NYUv2 protocol's camera (F = 50 mm, f/8, 12 um pixels). Depth and focus positions in metres.
Deterministic: every scene is drawn from a generator seeded by (split, index).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from datasets.common.examples import focal_example
from datasets.common.rendered_stacks import (
    focus_positions_spanning_depth,
    rendered_stack_u8,
    rendered_stacks_u8,
)
from datasets.synthetic_focal.procedural_scenes import SCENE_FAMILIES, procedural_scene
from dualfocus_jax import data_features as F
from dualfocus_jax.embedded_scenes import fill_invalid_depth, motorcycle_scene
from dualfocus_jax.rendering import NYUV2_CAMERA

NUM_SLICES = 5
IMAGE_SIZE = (128, 128)
SPLIT_SIZES = {"train": 200, "test": 40}
# Distinct seeds per split, so test scenes are never train scenes.
_SPLIT_SEEDS = {"train": 20250, "test": 20251}
RENDER_MODE = "layered"
NUM_LAYERS = 16
# Scenes rendered per vmapped call (faster per image than one at a time).
RENDER_BATCH = 8
# Middlebury motorcycle downscaling: 2x2 blocks (500 x 741 -> 250 x 370), to keep preparation fast.
_MOTORCYCLE_BLOCK = 2


class Builder(tfds.core.GeneratorBasedBuilder):
    """Procedural and Middlebury focal stacks rendered with the project's thin-lens renderer."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 200 train, 40 test procedural scenes, 1 Middlebury scene."}
    # Class attributes, so a test can shrink the dataset (e.g. SPLIT_SIZES = {"train": 6, "test": 6}).
    SPLIT_SIZES = SPLIT_SIZES

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=F.focal_stack_features(NUM_SLICES, with_aif=True),
            homepage="https://scikit-image.org/docs/stable/api/skimage.data.html",
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_METRES}),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything comes from installed packages.
        splits = {name: self._generate_examples(name, size) for name, size in self.SPLIT_SIZES.items()}
        splits["middlebury"] = self._generate_middlebury()
        return splits

    def _generate_examples(self, split: str, size: int):
        for start in range(0, size, RENDER_BATCH):
            yield from procedural_examples(split, range(start, min(start + RENDER_BATCH, size)), NYUV2_CAMERA)

    def _generate_middlebury(self):
        yield middlebury_example(NYUV2_CAMERA)


def procedural_scene_of(split: str, index: int):
    """(id, scene, focus positions (S,) metres) of procedural scene `index` of `split`; pure function."""
    family = SCENE_FAMILIES[index % len(SCENE_FAMILIES)]
    scene = procedural_scene(family, np.random.default_rng([_SPLIT_SEEDS[split], index]), IMAGE_SIZE)
    focus = np.linspace(scene.near_m, scene.far_m, NUM_SLICES).astype(np.float32)
    return f"{split}_{index:04d}_{family}", scene, focus


def procedural_examples(split: str, indices, camera):
    """Yields (key, example) for the given scene indices of `split`, rendered in one batch.

    The batch is padded to RENDER_BATCH by repeating its last scene, so every batch has one shape and the
    renderer compiles once.
    """
    scenes = [procedural_scene_of(split, index) for index in indices]
    padded = scenes + [scenes[-1]] * (RENDER_BATCH - len(scenes))
    stacks = rendered_stacks_u8(np.stack([scene.image for _, scene, _ in padded]),
                                np.stack([scene.depth_m for _, scene, _ in padded]),
                                np.stack([focus for _, _, focus in padded]), camera, mode=RENDER_MODE,
                                num_layers=NUM_LAYERS)
    for (example_id, scene, focus), stack in zip(scenes, stacks):
        yield example_id, focal_example(stack, focus, scene.depth_m, np.ones(IMAGE_SIZE, bool), example_id,
                                        aif_HWC=scene.image)


def downscaled_motorcycle(block: int = _MOTORCYCLE_BLOCK):
    """The Middlebury motorcycle averaged over block x block pixels.

    Returns (image (H, W, 3) float32 in [0, 1], depth (H, W) float32 metres, valid (H, W) bool); a block is
    valid only if all its pixels are, and its depth is their mean.
    """
    scene = motorcycle_scene()
    height = scene.image.shape[0] // block * block
    width = scene.image.shape[1] // block * block

    def blocks(array):
        array = array[:height, :width]
        return array.reshape(height // block, block, width // block, block, *array.shape[2:])

    image = blocks(scene.image).mean(axis=(1, 3))
    valid_count = blocks(scene.valid.astype(np.float32)).sum(axis=(1, 3))
    depth_sum = blocks(np.where(scene.valid, scene.depth_m, 0.0)).sum(axis=(1, 3))
    valid = valid_count == block * block
    depth = np.where(valid, depth_sum / np.maximum(valid_count, 1), 0.0)
    return image.astype(np.float32), depth.astype(np.float32), valid


def middlebury_example(camera) -> tuple[str, dict]:
    """(key, example) of the Middlebury motorcycle, rendered with invalid depth filled from its neighbours."""
    image, depth, valid = downscaled_motorcycle()
    example_id = "middlebury_motorcycle"
    focus = focus_positions_spanning_depth(depth, valid, NUM_SLICES, example_id)
    stack = rendered_stack_u8(image, fill_invalid_depth(depth, valid), focus, camera, mode=RENDER_MODE,
                              num_layers=NUM_LAYERS)
    return example_id, focal_example(stack, focus, depth, valid, example_id, aif_HWC=image)
