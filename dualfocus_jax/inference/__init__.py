"""Depth from a user's own focal stack: checkpoint loading, slice alignment, prediction, output files.

    from dualfocus_jax.inference import run_prediction
    run_prediction("photos/", "out/", focus_distances=[0.5, 0.65, 0.8, 0.95, 1.3])

`python -m dualfocus_jax.predict` is the command-line entry.
"""

from dualfocus_jax.inference.alignment import SliceAlignment, align_focal_stack, warp_similarity
from dualfocus_jax.inference.checkpoint_io import (
    DEFAULT_CHECKPOINT,
    CheckpointError,
    load_exported_checkpoint,
    save_exported_checkpoint,
)
from dualfocus_jax.inference.depth_prediction import METHODS, DepthPrediction, predict_depth
from dualfocus_jax.inference.focus_units import (
    MAX_LINEAR_SPAN,
    FocusWorkingUnits,
    depth_from_slice_probabilities,
    focus_working_units,
)
from dualfocus_jax.inference.pipeline import parse_focus_distances, run_prediction
from dualfocus_jax.inference.point_cloud import DEFAULT_FOV_DEG, depth_to_points, intrinsics_from_fov, write_ply

__all__ = [
    "DEFAULT_CHECKPOINT",
    "DEFAULT_FOV_DEG",
    "MAX_LINEAR_SPAN",
    "METHODS",
    "CheckpointError",
    "DepthPrediction",
    "FocusWorkingUnits",
    "SliceAlignment",
    "align_focal_stack",
    "depth_from_slice_probabilities",
    "depth_to_points",
    "focus_working_units",
    "intrinsics_from_fov",
    "load_exported_checkpoint",
    "parse_focus_distances",
    "predict_depth",
    "run_prediction",
    "save_exported_checkpoint",
    "warp_similarity",
    "write_ply",
]
