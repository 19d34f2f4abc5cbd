"""arkitscenes_focal: ARKitScenes "upsampling" validation frames with rendered 5-slice focal stacks.

The zero-shot test set of HybridDepth and DualFocus: iPad RGB (`wide/*.png`) with laser-scanner depth
rendered at the RGB resolution (`highres_depth/*.png`, uint16 millimetres, 0 = no measurement), resized
to 480 x 640 (RGB by area averaging, depth by nearest neighbour so no depth is invented at edges), and a
focal stack rendered with the ARKitScenes thin lens (F = 2.9 mm, f/0.5, 3.1 mm sensor) at 5 focus
positions linspace(min, max) of the valid depth, Gaussian PSF (7 x 7).
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from PIL import Image

from datasets.common.examples import focal_example
from datasets.common.file_readers import read_rgb_u8, read_u16_png
from datasets.common.manual_dir import (
    CorruptFileError,
    manual_dir_error,
    manual_dir_from_download_manager,
    raise_if_missing,
)
from datasets.common.rendered_stacks import UnusableFrameError, focus_positions_spanning_depth, rendered_stack_u8
from dualfocus_jax import data_features as F
from dualfocus_jax.rendering import arkitscenes_camera

NUM_SLICES = 5
SPLIT_FOLDER = "Validation"
# Output size (H, W) of landscape frames; portrait frames become (W, H).
OUTPUT_SIZE = (480, 640)
# HybridDepth builds its ARKitScenes camera with img_size=560 whatever the image size, i.e. 3.1 mm / 560
# pixels; kept so the stacks (and so the zero-shot numbers) match the published protocol.
CAMERA_WIDTH_PX = 560


def nearest_resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, ...) -> size, each output pixel taking the input pixel under its centre."""
    height, width = array.shape[:2]
    rows = np.minimum(((np.arange(size[0]) + 0.5) * height / size[0]).astype(int), height - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * width / size[1]).astype(int), width - 1)
    return array[rows][:, cols]


def area_resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> size by box filtering (area averaging when shrinking)."""
    return np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.Resampling.BOX))


def arkitscenes_example(image_HWC: np.ndarray, depth_mm_HW: np.ndarray, example_id: str) -> dict:
    """Resizes, masks, chooses focus positions and renders one frame."""
    landscape = image_HWC.shape[1] >= image_HWC.shape[0]
    size = OUTPUT_SIZE if landscape else OUTPUT_SIZE[::-1]
    image = area_resize_rgb(image_HWC, size)
    depth = nearest_resize(depth_mm_HW, size).astype(np.float32) / 1000.0
    valid = depth > 0
    focus = focus_positions_spanning_depth(depth, valid, NUM_SLICES, example_id)
    stack = rendered_stack_u8(image, depth, focus, arkitscenes_camera(CAMERA_WIDTH_PX), mode="gaussian", kernel_size=7)
    return focal_example(stack, focus, depth, valid, example_id, aif_HWC=image)


class Builder(tfds.core.GeneratorBasedBuilder):
    """ARKitScenes upsampling validation frames with rendered focal stacks."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = f"""
    Download the ARKitScenes "upsampling" subset, validation split (github.com/apple/ARKitScenes, DATA.md:
    `python download_data.py upsampling --split Validation --download_dir <manual_dir>`), so the manual
    folder holds `upsampling/{SPLIT_FOLDER}/<video_id>/wide/<video_id>_<timestamp>.png` and
    `upsampling/{SPLIT_FOLDER}/<video_id>/highres_depth/<same name>.png` (`{SPLIT_FOLDER}/` directly in the
    manual folder works too).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=F.focal_stack_features(NUM_SLICES, with_aif=True),
            homepage="https://github.com/apple/ARKitScenes",
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_METRES}),
        )

    def check_manual_dir(self, manual_dir) -> list[tuple[str, str, str]]:
        """[(id, rgb path, depth path)] of every frame; raises ManualDirError naming missing files."""
        manual_dir = os.fspath(manual_dir)
        candidates = [os.path.join(manual_dir, "upsampling", SPLIT_FOLDER), os.path.join(manual_dir, SPLIT_FOLDER)]
        split_dir = next((c for c in candidates if os.path.isdir(c)), None)
        if split_dir is None:
            raise manual_dir_error(
                f"No ARKitScenes folder upsampling/{SPLIT_FOLDER}/ (or {SPLIT_FOLDER}/) in {manual_dir!r}.",
                self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        frames, missing = [], []
        for video_id in sorted(os.listdir(split_dir)):
            video_dir = os.path.join(split_dir, video_id)
            if not os.path.isdir(video_dir):
                continue
            relative = os.path.relpath(video_dir, manual_dir)
            wide_dir, depth_dir = os.path.join(video_dir, "wide"), os.path.join(video_dir, "highres_depth")
            if not os.path.isdir(wide_dir):
                missing.append(os.path.join(relative, "wide") + os.sep)
                continue
            for name in sorted(f for f in os.listdir(wide_dir) if f.lower().endswith(".png")):
                depth_path = os.path.join(depth_dir, name)
                if not os.path.isfile(depth_path):
                    missing.append(os.path.join(relative, "highres_depth", name))
                frames.append((f"{video_id}/{os.path.splitext(name)[0]}", os.path.join(wide_dir, name), depth_path))
        if not frames and not missing:
            missing.append(os.path.join(os.path.relpath(split_dir, manual_dir), "<video_id>", "wide", "*.png"))
        raise_if_missing(missing, manual_dir, "arkitscenes_focal", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        return frames

    def _split_generators(self, dl_manager):
        manual_dir = manual_dir_from_download_manager(dl_manager, "arkitscenes_focal",
                                                      self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        return {"test": self._generate_examples(self.check_manual_dir(manual_dir))}

    def _generate_examples(self, frames):
        for example_id, rgb_path, depth_path in frames:
            image, depth_mm = read_rgb_u8(rgb_path), read_u16_png(depth_path)
            if image.shape[:2] != depth_mm.shape:
                raise CorruptFileError(
                    f"{rgb_path!r} is {image.shape[1]}x{image.shape[0]} but its depth {depth_path!r} is "
                    f"{depth_mm.shape[1]}x{depth_mm.shape[0]}; one of them is damaged or from another frame.")
            try:
                example = arkitscenes_example(image, depth_mm, example_id)
            except UnusableFrameError as error:
                logging.warning("Skipping %s: %s", example_id, error)
                continue
            yield example_id, example
