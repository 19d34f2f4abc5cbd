"""focal_engine: a fixed, seeded test split drawn from the focal-stack engine (`dualfocus_jax.engine`).

Needs no download; prepares in about 20 CPU-seconds. One split per slice count, `test_3`, `test_5`,
`test_7`, `test_10` and `test_16` (`SLICE_COUNTS`), each of 27 stacks of 128 x 128 px (`STACKS_PER_SLICE_COUNT`,
`IMAGE_SIZE`): stack i has camera family i % 3 (phone, dslr, protocol; the entry within the family is drawn)
and scene family (i // 3) % 9 (`SCENE_FAMILIES`, hard ones included), so 27 stacks hold every pair of camera
family and scene family once. Everything else (camera values, focus spacing and coverage, PSF, blur span,
sensor noise, JPEG, residual misalignment) is drawn by the engine's defaults from a generator seeded by
(slice count, index): stack i of a slice count is the same whatever the split sizes, and no training draw
shares its seed (training seeds are 3-long sequences, these 4-long).

Depth and focus positions in metres; `valid` is all True (the engine's depth is exact everywhere). Scores
follow the DFF convention of scoring pixels inside the focus range (`experiments/evaluate_generalisation.py`).
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from datasets.common.examples import focal_example
from dualfocus_jax import data_features as F
from dualfocus_jax.engine import CAMERA_FAMILIES, CATALOGUE, SCENE_FAMILIES, EngineSettings, draw_focal_stack

SLICE_COUNTS = (3, 5, 7, 10, 16)
STACKS_PER_SLICE_COUNT = 27
IMAGE_SIZE = (128, 128)
TEST_SEED = 20261203
# Separates these draws from every other seeded use of the engine.
_STREAM = 0x7E57

# Metadata stored with every stack beside the focal-stack layout (and `num_slices`, int32).
TEXT_META = ("camera", "camera_family", "scene_family", "spacing", "coverage", "psf")
FLOAT_META = ("focal_length_mm", "f_number", "pixel_size_um", "scene_near_m", "scene_far_m")


def split_name(num_slices: int) -> str:
    return f"test_{int(num_slices)}"


def engine_test_stack(num_slices: int, index: int, size: tuple[int, int] = IMAGE_SIZE) -> tuple[str, dict]:
    """(id, example) of stack `index` of the `num_slices` split: the example in the dataset's layout plus
    its metadata (TEXT_META, FLOAT_META, num_slices); a pure function of its arguments."""
    camera_family = CAMERA_FAMILIES[index % len(CAMERA_FAMILIES)]
    scene_family = SCENE_FAMILIES[(index // len(CAMERA_FAMILIES)) % len(SCENE_FAMILIES)]
    settings = EngineSettings(cameras=tuple(model.name for model in CATALOGUE if model.family == camera_family))
    rng = np.random.default_rng([TEST_SEED, _STREAM, int(num_slices), int(index)])
    drawn = draw_focal_stack(rng, settings, num_slices=int(num_slices), size=tuple(size), family=scene_family)
    meta = drawn["meta"]
    example_id = f"s{int(num_slices):02d}_{int(index):03d}_{meta['camera']}_{scene_family}"
    example = focal_example(drawn[F.STACK], drawn[F.FOCUS_POSITIONS], drawn[F.DEPTH], drawn[F.VALID], example_id,
                            aif_HWC=drawn[F.AIF])
    example.update({"camera": meta["camera"], "camera_family": meta["camera_family"], "scene_family": meta["family"],
                    "spacing": meta["spacing"], "coverage": meta["coverage"], "psf": meta["psf"],
                    "num_slices": np.int32(meta["num_slices"]),
                    **{name: np.float32(meta[name]) for name in FLOAT_META}})
    return example_id, example


class Builder(tfds.core.GeneratorBasedBuilder):
    """Engine focal stacks across cameras, scene families, slice counts and focus schedules (test only)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 27 stacks of 128 x 128 per slice count 3, 5, 7, 10, 16."}
    # Class attributes, so a test can shrink the dataset.
    SLICE_COUNTS = SLICE_COUNTS
    STACKS_PER_SLICE_COUNT = STACKS_PER_SLICE_COUNT
    IMAGE_SIZE = IMAGE_SIZE

    def _info(self) -> tfds.core.DatasetInfo:
        # Height and width left free (as num_slices), so a shrunken preparation reads back with this class.
        features = dict(F.focal_stack_features(None, with_aif=True))
        features.update({name: tfds.features.Text() for name in TEXT_META})
        features["num_slices"] = tfds.features.Tensor(shape=(), dtype=np.int32)
        features.update({name: tfds.features.Tensor(shape=(), dtype=np.float32) for name in FLOAT_META})
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(features),
            homepage="https://scikit-image.org/docs/stable/api/skimage.data.html",
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_METRES,
                                             "test_seed": TEST_SEED, "slice_counts": list(self.SLICE_COUNTS)}),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Everything comes from installed packages.
        return {split_name(count): self._generate_examples(count) for count in self.SLICE_COUNTS}

    def _generate_examples(self, num_slices: int):
        for index in range(self.STACKS_PER_SLICE_COUNT):
            yield engine_test_stack(num_slices, index, self.IMAGE_SIZE)
