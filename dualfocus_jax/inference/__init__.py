"""Depth from a user's own focal stack: checkpoint loading, slice alignment, prediction, output files.

    from dualfocus_jax.inference import run_prediction
    run_prediction("photos/", "out/", focus_distances=[0.5, 0.65, 0.8, 0.95, 1.3])

`python -m dualfocus_jax.predict` (or the installed `dualfocus-predict`) is the command-line entry. The names
below are imported on first use, so importing one light submodule (focus_units, for the command's argument
parser) does not import JAX.
"""

import importlib

_SOURCES = {
    "alignment": ("SliceAlignment", "align_focal_stack", "warp_similarity"),
    "checkpoint_io": ("DEFAULT_CHECKPOINT", "CheckpointError", "load_exported_checkpoint", "save_exported_checkpoint"),
    "depth_prediction": ("METHODS", "DepthPrediction", "predict_depth"),
    "focus_units": ("MAX_LINEAR_SPAN", "FocusWorkingUnits", "depth_from_slice_probabilities", "focus_working_units",
                    "from_inverse_distance", "with_slice_prior"),
    "pipeline": ("parse_focus_distances", "run_prediction"),
    "point_cloud": ("DEFAULT_FOV_DEG", "depth_to_points", "intrinsics_from_fov", "write_ply"),
}
_WHERE = {name: module for module, names in _SOURCES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
