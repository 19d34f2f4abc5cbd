"""Writers of small files in the datasets' real formats, so the builders' tests generate their inputs.

Used by tests/test_dataset_*.py instead of committed binaries (a test helper, so it lives in tests/). Each
writer uses the format's own library (tifffile, OpenEXR, h5py, SciPy, PIL) or, for PFM, the byte layout of the
specification, never this project's readers, so a test checks the readers against an independent encoder.
"""

from __future__ import annotations

import os

import h5py
import numpy as np
import OpenEXR
import scipy.io
import tifffile
from PIL import Image

# MATLAB's v7.3 files are HDF5 with a 512-byte text header in the user block.
_MAT73_HEADER = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."


def write_tiff_rgb(path, image_HWC: np.ndarray) -> None:
    tifffile.imwrite(os.fspath(path), np.asarray(image_HWC, np.uint8), photometric="rgb")


def write_png(path, array: np.ndarray) -> None:
    """uint8 (H, W, 3) as RGB, uint8 (H, W) as grey, uint16 (H, W) as 16-bit grey."""
    array = np.asarray(array)
    if array.dtype != np.uint16:
        array = array.astype(np.uint8)
    Image.fromarray(array).save(os.fspath(path))


def write_jpeg(path, image_HWC: np.ndarray, quality: int = 95) -> None:
    Image.fromarray(np.asarray(image_HWC, np.uint8)).save(os.fspath(path), quality=quality)


def write_exr_depth(path, depth_HW: np.ndarray, half: bool = True) -> None:
    """Depth in R, G and B (as DefocusNet's renders store it), half float by default."""
    pixels = np.asarray(depth_HW, np.float16 if half else np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"R": pixels, "G": pixels, "B": pixels}) as exr:
        exr.write(os.fspath(path))


def write_pfm(path, array: np.ndarray, little_endian: bool = True) -> None:
    """Grey 'Pf' for (H, W), colour 'PF' for (H, W, 3); rows bottom to top, as the format specifies."""
    array = np.asarray(array, np.float32)
    kind = b"PF" if array.ndim == 3 else b"Pf"
    height, width = array.shape[:2]
    scale = -1.0 if little_endian else 1.0
    data = np.flipud(array).astype("<f4" if little_endian else ">f4").tobytes()
    with open(os.fspath(path), "wb") as handle:
        handle.write(kind + b"\n" + f"{width} {height}\n{scale}\n".encode() + data)


def write_mat73(path, arrays: dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file: HDF5 with a MATLAB user-block header, arrays stored with reversed axes."""
    path = os.fspath(path)
    with h5py.File(path, "w", userblock_size=512) as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=np.asarray(value).T)
    with open(path, "r+b") as handle:
        handle.write(_MAT73_HEADER.ljust(512, b" ")[:512])


def write_mat5(path, arrays: dict[str, np.ndarray]) -> None:
    scipy.io.savemat(os.fspath(path), arrays)


def write_h5(path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(os.fspath(path), "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=np.asarray(value))
