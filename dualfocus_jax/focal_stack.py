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
import struct
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
FOCUS_FILE_NAME = "focus_distances.txt"
FOCUS_ORDERS = ("near_to_far", "far_to_near")

# Unit suffixes a focus value may carry ("0.5 m", "50cm", "2 D"): suffix -> (kind of focus value, label).
UNIT_SUFFIXES = {
    "m": ("distance", "m"), "cm": ("distance", "cm"), "mm": ("distance", "mm"),
    "d": ("diopter", "D"), "dpt": ("diopter", "D"), "diopter": ("diopter", "D"), "diopters": ("diopter", "D"),
    "1/m": ("diopter", "D"), "px": ("disparity", "px"),
}
_VALUE_WITH_UNIT = re.compile(
    r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?inf|nan)\s*([A-Za-z/]*[A-Za-z])?\s*$", re.IGNORECASE)
# EXIF: the Exif sub-IFD and its SubjectDistance tag (metres, a rational; 0 = unknown, 0xFFFFFFFF = infinity).
_EXIF_IFD, _SUBJECT_DISTANCE = 0x8769, 0x9206
# XMP fields holding a focus distance in metres (Adobe's aux: namespace, EXIF-in-XMP).
_XMP_DISTANCE = re.compile(rb"(?:aux:ApproximateFocusDistance|exif:SubjectDistance|exifEX:SubjectDistance)"
                           rb"\s*(?:=\s*\"|>)\s*([0-9./]+)")

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
      original_size_hw: (height, width) of the files before any downscaling (None for arrays).
      focus_origin: where the focus positions came from (e.g. "focus_distances.txt in 'photos'", "EXIF").
      declared_unit: (kind, label) when the source names its unit: a suffix such as "50 cm" or "2 D"
        (("distance", "cm"), ("diopter", "D")), EXIF SubjectDistance (("distance", "m")) or --focus_order
        (("order", "slice")); None when the values are bare numbers.
    """

    images: np.ndarray
    focus_positions: np.ndarray
    unit: str = "unknown"
    source_files: tuple[str, ...] = ()
    original_size_hw: tuple[int, int] | None = None
    focus_origin: str = ""
    declared_unit: tuple[str, str] | None = None

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
    ) -> FocalStack:
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
    focus_order: str | None = None,
    focus_unit: str | None = None,
) -> FocalStack:
    """Loads a folder of images as a focal stack.

    Focus positions come from, in this order of precedence:
      1. `focus_positions`: a sequence of numbers, or the path of a text file with one number per line;
      2. a `focus_distances.txt` in the folder (one number per line, in natural file-name order);
      3. a decimal number in each file name (the last one, e.g. `image_3_0.80.jpg` -> 0.80);
      4. the focus distance the camera wrote into each photo's metadata (EXIF SubjectDistance, or XMP
         aux:ApproximateFocusDistance), in metres;
      5. `focus_order` ("near_to_far" or "far_to_near", natural file-name order) for stacks with no values:
         positions 0 (nearest) .. S-1 (farthest), relative. It cannot be combined with 1. or 2.
    A value in 1. or 2. may carry a unit suffix ("0.5 m", "50cm", "2 D", "1.5px"); all must carry the same.

    Args:
      folder: directory holding the slices (jpg, png, tif, bmp, webp; float TIFFs too).
      max_size: if given, each slice is downscaled (aspect kept) so its longer side is at most this many
        pixels. Use it for phone photos: a 12-megapixel 5-slice stack is ~0.7 GB as float32.
      unit: name of the unit of the focus positions, carried along for reports.
      focus_unit: "distance", "diopter" or "disparity" if known, only to word the hints of errors.
    """
    folder = os.fspath(folder)
    files = list_stack_files(folder)
    if max_size is not None and (not isinstance(max_size, (int, np.integer)) or max_size < 8):
        raise FocalStackError(f"max_size must be an integer >= 8 pixels, got {max_size!r}.")

    paths = [os.path.join(folder, f) for f in files]
    focus, origin, declared = focus_positions_for_folder(folder, files, focus_positions, focus_order=focus_order,
                                                         focus_unit=focus_unit)
    images, sizes = zip(*(_read_image(p, max_size) for p in paths))
    _check_same_geometry(images, files)
    if len(set(sizes)) > 1:  # same after downscaling, different before: say so in original pixels
        _check_same_geometry([np.zeros((h, w)) for h, w in sizes], files)
    stack = FocalStack.from_arrays(list(images), focus, unit=unit, source_files=paths)
    return dataclasses.replace(stack, original_size_hw=sizes[0], focus_origin=origin, declared_unit=declared)


def list_stack_files(folder: str | os.PathLike) -> list[str]:
    """The image file names of a stack folder in natural order (image_2 before image_10); FocalStackError
    when the folder is missing, holds fewer than 2 images or empty files. Reads no pixels."""
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
    _check_files_not_empty([os.path.join(folder, f) for f in files])
    return files


def focus_positions_for_folder(folder: str, files: Sequence[str], focus_positions=None, *,
                               focus_order: str | None = None, focus_unit: str | None = None):
    """(focus positions in file order, where they came from, declared (kind, label) or None); the rules
    of `load_focal_stack`. Reads only text and image metadata, so it is quick; raises FocalStackError."""
    if focus_order is not None:
        if focus_order not in FOCUS_ORDERS:
            raise FocalStackError(f"focus order must be one of {', '.join(FOCUS_ORDERS)}, got {focus_order!r}.")
        given = ("the focus positions given" if focus_positions is not None else
                 f"{FOCUS_FILE_NAME} in {folder!r}" if os.path.isfile(os.path.join(folder, FOCUS_FILE_NAME))
                 else None)
        if given:
            raise FocalStackError(
                f"--focus_order is for stacks without focus values, but {given} holds values. Use the values "
                f"(drop --focus_order) or the order alone (drop the values{' file' if 'txt' in given else ''}).")
        index = np.arange(len(files), dtype=np.float64)
        values = index if focus_order == "near_to_far" else index[::-1]
        return (_validated_focus_positions(values, len(files)), f"the file-name order ({focus_order})",
                ("order", "slice"))
    if focus_positions is not None:
        if isinstance(focus_positions, (str, os.PathLike)):
            origin = f"focus file {os.fspath(focus_positions)!r}"
            values, declared = _read_focus_file(os.fspath(focus_positions))
        else:
            origin = "the focus positions given"
            values, declared = parse_focus_values(list(focus_positions), origin)
    elif os.path.isfile(os.path.join(folder, FOCUS_FILE_NAME)):
        values, declared = _read_focus_file(os.path.join(folder, FOCUS_FILE_NAME))
        origin = f"{FOCUS_FILE_NAME} in {folder!r}"
    else:
        from_names = [_focus_position_from_name(f) for f in files]
        if all(v is not None for v in from_names):
            values, declared, origin = from_names, None, "the file names"
        else:
            values = _focus_distances_from_metadata(folder, files, from_names)
            declared, origin = ("distance", "m"), "the photos' metadata (EXIF SubjectDistance, metres)"
    if len(values) != len(files):
        raise FocalStackError(
            f"{len(values)} focus positions from {origin}, but {len(files)} images in {folder!r} "
            f"({', '.join(files)}). Give exactly one focus position per image, in natural file-name order.")
    kind = focus_unit or (declared[0] if declared else None)  # words the hints in the values' own unit
    return _validated_focus_positions(values, len(files), origin, kind), origin, declared


def parse_focus_values(items: Sequence, origin: str) -> tuple[list[float], tuple[str, str] | None]:
    """Numbers, or strings of a number with an optional unit suffix ("0.5", "50 cm", "2D"), into (floats,
    declared (kind, label) or None). All values must carry the same unit, or none."""
    values, units = [], []
    for item in items:
        if isinstance(item, str):
            match = _VALUE_WITH_UNIT.match(item)
            suffix = (match.group(2) or "").lower() if match else None
            if match is None or (suffix and suffix not in UNIT_SUFFIXES):
                raise FocalStackError(
                    f"{item.strip()!r} in {origin} is not a number with an optional unit (one of "
                    f"{', '.join(sorted(UNIT_SUFFIXES))}); write e.g. 0.5, 0.5m, 50cm or 2D.")
            values.append(float(match.group(1)))
            units.append(suffix or None)
        else:
            try:
                values.append(float(item))
            except (TypeError, ValueError):
                raise FocalStackError(f"{origin} must be numbers, got {item!r}.") from None
            units.append(None)
    named = sorted({u for u in units if u})
    if len(named) > 1 or (named and None in units):
        shown = ", ".join(sorted({u or "no unit" for u in units}))
        raise FocalStackError(f"Mixed units in {origin} ({shown}): give every focus value in one unit, e.g. all "
                              "in metres or all in diopters.")
    if named and len({UNIT_SUFFIXES[u] for u in named}) > 1:
        raise FocalStackError(f"Mixed units in {origin} ({', '.join(named)}).")
    return values, (UNIT_SUFFIXES[named[0]] if named else None)


def _read_focus_file(path: str) -> tuple[list[float], tuple[str, str] | None]:
    if not os.path.isfile(path):
        raise FocalStackError(f"Focus file not found: {path!r}.")
    items = []
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            if not _VALUE_WITH_UNIT.match(text):
                raise FocalStackError(
                    f"Line {line_number} of {path!r} is not a number: {line.strip()!r}. The file must hold "
                    "one focus position per line (optionally with a unit: 0.5m, 50cm, 2D).")
            items.append(text)
    if not items:
        raise FocalStackError(f"Focus file {path!r} holds no numbers; write one focus position per line.")
    return parse_focus_values(items, f"{path!r}")


def _focus_position_from_name(file_name: str) -> float | None:
    matches = _DECIMAL_IN_NAME.findall(os.path.splitext(file_name)[0])
    return float(matches[-1]) if matches else None


def _focus_distances_from_metadata(folder: str, files: Sequence[str], from_names) -> list[float]:
    """The EXIF/XMP focus distance (metres) of every file, or a FocalStackError saying what is missing."""
    values, missing, unreadable = [], [], []
    for name in files:
        try:
            distance = read_metadata_focus_distance(os.path.join(folder, name))
        except FocalStackError as error:
            unreadable.append(str(error))
            continue
        (missing.append(name) if distance is None else values.append(distance))
    no_values = (
        f"Pass the focus positions (--focus_distances 0.5,0.8,... or focus_positions=[...]), write a "
        f"{FOCUS_FILE_NAME} with one value per image in file-name order, name the files like image_1_0.35.jpg, "
        "or, if only the order is known, pass --focus_order near_to_far (or far_to_near) for relative depth.")
    if unreadable:
        raise FocalStackError(f"No focus positions in {folder!r}: no {FOCUS_FILE_NAME}, no decimal number in "
                              f"every file name, and {unreadable[0]} {no_values}")
    if missing:
        some = "" if len(missing) == len(files) else f" (the other {len(files) - len(missing)} have one)"
        named = [f for f, v in zip(files, from_names) if v is None]
        raise FocalStackError(
            f"No focus positions in {folder!r}: there is no {FOCUS_FILE_NAME}, {len(named)} file name(s) hold no "
            f"decimal number (e.g. {named[0]!r}), and {len(missing)} photo(s) carry no focus distance in their "
            f"metadata (EXIF SubjectDistance; e.g. {missing[0]!r}){some}. {no_values}")
    return values


def read_metadata_focus_distance(path: str) -> float | None:
    """The focus distance in metres a camera wrote into the image (EXIF SubjectDistance, else XMP
    aux:ApproximateFocusDistance / exif:SubjectDistance); None when it wrote none (or wrote 0 = unknown);
    inf for "infinity". FocalStackError when the metadata is there but cannot be read."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns about odd but harmless EXIF; failures raise
            Image.MAX_IMAGE_PIXELS = None  # only the header and metadata are read: no pixels are decoded
            with Image.open(path) as image:
                exif = image.getexif()
                raw = exif.get_ifd(_EXIF_IFD).get(_SUBJECT_DISTANCE) if exif else None
                xmp = image.info.get("xmp") or image.info.get("XML:com.adobe.xmp") or b""
                raw_exif = image.info.get("exif") or b""
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError, KeyError, IndexError,
            struct.error) as error:  # Pillow's EXIF parser fails in many ways on damaged data
        raise FocalStackError(f"the metadata of {path!r} cannot be read ({type(error).__name__}: "
                              f"{str(error)[:120]}).") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if not exif and len(raw_exif) > 14:  # an EXIF block (header + TIFF header + IFD) that parses to nothing
        raise FocalStackError(f"the EXIF block of {path!r} cannot be read (damaged: {len(raw_exif)} bytes, no "
                              "valid entry).")
    if raw is None and xmp:
        match = _XMP_DISTANCE.search(xmp if isinstance(xmp, bytes) else str(xmp).encode())
        raw = match.group(1).decode() if match else None
    if raw is None:
        return None
    try:
        if isinstance(raw, str) and "/" in raw:
            numerator, denominator = raw.split("/", 1)
            value = float(numerator) / float(denominator)
        else:
            value = float(raw)
    except (TypeError, ValueError, ZeroDivisionError):
        raise FocalStackError(f"the focus distance in the metadata of {path!r} is not a number ({raw!r}).") from None
    if value >= 0xFFFFFFFF or (not np.isfinite(value) and value > 0):
        return float("inf")
    if not np.isfinite(value) or value < 0:
        raise FocalStackError(f"the focus distance in the metadata of {path!r} is invalid ({raw!r}).")
    return None if value == 0 else value


