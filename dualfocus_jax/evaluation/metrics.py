"""Depth-from-focus metrics with the exact semantics of the DFF literature (see docs/design/METRICS.md).

All functions are masked, batched over B images and jit-able. Each metric is computed per image over its
valid pixels (N = number of valid pixels) and `depth_metrics` then averages over images, as DFV, DDFF and
HybridDepth do. Depth may be in any unit (metres, disparity); the metrics keep it (MSE in unit², ...),
except the dimensionless AbsRel, δ_k and logRMSE.

Conventions where the literature is loose, chosen here and kept everywhere:

* An image with no valid pixel has undefined metrics: `depth_metrics_per_image` returns NaN for it, and
  `depth_metrics` leaves it out of the mean (it averages over images with at least one valid pixel; a
  batch with none gives 0 for every metric, never NaN).
* Terms that would divide by zero or take a log of a non-positive number are dropped from the sum but N
  is not reduced, the masked-array behaviour of the DFV evaluation scripts: logRMSE drops pixels with
  pred <= 0 (or gt <= 0), AbsRel/SqRel drop gt <= 0 (only possible with a custom mask).
* δ_k counts a pixel as accurate iff pred > 0, gt > 0 and max(pred/gt, gt/pred) < 1.25^k; reported as a
  fraction in [0, 1] (DDFF/DFV print percentages: multiply by 100 to compare).
* Bumpiness uses the Scharr derivatives of scikit-image >= 0.19 (`skimage.filters.scharr_h/v`, i.e.
  `scipy.ndimage.convolve(..., mode="reflect")`, half-sample symmetric border) on the *unmasked*
  difference pred − gt (non-finite entries set to 0 so one bad pixel cannot poison its neighbours),
  exactly as DFV's FoD500 script run with a current scikit-image. Old scikit-image zeroed a 1-pixel
  border after each filter, which changes values only within 2 pixels of the image border.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dualfocus_jax.focus_statistics import depth_uncertainty

METRIC_NAMES: tuple[str, ...] = (
    "mse", "rmse", "log_rmse", "abs_rel", "sq_rel", "delta1", "delta2", "delta3", "bump", "mae")

# Hessian norms above this are clipped before averaging (DFV, FoD500 depth in metres).
BUMPINESS_CLIP = 0.05
_DELTA_BASE = 1.25


def default_valid_mask(gt_BHW) -> jnp.ndarray:
    """Returns (B, H, W) bool: ground truth > 0 (the DFF convention; NaN GT counts as invalid)."""
    return jnp.asarray(gt_BHW) > 0


@jax.jit
def depth_metrics_per_image(pred_BHW, gt_BHW, mask_BHW) -> dict[str, jnp.ndarray]:
    """Every metric of METRIC_NAMES for each image.

    Args:
      pred_BHW: (B, H, W) predicted depth.
      gt_BHW: (B, H, W) ground-truth depth, same unit.
      mask_BHW: (B, H, W) valid pixels (bool, or numbers where nonzero means valid); e.g.
        `default_valid_mask(gt_BHW)`.

    Returns:
      dict name -> (B,) float32, one value per image; NaN for an image without valid pixels.
    """
    pred_BHW, gt_BHW, mask_BHW = _checked_inputs(pred_BHW, gt_BHW, mask_BHW)
    count_B = jnp.sum(mask_BHW, axis=(1, 2)).astype(jnp.float32)
    has_valid_B = count_B > 0
    safe_count_B = jnp.maximum(count_B, 1.0)

    def masked_mean(values_BHW, where_BHW):
        # Sum over `where` only (jnp.where, not a product, so inf/NaN outside it cannot leak in), / N.
        return jnp.sum(jnp.where(where_BHW, values_BHW, 0.0), axis=(1, 2)) / safe_count_B

    error_BHW = pred_BHW - gt_BHW
    gt_positive_BHW = mask_BHW & (gt_BHW > 0)
    both_positive_BHW = gt_positive_BHW & (pred_BHW > 0)
    safe_gt_BHW = jnp.where(gt_positive_BHW, gt_BHW, 1.0)
    safe_pred_BHW = jnp.where(both_positive_BHW, pred_BHW, 1.0)

    mse_B = masked_mean(jnp.square(error_BHW), mask_BHW)
    log_error_BHW = jnp.log(safe_pred_BHW) - jnp.log(safe_gt_BHW)
    ratio_BHW = jnp.maximum(safe_pred_BHW / safe_gt_BHW, safe_gt_BHW / safe_pred_BHW)
    metrics = {
        "mse": mse_B,
        "rmse": jnp.sqrt(mse_B),
        "log_rmse": jnp.sqrt(masked_mean(jnp.square(log_error_BHW), both_positive_BHW)),
        "abs_rel": masked_mean(jnp.abs(error_BHW) / safe_gt_BHW, gt_positive_BHW),
        "sq_rel": masked_mean(jnp.square(error_BHW) / safe_gt_BHW, gt_positive_BHW),
        "mae": masked_mean(jnp.abs(error_BHW), mask_BHW),
        "bump": _bumpiness_sum(pred_BHW, gt_BHW, mask_BHW, BUMPINESS_CLIP) / safe_count_B,
    }
    for k in (1, 2, 3):
        accurate_BHW = both_positive_BHW & (ratio_BHW < _DELTA_BASE ** k)
        metrics[f"delta{k}"] = jnp.sum(accurate_BHW, axis=(1, 2)) / safe_count_B
    return {name: jnp.where(has_valid_B, metrics[name], jnp.nan).astype(jnp.float32) for name in METRIC_NAMES}


@jax.jit
def depth_metrics(pred_BHW, gt_BHW, mask_BHW) -> dict[str, jnp.ndarray]:
    """Every metric of METRIC_NAMES, per image then averaged over the images with valid pixels.

    Shapes as in `depth_metrics_per_image`. Returns dict name -> float32 scalar. Images without valid
    pixels are excluded from the mean; if no image has any, every metric is 0 (never NaN).
    """
    per_image = depth_metrics_per_image(pred_BHW, gt_BHW, mask_BHW)
    has_valid_B = jnp.any(jnp.asarray(mask_BHW).astype(bool), axis=(1, 2))
    image_count = jnp.maximum(jnp.sum(has_valid_B), 1).astype(jnp.float32)
    return {name: jnp.sum(jnp.where(has_valid_B, values_B, 0.0)) / image_count for name, values_B in per_image.items()}


@jax.jit
def bumpiness_per_image(pred_BHW, gt_BHW, mask_BHW, clip=BUMPINESS_CLIP) -> jnp.ndarray:
    """Bumpiness of the error surface, per image.

    d = pred − gt (unmasked); Scharr derivatives dx, dy, then dxx, dxy (from dx) and dyy, dyx (from dy);
    H = sqrt(dxx² + dxy² + dyy² + dyx²); Bump = 100 · Σ_valid min(H, clip) / N. Border handling: see the
    module docstring (scikit-image >= 0.19, 'reflect').

    Args:
      pred_BHW, gt_BHW: (B, H, W) depth, same unit (clip = 0.05 assumes metres, as on FoD500).
      mask_BHW: (B, H, W) valid pixels.
      clip: Hessian-norm clip, in depth units per pixel².

    Returns:
      (B,) float32; NaN for an image without valid pixels.
    """
    pred_BHW, gt_BHW, mask_BHW = _checked_inputs(pred_BHW, gt_BHW, mask_BHW)
    count_B = jnp.sum(mask_BHW, axis=(1, 2)).astype(jnp.float32)
    bump_B = _bumpiness_sum(pred_BHW, gt_BHW, mask_BHW, clip) / jnp.maximum(count_B, 1.0)
    return jnp.where(count_B > 0, bump_B, jnp.nan).astype(jnp.float32)


@jax.jit
def average_uncertainty(prob_BSHW, focus_BS, pred_BHW, mask_BHW=None) -> jnp.ndarray:
    """AvgUnc: the mean over pixels of σ(x) = sqrt(Σ_n p_n(x) (pred(x) − f_n)²), per image.

    Args:
      prob_BSHW: (B, S, H, W) focus probabilities (each pixel's S values sum to 1).
      focus_BS: (B, S) focus positions, in the unit of pred.
      pred_BHW: (B, H, W) predicted depth (usually Σ_n p_n f_n).
      mask_BHW: optional (B, H, W) pixels to average over; all pixels if None (the paper's AvgUnc).

    Returns:
      (B,) float32 mean uncertainty, in the unit of pred; NaN for an image whose mask is empty.
    """
    prob_BSHW = jnp.asarray(prob_BSHW, jnp.float32)
    focus_BS = jnp.asarray(focus_BS, jnp.float32)
    pred_BHW = jnp.asarray(pred_BHW, jnp.float32)
    if prob_BSHW.ndim != 4:
        raise ValueError(f"prob_BSHW must have shape (B, S, H, W), got {prob_BSHW.shape}.")
    batch, slices, height, width = prob_BSHW.shape
    if focus_BS.shape != (batch, slices):
        raise ValueError(
            f"focus_BS must have shape {(batch, slices)} (B, S of prob_BSHW), got {focus_BS.shape}. "
            "Broadcast shared focus positions with jnp.broadcast_to(focus_S, (B, S)).")
    if pred_BHW.shape != (batch, height, width):
        raise ValueError(f"pred_BHW must have shape {(batch, height, width)}, got {pred_BHW.shape}.")
    if mask_BHW is None:
        mask_BHW = jnp.ones((batch, height, width), bool)
    else:
        mask_BHW = jnp.asarray(mask_BHW)
        if mask_BHW.shape != (batch, height, width):
            raise ValueError(f"mask_BHW must have shape {(batch, height, width)}, got {mask_BHW.shape}.")
        mask_BHW = mask_BHW.astype(bool)
    sigma_BHW = depth_uncertainty(prob_BSHW, focus_BS, pred_BHW)
    count_B = jnp.sum(mask_BHW, axis=(1, 2)).astype(jnp.float32)
    mean_B = jnp.sum(jnp.where(mask_BHW, sigma_BHW, 0.0), axis=(1, 2)) / jnp.maximum(count_B, 1.0)
    return jnp.where(count_B > 0, mean_B, jnp.nan).astype(jnp.float32)


def _checked_inputs(pred_BHW, gt_BHW, mask_BHW):
    """Validates shapes (ValueError naming the fix) and returns float32 pred, gt and a bool mask."""
    pred_BHW, gt_BHW, mask_BHW = jnp.asarray(pred_BHW), jnp.asarray(gt_BHW), jnp.asarray(mask_BHW)
    if pred_BHW.ndim != 3:
        raise ValueError(
            f"pred_BHW must have shape (B, H, W), got {pred_BHW.shape}. Add a batch axis to a single map "
            "(pred[None]) and drop a channel axis (pred[..., 0]).")
    if gt_BHW.shape != pred_BHW.shape or mask_BHW.shape != pred_BHW.shape:
        raise ValueError(
            f"pred_BHW, gt_BHW and mask_BHW must have the same (B, H, W) shape, got {pred_BHW.shape}, "
            f"{gt_BHW.shape} and {mask_BHW.shape}. Crop or resize the prediction to the ground truth first.")
    return pred_BHW.astype(jnp.float32), gt_BHW.astype(jnp.float32), mask_BHW.astype(bool)


def _bumpiness_sum(pred_BHW, gt_BHW, mask_BHW, clip):
    """(B,) Σ over valid pixels of 100 · min(H, clip), H the Hessian norm of pred − gt (see above)."""
    difference_BHW = pred_BHW - gt_BHW
    difference_BHW = jnp.where(jnp.isfinite(difference_BHW), difference_BHW, 0.0)
    dx_BHW = _scharr_along_width(difference_BHW)
    dy_BHW = _scharr_along_height(difference_BHW)
    hessian_norm_BHW = jnp.sqrt(
        jnp.square(_scharr_along_width(dx_BHW)) + jnp.square(_scharr_along_height(dx_BHW))
        + jnp.square(_scharr_along_height(dy_BHW)) + jnp.square(_scharr_along_width(dy_BHW)))
    clipped_BHW = jnp.minimum(hessian_norm_BHW, clip)
    return 100.0 * jnp.sum(jnp.where(mask_BHW, clipped_BHW, 0.0), axis=(1, 2))


def _scharr_along_height(image_BHW):
    """skimage.filters.scharr_h: convolution with [[3,10,3],[0,0,0],[-3,-10,-3]]/16, 'reflect' border."""
    padded = jnp.pad(image_BHW, ((0, 0), (1, 1), (1, 1)), mode="symmetric")
    height, width = image_BHW.shape[1:]
    # Convolution flips the kernel: the +3/+10/+3 row multiplies the row *below* each pixel.
    below = padded[:, 2:2 + height]
    above = padded[:, 0:height]
    rows_diff = below - above
    return (3.0 * rows_diff[:, :, 0:width] + 10.0 * rows_diff[:, :, 1:1 + width]
            + 3.0 * rows_diff[:, :, 2:2 + width]) / 16.0


def _scharr_along_width(image_BHW):
    """skimage.filters.scharr_v: convolution with the transpose of the scharr_h kernel, 'reflect' border."""
    return jnp.swapaxes(_scharr_along_height(jnp.swapaxes(image_BHW, 1, 2)), 1, 2)
