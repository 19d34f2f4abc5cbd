"""Classical depth from focus: hand-crafted focus measures, per-pixel focus peak, Huber-TV refinement."""

from dualfocus_jax.classical.depth_from_focus import (
    ClassicalDepth,
    depth_from_focus_argmax,
    estimate_depth_classical,
    focus_distribution,
    peak_fit_curve,
    uncertainty_and_confidence,
)
from dualfocus_jax.classical.focus_measures import (
    FOCUS_MEASURES,
    graylevel_variance,
    modified_laplacian,
    tenengrad,
)
from dualfocus_jax.classical.variational_refinement import (
    huber_tv_energy,
    refine_depth_variational,
    refine_depth_variational_with_energy,
)

__all__ = [
    "ClassicalDepth",
    "FOCUS_MEASURES",
    "depth_from_focus_argmax",
    "estimate_depth_classical",
    "focus_distribution",
    "graylevel_variance",
    "huber_tv_energy",
    "modified_laplacian",
    "peak_fit_curve",
    "refine_depth_variational",
    "refine_depth_variational_with_energy",
    "tenengrad",
    "uncertainty_and_confidence",
]
