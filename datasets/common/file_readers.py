"""Decoders for the file formats the datasets ship in, each failing with an error that names the file.

Formats: 8/16-bit images (PNG, JPEG, TIFF), OpenEXR (half or float channels), PFM, HDF5 and MATLAB
(.mat v5 through SciPy, v7.3 = HDF5 through h5py). A file that cannot be decoded raises
`CorruptFileError` (a ValueError) naming the path, so a preparation that stops on a truncated download
says which file to re-copy.
"""

from __future__ import annotations

import contextlib
import os
import re

import h5py
import numpy as np
import OpenEXR
import scipy.io
import tifffile
from PIL import Image

from datasets.common.manual_dir import CorruptFileError

_TIFF_SUFFIXES = (".tif", ".tiff")


def _corrupt(path, what: str, error: Exception | str) -> CorruptFileError:
    return CorruptFileError(
        f"Cannot read {what} {os.fspath(path)!r}: {error}. The file is corrupt or truncated; copy it again "
        "from the original download.")


def read_rgb_u8(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit colour image as (H, W, 3) uint8 (grey is repeated to 3 channels, alpha dropped).

    TIFF goes through tifffile (it also decodes the 16-bit and multi-sample TIFFs PIL cannot); other formats
    through PIL. A 16-bit image is reduced to 8 bits by rounding value / 257.
    """
    path = os.fspath(path)
    try:
        if path.lower().endswith(_TIFF_SUFFIXES):
            array = np.asarray(tifffile.imread(path))
        else:
            with Image.open(path) as image:
                image.load()
                if image.mode not in ("L", "RGB", "RGBA", "I;16", "I;16B", "I"):
                    image = image.convert("RGB")
                array = np.asarray(image)
    except Exception as error:  # Decoders raise many types (OSError, ValueError, struct.error, ...).
        raise _corrupt(path, "image", error) from None
    return _as_rgb_u8(array, path)


def _as_rgb_u8(array: np.ndarray, path: str) -> np.ndarray:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise _corrupt(path, "image", f"unexpected pixel array shape {array.shape} (expected H x W x 1/3/4)")
    if array.dtype == np.uint16 or (array.dtype.kind in "iu" and array.max(initial=0) > 255):
        array = np.round(array.astype(np.float64) / 257.0)
    elif array.dtype.kind == "f":
        raise _corrupt(path, "image", "floating-point pixels where an 8-bit image was expected")
    array = np.clip(array, 0, 255).astype(np.uint8)
    if array.shape[-1] == 4:
        array = array[..., :3]
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def read_u16_png(path: str | os.PathLike) -> np.ndarray:
    """A single-channel 16-bit PNG (depth in millimetres, in NYUv2 and ARKitScenes) as (H, W) uint16."""
    path = os.fspath(path)
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            array = np.asarray(image)
    except Exception as error:
        raise _corrupt(path, "16-bit PNG", error) from None
    if array.ndim != 2 or mode not in ("I;16", "I;16B", "I;16L", "I"):
        raise _corrupt(path, "16-bit PNG",
                       f"it is a {mode} image of shape {array.shape}, not single-channel 16-bit")
    if array.min(initial=0) < 0 or array.max(initial=0) > 65535:
        raise _corrupt(path, "16-bit PNG", "values outside 0..65535")
    return array.astype(np.uint16)


def read_exr_channel(path: str | os.PathLike, channel: str = "R") -> np.ndarray:
    """One channel of an OpenEXR file as (H, W) float32 (half-float channels are widened exactly)."""
    path = os.fspath(path)
    try:
        with OpenEXR.File(path, separate_channels=True) as exr:
            channels = exr.channels()
            if channel not in channels:
                raise CorruptFileError(
                    f"OpenEXR file {path!r} has no channel {channel!r} (it has {sorted(channels)}).")
            pixels = np.asarray(channels[channel].pixels)
    except CorruptFileError:
        raise
    except Exception as error:
        raise _corrupt(path, "OpenEXR file", error) from None
    if pixels.ndim != 2:
        raise _corrupt(path, "OpenEXR file", f"channel {channel!r} has shape {pixels.shape}")
    return pixels.astype(np.float32)


_PFM_HEADER = re.compile(rb"^(PF|Pf)\s+(\d+)\s+(\d+)\s+([-+0-9.eE]+)\s")


def read_pfm(path: str | os.PathLike) -> np.ndarray:
    """A Portable Float Map as float32, (H, W) for 'Pf' or (H, W, 3) for 'PF', top row first.

    PFM stores rows bottom to top, little-endian when the scale is negative.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as error:
        raise _corrupt(path, "PFM file", error) from None
    match = _PFM_HEADER.match(data)
    if not match:
        raise _corrupt(path, "PFM file", "missing 'PF'/'Pf' header with width, height and scale")
    channels = 3 if match.group(1) == b"PF" else 1
    width, height, scale = int(match.group(2)), int(match.group(3)), float(match.group(4))
    dtype = np.dtype("<f4") if scale < 0 else np.dtype(">f4")
    expected = width * height * channels
    payload = data[match.end():]
    if len(payload) < expected * 4:
        raise _corrupt(path, "PFM file", f"{len(payload)} bytes of pixels, {expected * 4} expected")
    pixels = np.frombuffer(payload[:expected * 4], dtype=dtype).astype(np.float32)
    shape = (height, width, 3) if channels == 3 else (height, width)
    return np.flipud(pixels.reshape(shape)).copy()


@contextlib.contextmanager
def open_h5(path: str | os.PathLike):
    """Opens an HDF5 (or MAT v7.3) file read-only; yields the h5py.File."""
    path = os.fspath(path)
    try:
        handle = h5py.File(path, "r")
    except Exception as error:
        raise _corrupt(path, "HDF5 file", error) from None
    with handle:
        yield handle


def read_h5_item(handle, key: str, index: int | None = None) -> np.ndarray:
    """`handle[key]` (or its `index`-th item) as an array; a decoding failure names the file and key."""
    if key not in handle:
        raise CorruptFileError(
            f"HDF5 file {handle.filename!r} has no dataset {key!r} (it has {sorted(handle.keys())}). Is it the "
            "right file?")
    try:
        return np.asarray(handle[key] if index is None else handle[key][index])
    except Exception as error:
        raise _corrupt(handle.filename, f"dataset {key!r} of HDF5 file", error) from None


def read_mat_arrays(path: str | os.PathLike, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Named arrays of a MATLAB file, v5 (SciPy) or v7.3 (HDF5, through h5py).

    A v7.3 file stores arrays with their axes reversed (MATLAB is column-major); they are returned
    transposed back, so both versions give MATLAB's own shapes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CorruptFileError(f"MAT file {path!r} not found.")
    if h5py.is_hdf5(path):
        with open_h5(path) as handle:
            return {key: read_h5_item(handle, key).T for key in keys}
    try:
        contents = scipy.io.loadmat(path)
    except Exception as error:
        raise _corrupt(path, "MAT file", error) from None
    missing = [key for key in keys if key not in contents]
    if missing:
        held = sorted(k for k in contents if not k.startswith("__"))
        raise CorruptFileError(f"MAT file {path!r} lacks {missing}; it holds {held}.")
    return {key: np.asarray(contents[key]) for key in keys}
