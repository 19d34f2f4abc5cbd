"""fod500: DefocusNet's synthetic focal stacks (the "fs_6" folder), as used by DFV and DualFocus.

Scene idx has five 8-bit RGB TIFF slices `{idx:06d}_{j:02d}All.tif` (j = 0..4, focused at 0.1, 0.15, 0.3,
0.7, 1.5 m), depth `{idx:06d}Dpt.exr` (metres, channel R) and, in some copies, an all-in-focus image
`{idx:06d}Aif.tif`. Scenes 0-399 are train, 400-499 test.
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow_datasets as tfds

from datasets.common.examples import focal_example
from datasets.common.file_readers import read_exr_channel, read_rgb_u8
from datasets.common.manual_dir import (
    CorruptFileError,
    manual_dir_error,
    manual_dir_from_download_manager,
    raise_if_missing,
)
from dualfocus_jax import data_features as F

FOCUS_DISTANCES_M = (0.1, 0.15, 0.3, 0.7, 1.5)
FOLDER_NAME = "fs_6"
_SLICE_NAME = re.compile(r"^(\d{6})_(\d{2})All\.tif$")
_DEPTH_NAME = re.compile(r"^(\d{6})Dpt\.exr$")


def slice_name(index: int, slice_index: int) -> str:
    return f"{index:06d}_{slice_index:02d}All.tif"


def depth_name(index: int) -> str:
    return f"{index:06d}Dpt.exr"


def aif_name(index: int) -> str:
    return f"{index:06d}Aif.tif"


class Builder(tfds.core.GeneratorBasedBuilder):
    """FoD500 focal stacks with metric depth."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Put DefocusNet's synthetic dataset folder `{FOLDER_NAME}` into the manual folder, i.e.
    `<manual_dir>/{FOLDER_NAME}/000000_00All.tif ... 000499_04All.tif`, `000000Dpt.exr ... 000499Dpt.exr`
    and, if your copy has them, `000000Aif.tif ...` (the manual folder may also be `{FOLDER_NAME}` itself).
    Get it from the DefocusNet project (github.com/dvl-tum/defocus-net, "fs_6.zip" linked from its README)
    or the DFV repository's data instructions (github.com/fuy34/DFV).
    """
    # Scene indices of each split (the official split). Class attributes so tests can use a few scenes.
    SPLIT_INDICES = {"train": range(0, 400), "test": range(400, 500)}

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=F.focal_stack_features(len(FOCUS_DISTANCES_M), with_aif=True, with_has_aif=True),
            homepage="https://github.com/dvl-tum/defocus-net",
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_METRES}),
        )

    def check_manual_dir(self, manual_dir) -> str:
        """Returns the folder holding the files; raises ManualDirError naming every missing file."""
        folder = os.path.join(os.fspath(manual_dir), FOLDER_NAME)
        if not os.path.isdir(folder):
            folder = os.fspath(manual_dir)
        names = set(os.listdir(folder))
        if not any(_SLICE_NAME.match(n) or _DEPTH_NAME.match(n) for n in names):
            raise manual_dir_error(
                f"No FoD500 files (like {slice_name(0, 0)} or {depth_name(0)}) in {folder!r}.",
                self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        missing = []
        for indices in self.SPLIT_INDICES.values():
            for index in indices:
                required = [slice_name(index, j) for j in range(len(FOCUS_DISTANCES_M))] + [depth_name(index)]
                missing += [os.path.join(FOLDER_NAME, n) for n in required if n not in names]
        raise_if_missing(missing, manual_dir, "fod500", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        return folder

    def _split_generators(self, dl_manager):
        manual_dir = manual_dir_from_download_manager(dl_manager, "fod500", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        folder = self.check_manual_dir(manual_dir)
        return {split: self._generate_examples(folder, indices) for split, indices in self.SPLIT_INDICES.items()}

    def _generate_examples(self, folder: str, indices):
        for index in indices:
            yield f"{index:06d}", fod500_example(folder, index)


def fod500_example(folder: str, index: int) -> dict:
    """The example of scene `index` read from `folder` (layout in the module docstring)."""
    slices = [read_rgb_u8(os.path.join(folder, slice_name(index, j))) for j in range(len(FOCUS_DISTANCES_M))]
    depth_path = os.path.join(folder, depth_name(index))
    depth = read_exr_channel(depth_path, "R")
    shapes = {s.shape[:2] for s in slices} | {depth.shape}
    if len(shapes) != 1:
        raise CorruptFileError(
            f"Scene {index:06d} in {folder!r} has slices and depth of different sizes {sorted(shapes)}; one of "
            "its files is damaged. Copy the scene's files again.")
    aif_path = os.path.join(folder, aif_name(index))
    has_aif = os.path.isfile(aif_path)
    aif = read_rgb_u8(aif_path) if has_aif else np.zeros(slices[0].shape, np.uint8)
    if aif.shape != slices[0].shape:
        raise CorruptFileError(f"AiF image {aif_path!r} is {aif.shape}, the slices are {slices[0].shape}.")
    # DFV counts pixels with GT > 0 (a background at infinity has no valid depth).
    valid = np.isfinite(depth) & (depth > 0)
    return focal_example(np.stack(slices), FOCUS_DISTANCES_M, depth, valid, f"{index:06d}", aif_HWC=aif,
                         has_aif=has_aif)
