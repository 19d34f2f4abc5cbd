"""Each dataset's evaluation protocol (docs/design/DATASETS.md, docs/design/METRICS.md): slices, mask and clipping
before the metrics.

| protocol        | slices (of a sorted stack)     | pixels that count | clipping                     |
|-----------------|--------------------------------|-------------------|------------------------------|
| synthetic_focal | all                            | valid             | none                         |
| fod500          | all (5)                        | GT > 0            | pred, GT to [0, 1.5] m (DFV) |
| ddff12          | round(linspace(0, 9, S)) of 10 | GT > 0 and valid  | none                         |
| nyuv2           | all                            | 1e-3 < GT < 10 m  | none                         |
| arkitscenes     | all                            | GT ≠ 0 and valid  | none                         |

Padding: DDFF-12 images (383 × 552) are padded to a multiple of 32 (384 × 576) and the prediction cropped
back; `DualFocusNet` does exactly that inside (edge padding, crop to the input size), so every protocol
feeds full-size images and compares at the input size. Metrics are per image, then averaged over images
(`dualfocus_jax.evaluation.metrics`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

MASK_RULES = ("valid", "positive", "nyuv2_range", "nonzero")


@dataclasses.dataclass(frozen=True)
class EvalProtocol:
    """name; slice_sampling ("all" or "linspace", see `model_inputs.slice_indices`); mask_rule (MASK_RULES);
    clip_range: (low, high) applied to prediction and ground truth before the metrics, or None."""

    name: str
    slice_sampling: str = "all"
    mask_rule: str = "valid"
    clip_range: tuple[float, float] | None = None


PROTOCOLS = {
    "synthetic_focal": EvalProtocol("synthetic_focal"),
    "fod500": EvalProtocol("fod500", mask_rule="positive", clip_range=(0.0, 1.5)),
    "ddff12": EvalProtocol("ddff12", slice_sampling="linspace", mask_rule="positive"),
    "nyuv2": EvalProtocol("nyuv2", mask_rule="nyuv2_range"),
    "arkitscenes": EvalProtocol("arkitscenes", mask_rule="nonzero"),
}


def protocol_named(name: str) -> EvalProtocol:
    if name not in PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; choose one of {sorted(PROTOCOLS)}.")
    return PROTOCOLS[name]


def evaluation_mask(protocol: EvalProtocol, depth_gt_BHW: np.ndarray, valid_BHW: np.ndarray) -> np.ndarray:
    """(B, H, W) bool: the pixels the protocol scores (always within the dataset's `valid` mask)."""
    gt = np.asarray(depth_gt_BHW, np.float32)
    valid = np.asarray(valid_BHW, bool) & np.isfinite(gt)
    if protocol.mask_rule == "valid":
        return valid
    if protocol.mask_rule == "positive":
        return valid & (gt > 0)
    if protocol.mask_rule == "nyuv2_range":
        return valid & (gt > 1e-3) & (gt < 10.0)
    if protocol.mask_rule == "nonzero":
        return valid & (gt != 0)
    raise ValueError(f"mask_rule must be one of {MASK_RULES}, got {protocol.mask_rule!r}.")


def clipped_for_metrics(protocol: EvalProtocol, depth_BHW: np.ndarray) -> np.ndarray:
    """Prediction or ground truth clipped to the protocol's range (unchanged without one)."""
    if protocol.clip_range is None:
        return np.asarray(depth_BHW, np.float32)
    low, high = protocol.clip_range
    return np.clip(np.asarray(depth_BHW, np.float32), low, high)
