"""Focal-stack input: S images of one scene, each focused at a known focus position.

A `FocalStack` always holds its slices sorted by focus position (ascending), so every consumer (the
classical baseline, the network, the metrics) can rely on f_1 < ... < f_S. Focus positions may be in any
unit (metres, diopters, disparity); depth predicted from a stack comes out in the same unit.

Every check here runs before any heavy compute, and each error says what is wrong and how to fix it.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
FOCUS_FILE_NAME = "focus_distances.txt"

# A decimal number such as 0.5, 1.33 or 2e-3 inside a file name. Integers alone (00.jpg, image_3.png) are
# frame indices far more often than focus distances, so they never count as focus positions.
_DECIMAL_IN_NAME = re.compile(r"[-+]?\d*\.\d+(?:[eE][-+]?\d+)?")


class FocalStackError(ValueError):
    """A focal stack that cannot be used as given; the message names the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class FocalStack:
    """A validated focal stack.

    Attributes:
      images: (S, H, W, C) float32 in [0, 1], sorted by focus position.
      focus_positions: (S,) float64, strictly increasing, in `unit`.
      unit: free text naming the unit of the focus positions ("m", "diopter", "disparity", ...).
      source_files: the file each slice came from (empty for stacks built from arrays), in sorted order.
    """

    images: np.ndarray
    focus_positions: np.ndarray
    unit: str = "unknown"
    source_files: tuple[str, ...] = ()

    @property
    def num_slices(self) -> int:
        return int(self.images.shape[0])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray | Sequence[np.ndarray],
        focus_positions: Sequence[float] | np.ndarray,
        unit: str = "unknown",
        source_files: Sequence[str] = (),
    ) -> "FocalStack":
        """Validates, converts to float32 in [0, 1] and sorts slices by focus position.

        Args:
          images: (S, H, W, C) or (S, H, W) array, or a sequence of (H, W[, C]) arrays; uint8, uint16 or
            float in [0, 1]. Grey slices become 3-channel.
          focus_positions: S finite, distinct numbers in any unit.
        """
        slices = [np.asarray(s) for s in images]
        if len(slices) < 2:
            raise FocalStackError(
                f"A focal stack needs at least 2 slices, got {len(slices)}. Provide images taken at two or "
                "more focus settings.")
        _check_same_geometry(slices, [f"slice {i}" for i in range(len(slices))])
        slices = [_as_float_image(s, f"slice {i}") for i, s in enumerate(slices)]
        focus = _validated_focus_positions(focus_positions, len(slices))
        order = np.argsort(focus, kind="stable")
        files = tuple(source_files)
        if files and len(files) != len(slices):
            raise FocalStackError(f"{len(files)} source file names given for {len(slices)} slices.")
        stacked = np.stack([slices[i] for i in order]).astype(np.float32)
        return cls(images=stacked, focus_positions=focus[order], unit=unit,
                   source_files=tuple(files[i] for i in order) if files else ())


