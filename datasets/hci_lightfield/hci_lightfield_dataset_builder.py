"""hci_lightfield: the HCI 4D light field benchmark, refocused into 10-slice stacks by shift-and-add.

Each scene folder holds 9 x 9 views `input_Cam000.png ... input_Cam080.png` (row-major, 512 x 512) and,
except in the `test` category, the centre view's disparity `gt_disp_lowres.pfm` (pixels per view step).
Stacks are refocused at disparities linspace(-2.5, 2.5, 10) (`light_field_refocus.refocused_stack`); the
ground truth is that disparity, so depth is predicted in disparity pixels. The view-ordering signs are
measured once on a scene with ground truth (`view_ordering_signs`) and used for every scene.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging

from datasets.common.examples import as_uint8_image, focal_example
from datasets.common.file_readers import read_pfm, read_rgb_u8
from datasets.common.manual_dir import (
    CorruptFileError,
    manual_dir_error,
    manual_dir_from_download_manager,
    raise_if_missing,
)
from datasets.hci_lightfield.light_field_refocus import refocused_stack, view_ordering_signs
from dualfocus_jax import data_features as F

GRID = 9
NUM_SLICES = 10
FOCUS_DISPARITIES_PX = np.linspace(-2.5, 2.5, NUM_SLICES)
CATEGORIES = ("training", "additional", "stratified", "test")
GT_FILE = "gt_disp_lowres.pfm"
# Used only when no scene has ground truth to measure the convention on: view (u, v) sees a centre pixel
# of disparity d at (y + d (u - 4), x + d (v - 4)), the convention of AiFDepthNet's HCI focal stacks.
DEFAULT_SIGNS = (1, 1)


def view_name(index: int) -> str:
    return f"input_Cam{index:03d}.png"


def read_views(scene_dir: str) -> np.ndarray:
    """(9, 9, H, W, 3) uint8, view k at (k // 9, k % 9)."""
    views = [read_rgb_u8(os.path.join(scene_dir, view_name(k))) for k in range(GRID * GRID)]
    if len({v.shape for v in views}) != 1:
        raise CorruptFileError(f"The views in {scene_dir!r} differ in size; re-copy the scene.")
    return np.stack(views).reshape(GRID, GRID, *views[0].shape)


def read_ground_truth(scene_dir: str, views_shape) -> np.ndarray | None:
    path = os.path.join(scene_dir, GT_FILE)
    if not os.path.isfile(path):
        return None
    disparity = read_pfm(path)
    if disparity.shape != tuple(views_shape[2:4]):
        raise CorruptFileError(f"{path!r} is {disparity.shape}, the views are {tuple(views_shape[2:4])}.")
    return disparity


class Builder(tfds.core.GeneratorBasedBuilder):
    """HCI light fields refocused into focal stacks, ground truth in disparity pixels."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the 4D Light Field Benchmark (Honauer et al., ACCV 2016; lightfield-analysis.uni-konstanz.de,
    "full data") and unpack it into the manual folder as `<category>/<scene>/`, with category one of
    {', '.join(CATEGORIES)}. Each scene needs {view_name(0)} ... {view_name(GRID * GRID - 1)}; scenes outside
    `test` also need {GT_FILE}.
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=F.focal_stack_features(NUM_SLICES, with_aif=True),
            homepage="https://lightfield-analysis.uni-konstanz.de/",
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_DISPARITY_PX}),
        )

    def check_manual_dir(self, manual_dir) -> dict[str, list[str]]:
        """{category: [scene folder]}; raises ManualDirError naming every missing view or GT file."""
        manual_dir = os.fspath(manual_dir)
        scenes, missing = {}, []
        for category in CATEGORIES:
            category_dir = os.path.join(manual_dir, category)
            if not os.path.isdir(category_dir):
                continue
            for scene in sorted(os.listdir(category_dir)):
                scene_dir = os.path.join(category_dir, scene)
                if not os.path.isdir(scene_dir):
                    continue
                required = [view_name(k) for k in range(GRID * GRID)] + ([GT_FILE] if category != "test" else [])
                missing += [os.path.join(category, scene, n) for n in required
                            if not os.path.isfile(os.path.join(scene_dir, n))]
                scenes.setdefault(category, []).append(scene_dir)
        if not scenes:
            raise manual_dir_error(f"No HCI category folder ({', '.join(CATEGORIES)}) with scenes in {manual_dir!r}.",
                                   self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        raise_if_missing(missing, manual_dir, "hci_lightfield", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        return scenes

    def _split_generators(self, dl_manager):
        manual_dir = manual_dir_from_download_manager(dl_manager, "hci_lightfield", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        scenes = self.check_manual_dir(manual_dir)
        signs = measured_view_signs(scenes)
        return {category: self._generate_examples(folders, signs) for category, folders in scenes.items()}

    def _generate_examples(self, scene_dirs, signs):
        for scene_dir in scene_dirs:
            example_id = "/".join(os.path.normpath(scene_dir).split(os.sep)[-2:])
            yield example_id, hci_example(scene_dir, signs, example_id)


def measured_view_signs(scenes: dict[str, list[str]]) -> tuple[int, int]:
    """The view-ordering signs measured on the first scene with ground truth (DEFAULT_SIGNS if none)."""
    for folders in scenes.values():
        for scene_dir in folders:
            if os.path.isfile(os.path.join(scene_dir, GT_FILE)):
                views = read_views(scene_dir)
                signs = view_ordering_signs(views.astype(np.float32) / 255.0, read_ground_truth(scene_dir, views.shape))
                logging.info("HCI view-ordering signs measured on %s: %s", scene_dir, signs)
                return signs
    logging.warning("No HCI scene with %s; refocusing with the default view-ordering signs %s.", GT_FILE, DEFAULT_SIGNS)
    return DEFAULT_SIGNS


def hci_example(scene_dir: str, signs: tuple[int, int], example_id: str) -> dict:
    views = read_views(scene_dir)
    disparity = read_ground_truth(scene_dir, views.shape)
    stack = refocused_stack(views.astype(np.float32) / 255.0, FOCUS_DISPARITIES_PX, signs)
    valid = None if disparity is None else np.isfinite(disparity)
    return focal_example(as_uint8_image(stack), FOCUS_DISPARITIES_PX, disparity, valid, example_id,
                         aif_HWC=views[GRID // 2, GRID // 2])
