"""ddff12: DDFF-12 (Hazirbas et al., ACCV 2018), real Lytro light fields refocused into 10-slice stacks.

Two configs:
  * `official`: the released HDF5 files. `ddff-dataset-trainval.h5` holds `stack_train`/`disp_train`
    (224 x 224 crops) and `stack_val`/`disp_val`; `ddff-dataset-test.h5` holds `stack_test` (383 x 552,
    no ground truth: its examples carry an all-False `valid` mask).
  * `dfv_resplit`: DFV's re-split (Yang et al., CVPR 2022) of the raw training scenes: full 383 x 552
    stacks, scenes glassroom and office41 for validation and the other four for training; disparity
    computed from the registered depth PNGs with the Lytro calibration `IntParamLF.mat`.
Focus positions are disparities, linspace(0.28248, 0.02018, 10) in file order (0.5 m ... 7 m); stored
ascending, so slice 0 is the farthest focus. Ground truth is disparity in the same unit; 0 = invalid.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from datasets.common.examples import focal_example
from datasets.common.file_readers import open_h5, read_h5_item, read_mat_arrays, read_rgb_u8, read_u16_png
from datasets.common.manual_dir import CorruptFileError, manual_dir_from_download_manager, raise_if_missing
from dualfocus_jax import data_features as F

NUM_SLICES = 10
# Disparity of each slice of a DDFF-12 stack, in file order (slice 0 focused nearest, at 0.5 m).
FOCUS_DISPARITIES = np.linspace(0.28248, 0.02018, NUM_SLICES)
TRAINVAL_FILE = "ddff-dataset-trainval.h5"
TEST_FILE = "ddff-dataset-test.h5"
OFFICIAL_KEYS = {
    "train": (TRAINVAL_FILE, "stack_train", "disp_train"),
    "validation": (TRAINVAL_FILE, "stack_val", "disp_val"),
    "test": (TEST_FILE, "stack_test", None),
}
CALIBRATION_FILE = "IntParamLF.mat"
RAW_IMAGES_DIR = os.path.join("images", "train")
RAW_DEPTH_DIR = os.path.join("DepthRegistered", "train")
DFV_VALIDATION_SCENES = ("glassroom", "office41")
# Sub-aperture focal length of the Lytro Illum light fields (pixels), from the DDFF toolbox's refocus.py.
SUBAPERTURE_FOCAL_PX = 521.4052


@dataclasses.dataclass
class DDFF12Config(tfds.core.BuilderConfig):
    """`source` is "official" (HDF5 release) or "raw" (raw scenes, DFV's re-split)."""

    source: str = "official"


class Builder(tfds.core.GeneratorBasedBuilder):
    """DDFF-12 focal stacks with disparity ground truth."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        DDFF12Config(name="official", source="official",
                     description="The released HDF5 files: train / validation (224x224 crops) and test (no GT)."),
        DDFF12Config(name="dfv_resplit", source="raw",
                     description="DFV's re-split of the raw training scenes (full 383x552 stacks, with AiF)."),
    ]
    DEFAULT_CONFIG_NAME = "official"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Config `official`: put `{TRAINVAL_FILE}` (12.6 GB) and `{TEST_FILE}` into the manual folder. Both are
    linked from the DDFF-12 page (hazirbas.com/datasets/ddff12scene, "Downloads": trainval and test HDF5).
    Config `dfv_resplit`: put the raw DDFF-12 training scenes there: `{RAW_IMAGES_DIR}/<scene>/<stack>/*.png`
    (11 PNGs per stack: the all-in-focus image, then the 10 slices), `{RAW_DEPTH_DIR}/<scene>/DEPTH_<stack>.png`
    (uint16 millimetres) and the Lytro calibration `{CALIBRATION_FILE}` (from the DDFF toolbox,
    github.com/hazirbas/ddff-toolbox, also shipped in DFV's repository github.com/fuy34/DFV).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=F.focal_stack_features(NUM_SLICES, with_aif=self.builder_config.source == "raw"),
            homepage="https://hazirbas.com/datasets/ddff12scene/",
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_DISPARITY}),
        )

    def check_manual_dir(self, manual_dir):
        """Checks every needed file; returns what `_split_generators` needs for this config."""
        manual_dir = os.fspath(manual_dir)
        if self.builder_config.source == "official":
            return _check_official(manual_dir, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        return _check_raw(manual_dir, self.MANUAL_DOWNLOAD_INSTRUCTIONS)

    def _split_generators(self, dl_manager):
        manual_dir = manual_dir_from_download_manager(dl_manager, "ddff12", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        checked = self.check_manual_dir(manual_dir)
        if self.builder_config.source == "official":
            return {
                split: self._generate_examples(("official", os.path.join(manual_dir, file), stack_key, disp_key, split))
                for split, (file, stack_key, disp_key) in OFFICIAL_KEYS.items()
            }
        baseline_focal = checked["disparity_times_depth"]
        return {split: self._generate_examples(("raw", stacks, baseline_focal))
                for split, stacks in checked["splits"].items()}

    def _generate_examples(self, source: tuple):
        """source: ("official", path, stack_key, disp_key, split) or ("raw", stacks, disparity_times_depth)."""
        if source[0] == "official":
            yield from self._official_examples(*source[1:])
        else:
            yield from self._raw_examples(*source[1:])

    def _official_examples(self, path: str, stack_key: str, disp_key: str | None, split: str):
        with open_h5(path) as handle:
            count = handle[stack_key].shape[0]
            for index in range(count):
                stack = stack_u8_from_0_255(read_h5_item(handle, stack_key, index), f"{path}:{stack_key}[{index}]")
                disparity = None if disp_key is None else read_h5_item(handle, disp_key, index).astype(np.float32)
                example_id = f"{split}_{index:05d}"
                valid = None if disparity is None else np.isfinite(disparity) & (disparity > 0)
                yield example_id, focal_example(stack, FOCUS_DISPARITIES, disparity, valid, example_id)

    def _raw_examples(self, stacks, disparity_times_depth: float):
        for example_id, image_paths, depth_path in stacks:
            images = [read_rgb_u8(p) for p in image_paths]
            depth_mm = read_u16_png(depth_path).astype(np.float64)
            if len({im.shape for im in images}) != 1 or images[0].shape[:2] != depth_mm.shape:
                raise CorruptFileError(
                    f"Stack {example_id}: images and depth {depth_path!r} differ in size; re-copy the stack.")
            valid = depth_mm > 0
            disparity = np.where(valid, disparity_times_depth / np.where(valid, depth_mm / 1000.0, 1.0), 0.0)
            yield example_id, focal_example(np.stack(images[1:]), FOCUS_DISPARITIES, disparity, valid, example_id,
                                            aif_HWC=images[0])


def stack_u8_from_0_255(stack: np.ndarray, name: str) -> np.ndarray:
    """A stack stored as uint8 or as floats in [0, 255] (both occur in DDFF files) as uint8."""
    stack = np.asarray(stack)
    if stack.ndim != 4 or stack.shape[0] != NUM_SLICES or stack.shape[-1] != 3:
        raise CorruptFileError(f"{name}: expected a ({NUM_SLICES}, H, W, 3) stack, got shape {stack.shape}.")
    if stack.dtype == np.uint8:
        return stack
    return np.clip(np.round(stack.astype(np.float64)), 0, 255).astype(np.uint8)


def _check_official(manual_dir: str, instructions: str) -> None:
    missing = [name for name in (TRAINVAL_FILE, TEST_FILE) if not os.path.isfile(os.path.join(manual_dir, name))]
    raise_if_missing(missing, manual_dir, "ddff12 (official)", instructions)
    needed = {}
    for file, stack_key, disp_key in OFFICIAL_KEYS.values():
        needed.setdefault(file, []).extend(k for k in (stack_key, disp_key) if k)
    for file, keys in needed.items():
        path = os.path.join(manual_dir, file)
        with open_h5(path) as handle:
            absent = [key for key in keys if key not in handle]
            if absent:
                raise CorruptFileError(
                    f"HDF5 file {path!r} lacks {absent} (it has {sorted(handle.keys())}); it is incomplete or not "
                    "the DDFF-12 file. Download it again.")


def disparity_times_depth_from_calibration(path: str) -> float:
    """baseline x sub-aperture focal length (metre x pixel): disparity = this / depth in metres.

    From the Lytro calibration vector IntParamLF (DDFF toolbox): baseline = K2 / max(fx, fy) * 1e-3.
    """
    values = np.asarray(read_mat_arrays(path, ("IntParamLF",))["IntParamLF"], np.float64).ravel()
    if values.size < 4 or not np.all(np.isfinite(values[1:4])) or max(values[2:4]) <= 0:
        raise CorruptFileError(f"{path!r}: IntParamLF must hold at least [?, K2, fx, fy], got {values.tolist()}.")
    return float(values[1] / max(values[2:4]) * 1e-3 * SUBAPERTURE_FOCAL_PX)


def _check_raw(manual_dir: str, instructions: str) -> dict:
    images_root = os.path.join(manual_dir, RAW_IMAGES_DIR)
    depth_root = os.path.join(manual_dir, RAW_DEPTH_DIR)
    missing = [name for name in (CALIBRATION_FILE,) if not os.path.isfile(os.path.join(manual_dir, name))]
    missing += [d + os.sep for d in (RAW_IMAGES_DIR, RAW_DEPTH_DIR) if not os.path.isdir(os.path.join(manual_dir, d))]
    raise_if_missing(missing, manual_dir, "ddff12 (dfv_resplit)", instructions)
    splits = {"train": [], "validation": []}
    for scene in sorted(os.listdir(images_root)):
        scene_dir = os.path.join(images_root, scene)
        if not os.path.isdir(scene_dir):
            continue
        split = "validation" if scene in DFV_VALIDATION_SCENES else "train"
        for stack_id in sorted(os.listdir(scene_dir)):
            stack_dir = os.path.join(scene_dir, stack_id)
            if not os.path.isdir(stack_dir):
                continue
            pngs = sorted(f for f in os.listdir(stack_dir) if f.lower().endswith(".png"))
            if len(pngs) != NUM_SLICES + 1:
                missing.append(f"{os.path.join(RAW_IMAGES_DIR, scene, stack_id)}{os.sep}: {len(pngs)} of "
                               f"{NUM_SLICES + 1} PNGs (all-in-focus + {NUM_SLICES} slices)")
            depth_path = os.path.join(depth_root, scene, f"DEPTH_{stack_id}.png")
            if not os.path.isfile(depth_path):
                missing.append(os.path.join(RAW_DEPTH_DIR, scene, f"DEPTH_{stack_id}.png"))
            splits[split].append((f"{scene}_{stack_id}", [os.path.join(stack_dir, p) for p in pngs], depth_path))
    if not splits["train"] and not splits["validation"]:
        missing.append(os.path.join(RAW_IMAGES_DIR, "<scene>", "<stack>") + os.sep + "*.png")
    raise_if_missing(missing, manual_dir, "ddff12 (dfv_resplit)", instructions)
    return {"splits": splits,
            "disparity_times_depth": disparity_times_depth_from_calibration(os.path.join(manual_dir, CALIBRATION_FILE))}