def load_focal_stack(
    folder: str | os.PathLike,
    focus_positions: Sequence[float] | str | os.PathLike | None = None,
    *,
    max_size: int | None = None,
    unit: str = "unknown",
) -> FocalStack:
    """Loads a folder of images as a focal stack.

    Focus positions come from, in this order of precedence:
      1. `focus_positions`: a sequence of numbers, or the path of a text file with one number per line;
      2. a `focus_distances.txt` in the folder (one number per line, in natural file-name order);
      3. a decimal number in each file name (the last one, e.g. `image_3_0.80.jpg` -> 0.80).

    Args:
      folder: directory holding the slices (jpg, png, tif, bmp, webp).
      max_size: if given, each slice is downscaled (aspect kept) so its longer side is at most this many
        pixels. Use it for phone photos: a 12-megapixel 5-slice stack is ~0.7 GB as float32.
      unit: name of the unit of the focus positions, carried along for reports.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FocalStackError(f"Focal-stack folder not found: {folder!r}. Pass a directory of images.")
    files = sorted(
        (f for f in os.listdir(folder) if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith(".")),
        key=_natural_sort_key)
    if not files:
        raise FocalStackError(
            f"No images in {folder!r} (looked for {', '.join(IMAGE_EXTENSIONS)}). Put the slices of the focal "
            "stack there, one image per focus setting.")
    if len(files) < 2:
        raise FocalStackError(
            f"Only one image in {folder!r} ({files[0]}); a focal stack needs at least 2 slices taken at "
            "different focus settings.")
    if max_size is not None and (not isinstance(max_size, (int, np.integer)) or max_size < 8):
        raise FocalStackError(f"max_size must be an integer >= 8 pixels, got {max_size!r}.")

    focus = _focus_positions_for_folder(folder, files, focus_positions)
    paths = [os.path.join(folder, f) for f in files]
    _check_files_not_empty(paths)
    images = [_read_image(p, max_size) for p in paths]
    _check_same_geometry(images, files)
    return FocalStack.from_arrays(images, focus, unit=unit, source_files=paths)


def _focus_positions_for_folder(folder, files, focus_positions) -> np.ndarray:
    if focus_positions is not None:
        if isinstance(focus_positions, (str, os.PathLike)):
            values = _read_focus_file(os.fspath(focus_positions))
            origin = f"focus file {os.fspath(focus_positions)!r}"
        else:
            values = list(focus_positions)
            origin = "the focus positions given"
    elif os.path.isfile(os.path.join(folder, FOCUS_FILE_NAME)):
        values = _read_focus_file(os.path.join(folder, FOCUS_FILE_NAME))
        origin = f"{FOCUS_FILE_NAME} in {folder!r}"
    else:
        values = [_focus_position_from_name(f, folder) for f in files]
        origin = "the file names"
    if len(values) != len(files):
        raise FocalStackError(
            f"{len(values)} focus positions from {origin}, but {len(files)} images in {folder!r} "
            f"({', '.join(files)}). Give exactly one focus position per image, in natural file-name order.")
    return _validated_focus_positions(values, len(files), origin)


def _read_focus_file(path: str) -> list[float]:
    if not os.path.isfile(path):
        raise FocalStackError(f"Focus file not found: {path!r}.")
    values = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            try:
                values.append(float(text))
            except ValueError:
                raise FocalStackError(
                    f"Line {line_number} of {path!r} is not a number: {line.strip()!r}. The file must hold "
                    "one focus position per line.") from None
    if not values:
        raise FocalStackError(f"Focus file {path!r} holds no numbers; write one focus position per line.")
    return values


def _focus_position_from_name(file_name: str, folder: str) -> float:
    matches = _DECIMAL_IN_NAME.findall(os.path.splitext(file_name)[0])
    if not matches:
        raise FocalStackError(
            f"No focus position for {file_name!r} in {folder!r}: there is no {FOCUS_FILE_NAME} and the file "
            "name holds no decimal number. Pass the focus positions explicitly (focus_positions=... or "
            f"--focus_distances), write a {FOCUS_FILE_NAME} with one value per image in file-name order, or "
            "name the files like image_1_0.35.jpg.")
    return float(matches[-1])


def _validated_focus_positions(values, num_slices: int, origin: str = "the focus positions") -> np.ndarray:
    try:
        focus = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise FocalStackError(f"{origin} must be numbers, got {values!r}.") from None
    if focus.ndim != 1:
        raise FocalStackError(f"{origin} must be a flat list of numbers, got shape {focus.shape}.")
    if focus.shape[0] != num_slices:
        raise FocalStackError(
            f"{focus.shape[0]} focus positions for {num_slices} slices ({origin}); give exactly one per slice.")
    if not np.all(np.isfinite(focus)):
        bad = [i for i, v in enumerate(focus) if not np.isfinite(v)]
        raise FocalStackError(
            f"Non-finite focus positions at slices {bad} ({origin}: {focus.tolist()}). A slice focused at "
            "infinity has no finite position: drop it or give it a finite value (e.g. 0 diopters).")
    unique, counts = np.unique(focus, return_counts=True)
    if np.any(counts > 1):
        raise FocalStackError(
            f"Duplicate focus positions {unique[counts > 1].tolist()} ({origin}). Each slice must be focused "
            "at a different position; drop the repeated slices.")
    return focus


def _check_files_not_empty(paths: Sequence[str]) -> None:
    empty = [p for p in paths if os.path.getsize(p) == 0]
    if empty:
        raise FocalStackError(f"Empty image files (0 bytes): {empty}. Re-copy or remove them.")


def _read_image(path: str, max_size: int | None) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if max_size is not None and image.format == "JPEG":
                # Decode JPEGs at a reduced DCT scale first: a 12 MP slice then loads in a fraction of the time.
                image.draft("RGB", _scaled_size(image.size, max_size))
            image = ImageOps.exif_transpose(image)
            image.load()
            if max_size is not None and max(image.size) > max_size:
                image = image.resize(_scaled_size(image.size, max_size), Image.Resampling.LANCZOS)
            return np.asarray(image)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise FocalStackError(f"Cannot read image {path!r} ({error}). Is it a complete, valid image file?") \
            from None


def _scaled_size(size: tuple[int, int], max_size: int) -> tuple[int, int]:
    width, height = size
    scale = min(1.0, max_size / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _as_float_image(image, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise FocalStackError(
            f"{name} has shape {array.shape}; expected (H, W), (H, W, 1), (H, W, 3) or (H, W, 4).")
    if array.shape[0] < 2 or array.shape[1] < 2:
        raise FocalStackError(f"{name} is too small ({array.shape[0]}x{array.shape[1]} pixels).")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif array.dtype == np.uint16:
        array = array.astype(np.float32) / 65535.0
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32)
        if not np.all(np.isfinite(array)):
            raise FocalStackError(f"{name} contains NaN or infinite pixel values.")
        if array.min() < 0.0 or array.max() > 1.0:
            raise FocalStackError(
                f"{name} is floating point with values in [{array.min():.3g}, {array.max():.3g}]; float "
                "images must be in [0, 1] (divide 8-bit values by 255).")
    else:
        raise FocalStackError(f"{name} has unsupported pixel type {array.dtype}; use uint8, uint16 or float.")
    if array.shape[-1] == 4:
        array = array[..., :3]  # Alpha carries no focus information.
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def _check_same_geometry(images: Sequence[np.ndarray], names: Sequence[str]) -> None:
    """All slices must share height, width and channel count (checked on the raw arrays)."""
    shapes = [np.shape(im) for im in images]
    sizes = {s[:2] for s in shapes}
    if len(sizes) > 1:
        listing = ", ".join(f"{n}: {s[1]}x{s[0]}" for n, s in zip(names, shapes))
        raise FocalStackError(
            f"Slices have different sizes ({listing}). All images of a focal stack must have the same "
            "width and height; crop or resize them consistently.")
    channels = {s[2] if len(s) == 3 else 1 for s in shapes}
    if len(channels) > 1:
        listing = ", ".join(f"{n}: {s[2] if len(s) == 3 else 1}" for n, s in zip(names, shapes))
        raise FocalStackError(
            f"Slices have different channel counts ({listing}). Save all slices in the same colour mode "
            "(e.g. all RGB).")


def _natural_sort_key(name: str):
    """image_2 before image_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
