"""The example layout every focal-stack dataset of this project shares (TFDS builders and input pipeline).

One example holds everything one training or evaluation step needs, so the input pipeline never joins
files:

| key               | dtype   | shape        | meaning                                                         |
|-------------------|---------|--------------|-----------------------------------------------------------------|
| `stack`           | uint8   | (S, H, W, 3) | the focal stack, slices sorted by focus position (ascending)    |
| `focus_positions` | float32 | (S,)         | where each slice is focused, in the dataset's focus unit        |
| `depth`           | float32 | (H, W)       | ground truth in the *same unit as the focus positions*          |
|                   |         |              | (metres, or disparity for DDFF-12 and HCI); 0 where invalid     |
| `valid`           | bool    | (H, W)       | True where `depth` is ground truth; all False without GT        |
| `id`              | string  | ()           | a stable identifier of the source (file stem, scene name, ...)  |
| `aif`             | uint8   | (H, W, 3)    | all-in-focus image (only in datasets that have one)             |
| `has_aif`         | bool    | ()           | whether `aif` is real (only in datasets where some lack one)    |

Every dataset's unit of the focus positions is stored in its `DatasetInfo.metadata["focus_unit"]`
("m" or "disparity_px" ...). A model predicts depth in that unit. Shapes with `None` vary per example.

Array features are stored as zlib-compressed tensors rather than `tfds.features.Image`: encoding an Image
feature needs TensorFlow, and these datasets are prepared and read without it.
"""

from __future__ import annotations

import numpy as np

STACK = "stack"
FOCUS_POSITIONS = "focus_positions"
DEPTH = "depth"
VALID = "valid"
ID = "id"
AIF = "aif"
HAS_AIF = "has_aif"

FOCUS_UNIT_KEY = "focus_unit"
FOCUS_UNIT_METRES = "m"
FOCUS_UNIT_DISPARITY = "disparity"
FOCUS_UNIT_DISPARITY_PX = "disparity_px"


def focal_stack_features(num_slices: int | None, *, with_aif: bool, with_has_aif: bool = False,
                         height: int | None = None, width: int | None = None):
    """The `tfds.features.FeaturesDict` of one focal-stack example (keys in the module docstring).

    Args:
      num_slices: S, or None when the number of slices varies between examples (real phone stacks).
      with_aif: add the `aif` feature (all-in-focus image).
      with_has_aif: add the `has_aif` flag, for datasets where only some examples have an AiF image (the
        others carry an all-zero `aif`).
      height, width: fixed image size, or None (default) when it varies between examples or splits.
    """
    import tensorflow_datasets as tfds  # imported here: the library does not need TFDS to train from arrays

    if num_slices is not None and (isinstance(num_slices, bool) or not isinstance(num_slices, int)
                                   or num_slices < 2):
        raise ValueError(f"num_slices must be an integer >= 2 or None (varying), got {num_slices!r}.")
    if with_has_aif and not with_aif:
        raise ValueError("with_has_aif=True needs with_aif=True: the flag says whether `aif` is real.")
    zlib = tfds.features.Encoding.ZLIB
    features = {
        STACK: tfds.features.Tensor(shape=(num_slices, height, width, 3), dtype=np.uint8, encoding=zlib),
        FOCUS_POSITIONS: tfds.features.Tensor(shape=(num_slices,), dtype=np.float32),
        DEPTH: tfds.features.Tensor(shape=(height, width), dtype=np.float32, encoding=zlib),
        VALID: tfds.features.Tensor(shape=(height, width), dtype=np.bool_, encoding=zlib),
        ID: tfds.features.Text(),
    }
    if with_aif:
        features[AIF] = tfds.features.Tensor(shape=(height, width, 3), dtype=np.uint8, encoding=zlib)
    if with_has_aif:
        features[HAS_AIF] = tfds.features.Tensor(shape=(), dtype=np.bool_)
    return tfds.features.FeaturesDict(features)
