"""Where a drawn stack is focused: how many slices, how they are spaced, and how much of the scene they cover.

All in diopters (1 / metres) internally, since blur is linear in diopters. Spacings:

* `distance`: evenly spaced in metres (what most capture apps and the NYUv2/ARKitScenes protocols do);
* `diopter`: evenly spaced in inverse distance (a lens motor stepping its focus ring, DDFF-12, light fields);
* `irregular`: sorted random positions with a minimum gap (a hand-picked or phone-bracketed stack).

Coverage of the scene's diopter span [D_far, D_near]:

* `bracket`: from about the farthest to about the nearest surface (±5% of the span);
* `cut_near` / `cut_far`: the nearest / farthest 15–40% of the scene lie beyond the first / last slice;
* `partial`: both ends cut, the slices cover 40–70% of the scene;
* `beyond`: the slices extend 10–30% past the scene at both ends.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SPACINGS = ("distance", "diopter", "irregular")
COVERAGES = ("bracket", "cut_near", "cut_far", "partial", "beyond")
COVERAGE_WEIGHTS = (0.5, 0.13, 0.13, 0.09, 0.15)


@dataclasses.dataclass(frozen=True)
class FocusSchedule:
    """focus_m: (S,) ascending focus distances, metres; spacing, coverage: how they were drawn."""

    focus_m: np.ndarray
    spacing: str
    coverage: str


def focus_diopter_range(rng: np.random.Generator, far_diopter: float, near_diopter: float, coverage: str,
                        max_diopter: float) -> tuple[float, float]:
    """(lowest, highest) focus diopter for a scene spanning [far_diopter, near_diopter] under `coverage`."""
    span = near_diopter - far_diopter
    if coverage == "bracket":
        low, high = far_diopter + rng.uniform(-0.05, 0.05) * span, near_diopter + rng.uniform(-0.05, 0.05) * span
    elif coverage == "cut_near":
        low, high = far_diopter + rng.uniform(-0.05, 0.05) * span, near_diopter - rng.uniform(0.15, 0.4) * span
    elif coverage == "cut_far":
        low, high = far_diopter + rng.uniform(0.15, 0.4) * span, near_diopter + rng.uniform(-0.05, 0.05) * span
    elif coverage == "partial":
        width = rng.uniform(0.4, 0.7) * span
        low = far_diopter + rng.uniform(0.0, span - width)
        high = low + width
    elif coverage == "beyond":
        low, high = far_diopter - rng.uniform(0.1, 0.3) * span, near_diopter + rng.uniform(0.1, 0.3) * span
    else:
        raise ValueError(f"coverage must be one of {COVERAGES}, got {coverage!r}.")
    # Focus at or beyond infinity is not a distance; the nearest focus is bounded by the lens.
    low = max(low, 0.02 * span, 1e-3)
    high = min(high, max_diopter)
    return low, max(high, low + 0.05 * span)


def spaced_diopters(rng: np.random.Generator, low: float, high: float, num_slices: int, spacing: str) -> np.ndarray:
    """(S,) diopters in [low, high], descending (so distances ascend), both ends included."""
    if spacing == "diopter":
        diopters = np.linspace(high, low, num_slices)
    elif spacing == "distance":
        diopters = 1.0 / np.linspace(1.0 / high, 1.0 / low, num_slices)
    elif spacing == "irregular":
        # Gaps drawn from a Dirichlet with a floor: no two slices closer than a fifth of the even gap.
        gaps = rng.dirichlet(np.full(num_slices - 1, 1.5))
        gaps = 0.2 / (num_slices - 1) + 0.8 * gaps
        positions = np.concatenate([[0.0], np.cumsum(gaps)])
        positions /= positions[-1]
        if rng.random() < 0.5:  # irregular in metres rather than in diopters
            diopters = 1.0 / (1.0 / high + positions * (1.0 / low - 1.0 / high))
        else:
            diopters = high - positions * (high - low)
    else:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}.")
    return diopters


def draw_focus_schedule(rng: np.random.Generator, far_diopter: float, near_diopter: float, num_slices: int,
                        max_diopter: float, *, spacing: str | None = None, coverage: str | None = None
                        ) -> FocusSchedule:
    """A focus schedule of `num_slices` for a scene spanning [far_diopter, near_diopter] (None draws the kind)."""
    spacing = spacing or str(rng.choice(SPACINGS, p=[0.35, 0.35, 0.3]))
    coverage = coverage or str(rng.choice(COVERAGES, p=COVERAGE_WEIGHTS))
    low, high = focus_diopter_range(rng, far_diopter, near_diopter, coverage, max_diopter)
    diopters = spaced_diopters(rng, low, high, num_slices, spacing)
    return FocusSchedule(focus_m=(1.0 / diopters).astype(np.float64), spacing=spacing, coverage=coverage)