def _validated_focus_positions(values, num_slices: int, origin: str = "the focus positions",
                               focus_unit: str | None = None) -> np.ndarray:
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
        if focus_unit == "diopter":
            hint = "A slice focused at infinity is at 0 diopters."
        elif focus_unit in ("distance", None):
            hint = ("A slice focused at infinity has no finite distance: drop it, give it a large finite distance "
                    "(e.g. 100x the farthest other one), or give every value in diopters (infinity = 0) with "
                    "--focus_unit diopter.")
        else:
            hint = "Drop the slice or give it a finite value."
        raise FocalStackError(f"Non-finite focus positions at slices {bad} ({origin}: {focus.tolist()}). {hint}")
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


def read_image(path: str, max_size: int | None = None, *, as_float: bool = True,
               beyond_pillow_limit: bool = False) -> np.ndarray:
    """One slice, upright (EXIF orientation applied), its longer side downscaled to at most `max_size` pixels
    if given: float32 (H, W, 3) in [0, 1], or with as_float=False the pixels as stored (uint8, uint16 or
    float; (H, W) or (H, W, C)). FocalStackError when it cannot be read, or when it is larger than Pillow's
    decompression-bomb limit and read at full size, unless `beyond_pillow_limit` (for photos the user
    already chose, read one at a time for outputs at their own pixel grid)."""
    pixels = _read_image(path, max_size, beyond_pillow_limit)[0]
    return _as_float_image(pixels, repr(path)) if as_float else pixels


