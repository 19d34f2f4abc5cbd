"""nyuv2_focal: NYU Depth v2 with focal stacks rendered by the project's thin-lens renderer.

Protocol (HybridDepth, as DualFocus reports): centre crop 640 x 480 to 512 x 384 (this also removes the
white border of the Kinect frames), valid depth 1e-3 < d < 10 m, thin lens F = 50 mm, f/8, 12 um pixels,
per-pixel Gaussian PSF in a 7 x 7 window (`render_focal_stack(mode="gaussian")`), S focus positions at
linspace(min, max) of the image's valid depth. Configs `5_slices` and `10_slices`.

Two source layouts are accepted in the manual folder:
  * labeled: `nyu_depth_v2_labeled.mat` (MAT v7.3 = HDF5: `images` (N, 3, 640, 480) uint8 and `depths`
    (N, 640, 480) metres, axes reversed by MATLAB) + `splits.mat` (`trainNdxs`, `testNdxs`, 1-based):
    795 train / 654 test;
  * BTS "sync": `nyudepthv2_train_files_with_gt.txt` + `sync/` (24,231 train pairs) and
    `nyudepthv2_test_files_with_gt.txt` + `official_splits/test/` (654 test pairs); each list line is
    `<rgb.jpg> <depth.png> <focal>` with depth PNGs in uint16 millimetres.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from datasets.common.examples import focal_example
from datasets.common.file_readers import open_h5, read_h5_item, read_mat_arrays, read_rgb_u8, read_u16_png
from datasets.common.manual_dir import (
    CorruptFileError,
    manual_dir_error,
    manual_dir_from_download_manager,
    raise_if_missing,
)
from datasets.common.rendered_stacks import UnusableFrameError, focus_positions_spanning_depth, rendered_stack_u8
from dualfocus_jax import data_features as F
from dualfocus_jax.rendering import NYUV2_CAMERA

LABELED_FILE = "nyu_depth_v2_labeled.mat"
SPLITS_FILE = "splits.mat"
BTS_LISTS = {"train": "nyudepthv2_train_files_with_gt.txt", "test": "nyudepthv2_test_files_with_gt.txt"}
BTS_ROOTS = {"train": "sync", "test": os.path.join("official_splits", "test")}
RAW_SIZE = (480, 640)
CROP_SIZE = (384, 512)
VALID_DEPTH_RANGE_M = (1e-3, 10.0)


@dataclasses.dataclass
class NYUv2FocalConfig(tfds.core.BuilderConfig):
    num_slices: int = 5


def centre_crop(array: np.ndarray, size: tuple[int, int] = CROP_SIZE) -> np.ndarray:
    """The central size[0] x size[1] pixels of an (H, W, ...) array."""
    height, width = array.shape[:2]
    if height < size[0] or width < size[1]:
        raise ValueError(f"Cannot centre-crop a {height}x{width} image to {size[0]}x{size[1]}.")
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    return array[top:top + size[0], left:left + size[1]]


def nyuv2_example(image_HWC: np.ndarray, depth_m_HW: np.ndarray, num_slices: int, example_id: str) -> dict:
    """Crops, masks, chooses focus positions, renders; the example of one RGB-D frame (640 x 480)."""
    if image_HWC.shape[:2] != depth_m_HW.shape or image_HWC.shape[:2] != RAW_SIZE:
        raise CorruptFileError(
            f"{example_id}: expected a {RAW_SIZE[1]}x{RAW_SIZE[0]} image and depth, got {image_HWC.shape} and "
            f"{depth_m_HW.shape}.")
    image = centre_crop(image_HWC)
    depth = centre_crop(np.asarray(depth_m_HW, np.float32))
    valid = (depth > VALID_DEPTH_RANGE_M[0]) & (depth < VALID_DEPTH_RANGE_M[1])
    focus = focus_positions_spanning_depth(depth, valid, num_slices, example_id)
    # The protocol renders from the raw depth: invalid (0) pixels get the reference's huge blur.
    stack = rendered_stack_u8(image, depth, focus, NYUV2_CAMERA, mode="gaussian", kernel_size=7)
    return focal_example(stack, focus, depth, valid, example_id, aif_HWC=image)


class Builder(tfds.core.GeneratorBasedBuilder):
    """NYU Depth v2 RGB-D frames with rendered focal stacks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = [
        NYUv2FocalConfig(name="5_slices", num_slices=5, description="5 focus positions per image."),
        NYUv2FocalConfig(name="10_slices", num_slices=10, description="10 focus positions per image."),
    ]
    DEFAULT_CONFIG_NAME = "5_slices"
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Either layout works:
    (a) `{LABELED_FILE}` (2.8 GB, cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html, "Labeled dataset") and
        `{SPLITS_FILE}` (the official train/test indices, same page or
        horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat);
    (b) the BTS "sync" release (github.com/cleinc/bts, "Prepare NYU Depth V2"): the folder `sync/` with
        `{BTS_LISTS['train']}`, and `official_splits/test/` with `{BTS_LISTS['test']}` (the lists ship in
        BTS's `train_test_inputs/`), all directly in the manual folder.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=F.focal_stack_features(self.builder_config.num_slices, with_aif=True),
            homepage="https://cs.nyu.edu/~silberman/datasets/nyu_depth_v2.html",
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_METRES}),
        )

    def check_manual_dir(self, manual_dir) -> dict:
        """Returns {"layout": "labeled"|"bts", ...}; raises ManualDirError naming missing files."""
        manual_dir = os.fspath(manual_dir)
        if any(os.path.exists(os.path.join(manual_dir, n)) for n in (LABELED_FILE, SPLITS_FILE)):
            return _check_labeled(manual_dir, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        if any(os.path.exists(os.path.join(manual_dir, n)) for n in [*BTS_LISTS.values(), "sync", "official_splits"]):
            return _check_bts(manual_dir, self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        raise manual_dir_error(
            f"Neither NYUv2 layout found in {manual_dir!r}: expected {LABELED_FILE} + {SPLITS_FILE}, or "
            f"{BTS_LISTS['train']} + sync/ and {BTS_LISTS['test']} + official_splits/test/.",
            self.MANUAL_DOWNLOAD_INSTRUCTIONS)

    def _split_generators(self, dl_manager):
        manual_dir = manual_dir_from_download_manager(dl_manager, "nyuv2_focal", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        source = self.check_manual_dir(manual_dir)
        return {split: self._generate_examples(source, split) for split in ("train", "test")}

    def _generate_examples(self, source: dict, split: str):
        num_slices = self.builder_config.num_slices
        for example_id, image, depth in _frames(source, split):
            try:
                example = nyuv2_example(image, depth, num_slices, example_id)
            except UnusableFrameError as error:
                logging.warning("Skipping %s: %s", example_id, error)
                continue
            yield example_id, example


def _frames(source: dict, split: str):
    """Yields (id, image (480, 640, 3) uint8, depth (480, 640) float32 metres)."""
    if source["layout"] == "labeled":
        with open_h5(source["labeled_path"]) as handle:
            for index in source["indices"][split]:
                # MATLAB stores (3, 640, 480) per image in HDF5: reverse the axes back to (480, 640, 3).
                image = read_h5_item(handle, "images", index - 1).transpose(2, 1, 0)
                depth = read_h5_item(handle, "depths", index - 1).T.astype(np.float32)
                yield f"{split}_{index:04d}", np.ascontiguousarray(image, dtype=np.uint8), depth
    else:
        for rgb_path, depth_path, example_id in source["pairs"][split]:
            yield example_id, read_rgb_u8(rgb_path), read_u16_png(depth_path).astype(np.float32) / 1000.0


def _check_labeled(manual_dir: str, instructions: str) -> dict:
    missing = [n for n in (LABELED_FILE, SPLITS_FILE) if not os.path.isfile(os.path.join(manual_dir, n))]
    raise_if_missing(missing, manual_dir, "nyuv2_focal", instructions)
    labeled_path = os.path.join(manual_dir, LABELED_FILE)
    splits = read_mat_arrays(os.path.join(manual_dir, SPLITS_FILE), ("trainNdxs", "testNdxs"))
    indices = {"train": splits["trainNdxs"], "test": splits["testNdxs"]}
    with open_h5(labeled_path) as handle:
        for key in ("images", "depths"):
            if key not in handle:
                raise CorruptFileError(f"{labeled_path!r} has no {key!r}; is it the labeled NYUv2 file?")
        count = handle["images"].shape[0]
        if handle["depths"].shape[0] != count:
            raise CorruptFileError(f"{labeled_path!r}: {count} images but {handle['depths'].shape[0]} depth maps.")
    checked = {}
    for split, values in indices.items():
        values = np.asarray(values).astype(np.int64).ravel()
        if values.size and (values.min() < 1 or values.max() > count):
            raise CorruptFileError(
                f"{SPLITS_FILE}: {split} indices must be 1-based and at most {count}, got "
                f"{values.min()}..{values.max()}.")
        checked[split] = [int(v) for v in values]
    return {"layout": "labeled", "labeled_path": labeled_path, "indices": checked}


def _check_bts(manual_dir: str, instructions: str) -> dict:
    missing = [name for name in BTS_LISTS.values() if not os.path.isfile(os.path.join(manual_dir, name))]
    missing += [root + os.sep for root in BTS_ROOTS.values() if not os.path.isdir(os.path.join(manual_dir, root))]
    raise_if_missing(missing, manual_dir, "nyuv2_focal", instructions)
    pairs = {}
    for split, list_name in BTS_LISTS.items():
        root = os.path.join(manual_dir, BTS_ROOTS[split])
        pairs[split] = []
        with open(os.path.join(manual_dir, list_name), encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                fields = line.split()
                if not fields:
                    continue
                if len(fields) < 2:
                    raise CorruptFileError(
                        f"{list_name} line {line_number}: expected '<rgb> <depth> <focal>', got {line!r}.")
                rgb, depth = fields[0].lstrip("/"), fields[1].lstrip("/")
                if depth == "None":  # BTS lists mark frames without ground truth this way
                    continue
                for relative in (rgb, depth):
                    if not os.path.isfile(os.path.join(root, relative)):
                        missing.append(os.path.join(BTS_ROOTS[split], relative))
                pairs[split].append((os.path.join(root, rgb), os.path.join(root, depth), os.path.splitext(rgb)[0]))
    raise_if_missing(missing, manual_dir, "nyuv2_focal", instructions)
    return {"layout": "bts", "pairs": pairs}
