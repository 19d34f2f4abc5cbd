"""mobile_depth: the aligned phone focal stacks of Suwajanakorn et al. (CVPR 2015), no ground truth.

Each scene is a folder of aligned frames `a*.jpg` somewhere under `Aligned/` (the release groups them by
paper figure, e.g. `Aligned/Figure5/keyboard/`), with its focus calibration in
`calibration/<scene>/calibrated.txt`: one line per frame, in natural file-name order, whose first number
is the frame's focal depth in inches (a second number, the aperture, is ignored). Stacks keep their
native size and number of frames (both vary between scenes). For qualitative evaluation only: `depth`
is 0 and `valid` all False.
"""

from __future__ import annotations

import os
import re

import numpy as np
import tensorflow_datasets as tfds

from datasets.common.examples import focal_example
from datasets.common.file_readers import read_rgb_u8
from datasets.common.manual_dir import (
    CorruptFileError,
    manual_dir_error,
    manual_dir_from_download_manager,
    raise_if_missing,
)
from dualfocus_jax import data_features as F

INCH_M = 0.0254
_FRAME_NAME = re.compile(r"^a.*\.jpe?g$", re.IGNORECASE)


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_focal_depths_m(path: str) -> np.ndarray:
    """(N,) float64 metres: the first number of each non-blank, non-comment line, inches x 0.0254."""
    values = []
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.readlines()
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"Cannot read calibration {path!r}: {error}.") from None
    for line_number, line in enumerate(lines, start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            values.append(float(text.replace(",", " ").split()[0]))
        except ValueError:
            raise CorruptFileError(
                f"Calibration {path!r} line {line_number} does not start with a number: {line.strip()!r}. Expected "
                "'<focal depth in inches> <aperture>' per frame.") from None
    if not values:
        raise CorruptFileError(f"Calibration {path!r} holds no focal depths.")
    return np.asarray(values, np.float64) * INCH_M


class Builder(tfds.core.GeneratorBasedBuilder):
    """Real phone focal stacks, focus positions in metres, no ground truth."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = """
    Download the data of "Depth from Focus with Your Mobile Phone" (Suwajanakorn, Hernandez and Seitz, CVPR
    2015; linked from the first author's project page for the paper) and unpack it into the manual folder so
    that it holds
    `Aligned/<...>/<scene>/a00.jpg ...` (the aligned frames) and `calibration/<scene>/calibrated.txt` (one
    line per frame: focal depth in inches, then aperture).
    """

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=F.focal_stack_features(None, with_aif=False),
            metadata=tfds.core.MetadataDict({F.FOCUS_UNIT_KEY: F.FOCUS_UNIT_METRES}),
        )

    def check_manual_dir(self, manual_dir) -> list[tuple[str, list[str], str]]:
        """[(scene, frame paths, calibration path)]; raises ManualDirError naming what is missing."""
        manual_dir = os.fspath(manual_dir)
        aligned = os.path.join(manual_dir, "Aligned")
        if not os.path.isdir(aligned):
            raise manual_dir_error(f"No Aligned/ folder in {manual_dir!r}.", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        scenes, missing = [], []
        for folder, _, files in sorted(os.walk(aligned)):
            frames = sorted((f for f in files if _FRAME_NAME.match(f)), key=_natural_key)
            if not frames:
                continue
            scene = os.path.basename(folder)
            calibration = os.path.join(manual_dir, "calibration", scene, "calibrated.txt")
            if not os.path.isfile(calibration):
                missing.append(os.path.join("calibration", scene, "calibrated.txt"))
            scenes.append((scene, [os.path.join(folder, f) for f in frames], calibration))
        if not scenes:
            missing.append(os.path.join("Aligned", "<...>", "<scene>", "a*.jpg"))
        names = [scene for scene, _, _ in scenes]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise CorruptFileError(
                f"Scene names {duplicated} occur in more than one Aligned/ sub-folder of {manual_dir!r}; their "
                "calibrations could not be told apart. Keep one copy of each scene.")
        raise_if_missing(missing, manual_dir, "mobile_depth", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        return scenes

    def _split_generators(self, dl_manager):
        manual_dir = manual_dir_from_download_manager(dl_manager, "mobile_depth", self.MANUAL_DOWNLOAD_INSTRUCTIONS)
        return {"test": self._generate_examples(self.check_manual_dir(manual_dir))}

    def _generate_examples(self, scenes):
        for scene, frame_paths, calibration in scenes:
            focus_m = read_focal_depths_m(calibration)
            if focus_m.size != len(frame_paths):
                raise CorruptFileError(
                    f"{calibration!r} lists {focus_m.size} focal depths for {len(frame_paths)} frames of scene "
                    f"{scene!r}; it needs exactly one line per frame.")
            frames = [read_rgb_u8(p) for p in frame_paths]
            if len({f.shape for f in frames}) != 1:
                raise CorruptFileError(f"Scene {scene!r}: its aligned frames differ in size; re-copy them.")
            yield scene, focal_example(np.stack(frames), focus_m, None, None, scene)