def _read_image(path: str, max_size: int | None,
                beyond_pillow_limit: bool = False) -> tuple[np.ndarray, tuple[int, int]]:
    """(pixels as stored, (height, width) of the upright image before downscaling)."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow's decompression-bomb guard: a warning above its pixel limit, an error above twice it.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            if max_size is not None or beyond_pillow_limit:
                # Downscaled at decode (JPEG) or right after: the guard's memory concern does not apply.
                Image.MAX_IMAGE_PIXELS = None
            with Image.open(path) as image:
                upright = image.size[::-1] if _exif_orientation(image) in (5, 6, 7, 8) else image.size
                original_hw = (upright[1], upright[0])
                if max_size is not None and image.format == "JPEG":
                    # Decode JPEGs at a reduced DCT scale first: a 12 MP slice then loads in a fraction of the time.
                    image.draft("RGB", _scaled_size(image.size, max_size))
                image = ImageOps.exif_transpose(image)
                image.load()
                if max_size is not None and max(image.size) > max_size:
                    image = image.resize(_scaled_size(image.size, max_size), Image.Resampling.LANCZOS)
                return np.asarray(image), original_hw
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise FocalStackError(
            f"Image {path!r} is larger than Pillow's safety limit for decoding at full size ({error}). Predict at "
            "a working resolution instead: pass --max_size (e.g. --max_size 640, the default) rather than "
            "--full_resolution (max_size=... in Python); the outputs still come out at the photo's pixel "
            "grid.") from None
    except UnidentifiedImageError as error:
        if path.lower().endswith((".tif", ".tiff")):
            return _read_tiff_with_tifffile(path, max_size, error)
        raise FocalStackError(f"Cannot read image {path!r} ({error}). Is it a complete, valid image file?") \
            from None
    except (OSError, SyntaxError, ValueError) as error:
        raise FocalStackError(f"Cannot read image {path!r} ({error}). Is it a complete, valid image file?") \
            from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _exif_orientation(image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # a damaged EXIF block only loses the orientation, as in ImageOps.exif_transpose
        return 1


def _read_tiff_with_tifffile(path: str, max_size: int | None, pillow_error) -> tuple[np.ndarray, tuple[int, int]]:
    """TIFFs Pillow does not decode (float RGB, e.g. from a renderer or raw converter) through tifffile."""
    import tifffile  # only for the TIFF flavours Pillow cannot read

    try:
        array = np.asarray(tifffile.imread(path))
    except Exception as error:  # tifffile raises many types on damaged files
        raise FocalStackError(f"Cannot read image {path!r} ({pillow_error}; tifffile: {error}). Is it a complete, "
                              "valid image file?") from None
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[-1] not in (3, 4):
        array = np.moveaxis(array, 0, -1)  # planar (C, H, W) storage
    original_hw = (int(array.shape[0]), int(array.shape[1]))
    if max_size is None or max(original_hw) <= max_size or array.ndim not in (2, 3):
        return array, original_hw
    # Downscale in float (values unchanged in meaning: integers to [0, 1] first), one channel at a time.
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        array = array.astype(np.float32) / np.iinfo(array.dtype).max
    channels = array[..., None] if array.ndim == 2 else array
    width, height = _scaled_size((original_hw[1], original_hw[0]), max_size)
    resized = np.stack([np.asarray(Image.fromarray(channels[..., c].astype(np.float32)).resize(
        (width, height), Image.Resampling.LANCZOS)) for c in range(channels.shape[-1])], axis=-1)
    if channels.min() >= 0.0 and channels.max() <= 1.0:
        resized = np.clip(resized, 0.0, 1.0)  # Lanczos overshoot must not push [0, 1] images out of range
    return (resized[..., 0] if array.ndim == 2 else resized), original_hw


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
