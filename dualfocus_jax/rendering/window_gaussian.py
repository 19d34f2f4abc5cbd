"""The per-pixel Gaussian protocol renderer in NumPy, for the focal-stack engine.

`thin_lens.render_focal_stack(mode="gaussian")` is the protocol of the NYUv2 and ARKitScenes builders (HybridDepth's):
each source pixel spreads a Gaussian of standard deviation r / 2 (r its CoC radius in pixels) over a square window of
`kernel_size` pixels, pixels with r ≤ 1 stay sharp, and the window cuts every PSF, so blur stops growing beyond a CoC
of about 8 px at kernel_size 7. That version is JAX, jitted with the camera static. The engine draws a new camera
for every stack and runs inside grain's input pipeline, whose worker processes must not start JAX (on a GPU host
each would claim accelerator memory), so it renders through this NumPy version of the same sums instead; the two
agree to float32 rounding (tests/test_window_gaussian.py).
"""

from __future__ import annotations

import numpy as np

from dualfocus_jax.rendering.fft_layered import coc_radius_px
from dualfocus_jax.rendering.thin_lens import IN_FOCUS_RADIUS_PX, MAX_RADIUS_PX, ThinLensCamera


def render_window_gaussian_stack(image_HWC, depth_HW, focus_S, camera: ThinLensCamera, *,
                                 kernel_size: int = 7) -> np.ndarray:
    """(S, H, W, C) float32 focal stack of an all-in-focus image (any range) and its depth (metres, > the focal
    length), slice s focused at focus_S[s] (metres): output(p) = Σ_q w_q(p − q) I(q) / Σ_q w_q(p − q) over the
    `kernel_size` window, w_q(δ) = exp(−2|δ|² / r_q²) / r_q², offsets outside the image skipped; a pixel with
    r ≤ 1 is copied and gives its neighbours nothing."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number of pixels, got {kernel_size}.")
    image_HWC = np.asarray(image_HWC, np.float32)
    depth_HW = np.asarray(depth_HW, np.float64)
    focus_S = np.asarray(focus_S, np.float64).reshape(-1)
    if image_HWC.ndim != 3 or depth_HW.shape != image_HWC.shape[:2]:
        raise ValueError(f"need an (H, W, C) image and an (H, W) depth, got {image_HWC.shape} and {depth_HW.shape}.")
    height, width, channels = image_HWC.shape
    half = kernel_size // 2
    radius_SHW = np.minimum(coc_radius_px(depth_HW[None], focus_S[:, None, None], camera), MAX_RADIUS_PX)
    radius_SHW = radius_SHW.astype(np.float32)
    # Padding with radius 0 (in focus, contributes nothing) skips the offsets outside the image, as the protocol does.
    radius_pad_SHW = np.pad(radius_SHW, ((0, 0), (half, half), (half, half)))
    image_pad_HWC = np.pad(image_HWC, ((half, half), (half, half), (0, 0)))
    spreads_SHW = radius_pad_SHW > IN_FOCUS_RADIUS_PX
    inverse_r2_pad_SHW = np.where(spreads_SHW, 1.0 / np.square(np.where(spreads_SHW, radius_pad_SHW, 1.0)),
                                  0.0).astype(np.float32)
    weighted_SHWC = np.zeros((len(focus_S), height, width, channels), np.float32)
    weight_sum_SHW = np.zeros((len(focus_S), height, width), np.float32)
    for dy in range(kernel_size):
        for dx in range(kernel_size):
            squared_offset = np.float32((dy - half) ** 2 + (dx - half) ** 2)
            inverse_r2_SHW = inverse_r2_pad_SHW[:, dy:dy + height, dx:dx + width]
            weight_SHW = inverse_r2_SHW * np.exp(-2.0 * squared_offset * inverse_r2_SHW)
            weighted_SHWC += weight_SHW[..., None] * image_pad_HWC[None, dy:dy + height, dx:dx + width]
            weight_sum_SHW += weight_SHW
    blurred_SHWC = weighted_SHWC / np.where(weight_sum_SHW > 0, weight_sum_SHW, 1.0)[..., None]
    in_focus_SHW = radius_SHW <= IN_FOCUS_RADIUS_PX
    return np.where(in_focus_SHW[..., None], image_HWC[None], blurred_SHWC).astype(np.float32)
