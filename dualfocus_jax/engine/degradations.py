"""What a real camera and the predictor's alignment leave in a focal stack: residual misalignment and
magnification change per slice, exposure flicker, sensor noise and JPEG compression (NumPy, host side)."""

from __future__ import annotations

import io

import numpy as np
import scipy.ndimage
from PIL import Image


def misaligned(rng: np.random.Generator, slice_HWC: np.ndarray, max_shift_px: float, max_scale_change: float
               ) -> np.ndarray:
    """One slice shifted by up to `max_shift_px` and scaled about the centre by up to `max_scale_change`
    (relative): what remains after `predict`'s alignment (a scale for focus breathing plus a shift)."""
    if max_shift_px <= 0 and max_scale_change <= 0:
        return slice_HWC
    height, width = slice_HWC.shape[:2]
    scale = 1.0 + rng.uniform(-max_scale_change, max_scale_change)
    shift = rng.uniform(-max_shift_px, max_shift_px, 2)
    centre = np.array([(height - 1) / 2, (width - 1) / 2])
    offset = centre - centre / scale + shift
    return np.stack([scipy.ndimage.affine_transform(slice_HWC[..., c], np.full(2, 1.0 / scale), offset=offset,
                                                    order=1, mode="nearest")
                     for c in range(slice_HWC.shape[-1])], axis=-1)


def noisy(rng: np.random.Generator, stack_SHWC: np.ndarray, shot: float, read: float) -> np.ndarray:
    """Poisson-Gaussian sensor noise in [0, 1] units: variance = shot · x + read²."""
    sigma = np.sqrt(np.maximum(stack_SHWC, 0.0) * shot + read ** 2)
    return stack_SHWC + sigma * rng.standard_normal(stack_SHWC.shape, np.float32)


def jpeg_compressed(slice_HW3_u8: np.ndarray, quality: int) -> np.ndarray:
    """The slice after a JPEG round trip at `quality` (Pillow)."""
    buffer = io.BytesIO()
    Image.fromarray(slice_HW3_u8).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


def degraded_stack(rng: np.random.Generator, stack_SHWC: np.ndarray, *, max_shift_px: float = 0.5,
                   max_scale_change: float = 0.002, jpeg_probability: float = 0.5) -> np.ndarray:
    """uint8 (S, H, W, 3) from a float [0, 1] stack: misalignment, exposure flicker, noise, quantisation, JPEG."""
    slices = [misaligned(rng, frame, max_shift_px, max_scale_change) for frame in stack_SHWC]
    stack = np.stack(slices) * rng.uniform(0.98, 1.02, (len(slices), 1, 1, 1)).astype(np.float32)
    # Up to about 2.5% noise at mid-grey: a phone's processed output in dim light; often almost none.
    stack = noisy(rng, stack, shot=float(rng.uniform(0.0, 1.0) ** 2 * 1e-3), read=float(rng.uniform(0.0, 0.01)))
    stack_u8 = np.clip(np.round(stack * 255.0), 0, 255).astype(np.uint8)
    if rng.random() < jpeg_probability:
        quality = int(rng.integers(70, 98))
        stack_u8 = np.stack([jpeg_compressed(frame, quality) for frame in stack_u8])
    return stack_u8
