"""Focal volumes: per-slice features stacked along the focal axis, with focal differences.

docs/design/METHOD.md "Network" item 2: with V_n the features of slice n (slices sorted by focus position),
    ΔV_n = V_{n+1} − V_n   for n < S,      ΔV_S = V_S − V_{S−1}   (the last slice repeats the last step),
and the enhanced volume V*_n = [V_n, ΔV_n] (DualFocus). DFV fed ΔV alone; FV feeds V alone.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dualfocus_jax.model.config import VOLUME_MODES


def focal_differences(volume_BSHWC: jax.Array) -> jax.Array:
    """ΔV along the focal axis (axis 1); (B, S, h, w, C) → (B, S, h, w, C). Needs S ≥ 2."""
    if volume_BSHWC.shape[1] < 2:
        raise ValueError(f"focal differences need at least 2 slices, got S={volume_BSHWC.shape[1]}.")
    forward = volume_BSHWC[:, 1:] - volume_BSHWC[:, :-1]  # ΔV_1 .. ΔV_{S−1}
    return jnp.concatenate([forward, forward[:, -1:]], axis=1)  # ΔV_S = V_S − V_{S−1}


def enhanced_focal_volume(volume_BSHWC: jax.Array, mode: str) -> jax.Array:
    """The volume the decoder sees; (B, S, h, w, C) → (B, S, h, w, C') with C' = 2C for "concat", else C.

    Args:
      volume_BSHWC: per-slice features V, slices sorted by focus position.
      mode: "concat" → [V, ΔV] (channels V first), "difference" → ΔV, "plain" → V.
    """
    if mode == "plain":
        return volume_BSHWC
    if mode == "difference":
        return focal_differences(volume_BSHWC)
    if mode == "concat":
        return jnp.concatenate([volume_BSHWC, focal_differences(volume_BSHWC)], axis=-1)
    raise ValueError(f"mode must be one of {VOLUME_MODES}, got {mode!r}.")
