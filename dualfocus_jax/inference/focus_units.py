"""How the focus positions of a user's stack become the values depth is computed in.

The network never sees focus values: it sorts the slices by focus position and outputs, per pixel, a
probability p_s over the slices; depth is the expectation Σ_s p_s·f_s (METHOD.md). So the unit of the
focus positions (metres, centimetres, the relative units of a phone's focus motor) only matters for the
expectation, and depth comes out in that unit. What matters to the network is the slice ORDER: it was
trained on slices sorted near to far (ascending distance), so that is the order it always gets.

The rule for wide spans: when the focus distances span more than `MAX_LINEAR_SPAN` (max/min > 10, e.g. one
slice near infinity), a plain expectation over distances is dominated by the far slices (a 50/50 mixture
of 0.1 and 100 is 50, not "somewhere near"), and a slice "at infinity" has no useful distance at all.
Blur is linear in inverse distance (diopters, for distances in metres), so the expectation is taken over
inverse distances 1/f instead and converted back: depth = 1 / Σ_s p_s/f_s, uncertainty (a standard
deviation) by first-order propagation σ_d = σ_{1/f} · d². Depth stays in the unit of the focus positions
either way; the working unit is reported in the command's output and summary.
"""

from __future__ import annotations

import dataclasses

import numpy as np

MAX_LINEAR_SPAN = 10.0


@dataclasses.dataclass(frozen=True)
class FocusWorkingUnits:
    """Focus positions as used for the expectation.

    values_S: per slice (in the stack's near-to-far order), the value the expectation runs over: the focus
      distance itself ("distance") or its inverse ("inverse distance").
    mode: "distance" or "inverse distance".
    span: max/min of the focus distances.
    """

    values_S: np.ndarray
    mode: str
    span: float

    def describe(self, unit: str) -> str:
        if self.mode == "distance":
            return f"expectation over focus distances (span {self.span:.1f}x <= {MAX_LINEAR_SPAN:g}x), depth in {unit}"
        return (f"focus distances span {self.span:.1f}x > {MAX_LINEAR_SPAN:g}x: expectation over inverse distance "
                f"(1/{unit}), converted back, depth in {unit}")


def focus_working_units(focus_distances_S) -> FocusWorkingUnits:
    """Picks the working values for focus distances sorted ascending (near to far), by the span rule above.

    Raises ValueError for non-finite, non-positive (a distance must be > 0) or unsorted values.
    """
    focus = np.asarray(focus_distances_S, np.float64)
    if focus.ndim != 1 or focus.size < 2:
        raise ValueError(f"need at least 2 focus distances in a 1-D list, got shape {focus.shape}.")
    if not np.all(np.isfinite(focus)):
        raise ValueError(f"focus distances must be finite, got {focus.tolist()}; give a slice focused at "
                         "infinity a large finite distance (e.g. 100x the farthest other one) or drop it.")
    if np.any(focus <= 0):
        raise ValueError(f"focus distances must be > 0 (distances from the camera), got {focus.tolist()}; if "
                         "they are diopters (inverse distances), convert them with 1/value first.")
    if np.any(np.diff(focus) <= 0):
        raise ValueError(f"focus distances must be sorted ascending and distinct, got {focus.tolist()}.")
    span = float(focus[-1] / focus[0])
    if span > MAX_LINEAR_SPAN:
        return FocusWorkingUnits(1.0 / focus, "inverse distance", span)
    return FocusWorkingUnits(focus, "distance", span)


def depth_from_slice_probabilities(prob_SHW: np.ndarray, units: FocusWorkingUnits) -> tuple[np.ndarray, np.ndarray]:
    """(depth (H, W), uncertainty (H, W)) in the unit of the focus distances from per-slice probabilities.

    uncertainty is the standard deviation of the distance under p (mode "distance") or its first-order
    propagation from the standard deviation of the inverse distance (mode "inverse distance").
    """
    prob = np.asarray(prob_SHW, np.float64)
    values = units.values_S[:, None, None]
    mean = np.sum(prob * values, axis=0)
    std = np.sqrt(np.maximum(np.sum(prob * (values - mean) ** 2, axis=0), 0.0))
    if units.mode == "distance":
        return mean.astype(np.float32), std.astype(np.float32)
    # mean ≥ min(1/f) > 0, so the conversion back is finite and within [f_min, f_max].
    depth = 1.0 / mean
    return depth.astype(np.float32), (std * depth ** 2).astype(np.float32)
