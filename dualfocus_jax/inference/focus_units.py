"""How the focus positions of a user's stack become the values depth is computed in.

The network never sees focus values: it takes the slices in near-to-far order and outputs, per pixel, a
probability p_s over the slices; depth is the expectation Σ_s p_s·v_s over working values v_s (docs/design/METHOD.md).
So the unit of the focus positions only matters for the expectation (and, for a model with a slice prior, for
the slices' weights, `with_slice_prior`), and depth comes out in that unit. What
matters to the network is the slice ORDER: it was trained on slices sorted near to far, so that is the order it
always gets. Which way is near depends on the kind of focus value (`FOCUS_UNITS`):

  distance   distance from the camera (> 0; metres unless --unit says otherwise): near = small.
  diopter    inverse distance in 1/m (may be 0 = infinity, or negative): near = LARGE.
  disparity  light-field / stereo disparity (any sign; d = b·f/z + const): near = LARGE.
  order      no values, only the slice order (--focus_order): positions 0 (nearest) .. S-1 (farthest)
             in slice units; depth is relative.

The rule for wide distance spans: when the focus distances span more than `MAX_LINEAR_SPAN` (max/min > 10,
e.g. one slice near infinity), a plain expectation over distances is dominated by the far slices (a 50/50
mixture of 0.1 and 100 is 50, not "somewhere near"), and a slice "at infinity" has no useful distance at all.
Blur is linear in inverse distance (diopters, for distances in metres), so the expectation is taken over
inverse distances 1/f instead and converted back: depth = 1 / Σ_s p_s/f_s, uncertainty (a standard
deviation) by first-order propagation σ_d = σ_{1/f} · d². Depth stays in the unit of the focus positions
either way. Diopters and disparities are already linear in blur, and slice indices are what they are, so
their expectation is always linear.

A network trained with its expectation over inverse focus distance (`DualFocusConfig.expectation =
"inverse_focus"`, focus_statistics.py) gets inverse distances for every distance stack, whatever the span:
its probabilities were learnt for that expectation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dualfocus_jax.slice_prior import SLICE_PRIORS, with_blur_cell_prior

MAX_LINEAR_SPAN = 10.0
FOCUS_UNITS = ("distance", "diopter", "disparity")
FOCUS_ORDERS = ("near_to_far", "far_to_near")
ORDER_UNIT = "order"  # the focus unit of a stack given by its order only
# Unit labels when --unit is not given.
DEFAULT_UNIT_LABELS = {"distance": "m", "diopter": "D", "disparity": "disparity", ORDER_UNIT: "slice"}
_NEAR_IS_LARGE = {"distance": False, "diopter": True, "disparity": True, ORDER_UNIT: False}


class FocusValueError(ValueError):
    """Focus values that cannot be used as the given kind; the message says why and what to pass instead."""


@dataclasses.dataclass(frozen=True)
class FocusWorkingUnits:
    """Focus positions as used for the expectation.

    values_S: per slice in NEAR-TO-FAR order, the value the expectation runs over (the focus value itself,
      or its inverse for mode "inverse distance").
    mode: "distance", "inverse distance", "diopter", "disparity" or "slice index".
    span: max/min of the focus distances (distance only; NaN otherwise).
    focus_unit: one of FOCUS_UNITS or ORDER_UNIT.
    inverse_by_model: inverse distances because the model's expectation is over them (not because of the span).
    near_to_far_S: indices into the ascending focus positions giving near-to-far order (identity, or
      reversed for diopters and disparities).
    """

    values_S: np.ndarray
    mode: str
    span: float
    focus_unit: str = "distance"
    near_to_far_S: np.ndarray | None = None
    inverse_by_model: bool = False

    def describe(self, unit: str) -> str:
        if self.mode == "distance":
            return f"expectation over focus distances (span {self.span:.1f}x <= {MAX_LINEAR_SPAN:g}x), depth in {unit}"
        if self.mode == "inverse distance" and self.inverse_by_model and self.span <= MAX_LINEAR_SPAN:
            return (f"expectation over inverse distance (1/{unit}, as the model was trained), converted back, "
                    f"depth in {unit}")
        if self.mode == "inverse distance":
            return (f"focus distances span {self.span:.1f}x > {MAX_LINEAR_SPAN:g}x: expectation over inverse "
                    f"distance (1/{unit}), converted back, depth in {unit}")
        if self.mode == "slice index":
            return ("focus known by order only: RELATIVE depth in slice units (0 = nearest slice, "
                    f"{len(self.values_S) - 1} = farthest), no metric scale")
        return f"expectation over {self.mode} values (larger = nearer), depth in {unit}"

    @property
    def relative(self) -> bool:
        return self.focus_unit == ORDER_UNIT


def focus_working_units(focus_positions_S, focus_unit: str = "distance",
                        expectation: str = "focus") -> FocusWorkingUnits:
    """Working values for focus positions sorted ascending (as a `FocalStack` holds them).

    expectation: the predicting model's `DualFocusConfig.expectation` ("focus" for the classical baseline);
    "inverse_focus" puts every distance stack in inverse distance.

    Raises ValueError for unknown units, non-finite, repeated or unsorted values and, for distances, values
    that are not > 0 (the message says which --focus_unit they could be).
    """
    if focus_unit not in (*FOCUS_UNITS, ORDER_UNIT):
        raise FocusValueError(f"unknown focus unit {focus_unit!r}; choose one of {', '.join(FOCUS_UNITS)}.")
    focus = np.asarray(focus_positions_S, np.float64)
    if focus.ndim != 1 or focus.size < 2:
        raise FocusValueError(f"need at least 2 focus positions in a 1-D list, got shape {focus.shape}.")
    if not np.all(np.isfinite(focus)):
        raise FocusValueError(f"focus positions must be finite, got {focus.tolist()}; {non_finite_hint(focus_unit)}")
    if np.any(np.diff(focus) <= 0):
        raise FocusValueError(f"focus positions must be sorted ascending and distinct, got {focus.tolist()}.")
    order = np.arange(focus.size)[::-1] if _NEAR_IS_LARGE[focus_unit] else np.arange(focus.size)
    if focus_unit == "distance":
        if np.any(focus <= 0):
            raise FocusValueError(f"focus distances must be > 0 (distances from the camera), got {focus.tolist()}; "
                             "if they are diopters (inverse distances, 0 = infinity) pass --focus_unit diopter, "
                             "if they are disparities pass --focus_unit disparity.")
        span = float(focus[-1] / focus[0])
        if span > MAX_LINEAR_SPAN or expectation == "inverse_focus":
            return FocusWorkingUnits(1.0 / focus, "inverse distance", span, focus_unit, order,
                                     inverse_by_model=expectation == "inverse_focus")
        return FocusWorkingUnits(focus, "distance", span, focus_unit, order)
    mode = "slice index" if focus_unit == ORDER_UNIT else focus_unit
    return FocusWorkingUnits(focus[order], mode, float("nan"), focus_unit, order)


def non_finite_hint(focus_unit: str) -> str:
    """What to do with a slice focused at infinity, in values the command accepts for `focus_unit`."""
    if focus_unit == "diopter":
        return "a slice focused at infinity is at 0 diopters."
    if focus_unit == "distance":
        return ("give a slice focused at infinity a large finite distance (e.g. 100x the farthest other one), "
                "drop it, or give all values in diopters (infinity = 0) with --focus_unit diopter.")
    return "drop the slice, or give it a finite value."


def with_slice_prior(prob_SHW: np.ndarray, units: FocusWorkingUnits, slice_prior: str) -> np.ndarray:
    """The network's per-slice probabilities (NEAR-TO-FAR, as `units.values_S`) weighted as the model's
    `DualFocusConfig.slice_prior` asks (slice_prior.py), in this stack's blur-linear value: inverse
    distance for distances, the value itself for diopters and disparities. A stack known by its order only
    has no spacing to weight by: its probabilities come back unchanged."""
    if slice_prior not in SLICE_PRIORS:
        raise ValueError(f"slice_prior must be one of {SLICE_PRIORS}, got {slice_prior!r}.")
    if slice_prior == "none" or units.mode == "slice index":
        return prob_SHW
    blur_values = 1.0 / units.values_S if units.mode == "distance" else units.values_S
    return with_blur_cell_prior(np.asarray(prob_SHW, np.float64)[None], np.asarray(blur_values, np.float64)[None])[0]


def depth_from_slice_probabilities(prob_SHW: np.ndarray, units: FocusWorkingUnits) -> tuple[np.ndarray, np.ndarray]:
    """(depth (H, W), uncertainty (H, W)) in the unit of the focus positions from per-slice probabilities
    over the slices in NEAR-TO-FAR order (the order of `units.values_S`).

    uncertainty is the standard deviation of the value under p, or for mode "inverse distance" its first-order
    propagation from the standard deviation of the inverse distance.
    """
    prob = np.asarray(prob_SHW, np.float64)
    values = units.values_S[:, None, None]
    mean = np.sum(prob * values, axis=0)
    std = np.sqrt(np.maximum(np.sum(prob * (values - mean) ** 2, axis=0), 0.0))
    if units.mode != "inverse distance":
        return mean.astype(np.float32), std.astype(np.float32)
    depth, uncertainty = from_inverse_distance(mean, std, units)
    return depth.astype(np.float32), uncertainty.astype(np.float32)


def from_inverse_distance(mean_inverse: np.ndarray, std_inverse: np.ndarray, units: FocusWorkingUnits
                          ) -> tuple[np.ndarray, np.ndarray]:
    """(distance, its standard deviation) from an inverse distance and its standard deviation: d = 1 / mean,
    σ_d = σ_{1/f} · d² (first order; the model's own form is focus_statistics.depth_uncertainty). The mean is
    clipped to the working values' range, so d stays finite and within [f_min, f_max]."""
    values = units.values_S
    depth = 1.0 / np.clip(np.asarray(mean_inverse, np.float64), values.min(), values.max())
    return depth, np.asarray(std_inverse, np.float64) * depth ** 2


def distance_for_point_cloud(depth_HW: np.ndarray, units: FocusWorkingUnits, unit: str):
    """(z (H, W) for a point cloud, its unit) or (None, why not) when depth cannot become a distance.

    Distances are used as they are; diopters become metres (1/d; pixels at or beyond infinity, d <= 0, are NaN
    and left out of the cloud); disparities and slice indices have no conversion without calibration.
    """
    if units.focus_unit == "distance":
        return np.asarray(depth_HW, np.float32), unit
    if units.focus_unit == "diopter":
        depth = np.asarray(depth_HW, np.float64)
        with np.errstate(divide="ignore"):
            z = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-12), np.nan)
        return z.astype(np.float32), "m"
    if units.focus_unit == "disparity":
        return None, ("no point cloud: disparity becomes distance only with the camera's baseline and focal "
                      "length (z = b*f/d), which a focal stack does not carry; give focus distances or "
                      "diopters for a point cloud.")
    return None, ("no point cloud: a stack known by its focus order only gives relative depth in slice units, "
                  "without a metric scale; give focus distances for a point cloud.")
