"""The whole prediction for a folder of photos: check, load, align, predict, write (what `dualfocus-predict` runs).

Order of work: every input is checked before anything slow runs (arguments, --out, the checkpoint, the focus
values, the photos at the working resolution); then the output folder is locked, the slices aligned, depth
predicted at the working resolution, brought to the photos' own pixel grid (full_resolution.py) and all
files written atomically (output_files.py).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

from dualfocus_jax import __version__
from dualfocus_jax.compilation_cache import enable_compilation_cache
from dualfocus_jax.focal_stack import (
    FocalStackError,
    focus_positions_for_folder,
    list_stack_files,
    load_focal_stack,
    parse_focus_values,
)
from dualfocus_jax.inference.alignment import align_focal_stack
from dualfocus_jax.inference.checkpoint_io import CheckpointError, mismatch_error
from dualfocus_jax.inference.depth_prediction import METHODS, predict_depth
from dualfocus_jax.inference.focus_units import (
    DEFAULT_UNIT_LABELS,
    FOCUS_ORDERS,
    FOCUS_UNITS,
    ORDER_UNIT,
    FocusValueError,
    distance_for_point_cloud,
    focus_working_units,
)
from dualfocus_jax.inference.full_resolution import all_in_focus_at_full_resolution, resize_map
from dualfocus_jax.inference.output_files import OutputFolder, OutputFolderError, check_output_folder, write_prediction
from dualfocus_jax.inference.point_cloud import DEFAULT_FOV_DEG, depth_to_points, intrinsics_from_fov
from dualfocus_jax.inference.traced_network import NetworkMismatchError, load_network

LENGTH_UNITS = ("m", "cm", "mm", "km", "in", "ft", "metre", "metres", "meter", "meters")


class PredictionInputError(ValueError):
    """An argument of the prediction that cannot work; the message names the problem and the fix."""


# The errors that mean "this input cannot work" (each message says why and what to do): the command prints
# them as one line; anything else is a bug and keeps its traceback.
USER_ERRORS = (FocalStackError, CheckpointError, OutputFolderError, FocusValueError, PredictionInputError)


def parse_focus_distances(text: str | None):
    """None, a path to a text file (one value per line; returned as the path) or a comma list of numbers,
    each optionally with a unit ("0.5m,80cm" is refused as mixed; "0.5m,0.8m" is fine). Returns the path,
    or a list of floats (no unit) or of the strings (with a unit, for `load_focal_stack` to check)."""
    if text is None or not str(text).strip():
        return None
    text = str(text).strip()
    if os.path.isfile(text):
        return text
    items = [item.strip() for item in text.split(",")]
    try:
        values, declared = parse_focus_values(items, "--focus_distances")
    except FocalStackError as error:
        if str(error).startswith("Mixed units"):
            raise PredictionInputError(f"{error} (got --focus_distances {text!r}).") from None
        raise PredictionInputError(f"--focus_distances must be a comma-separated list of numbers or the path of an "
                                   f"existing text file; {error} (got {text!r}).") from None
    return values if declared is None else items


def run_prediction(stack_dir: str, out_dir: str, *, focus_distances=None, checkpoint: str | None = None,
                   max_size: int | None = 640, align: bool = True, method: str = "network", ply: bool = False,
                   fov_deg: float = DEFAULT_FOV_DEG, unit: str | None = None, focus_unit: str | None = None,
                   focus_order: str | None = None, full_resolution: bool = False,
                   compilation_cache: bool | str = True, flips: bool = False, defocus_refinement: bool = True,
                   log: Callable[[str], None] = print) -> dict:
    """Predicts depth for the focal stack in `stack_dir` and writes the files of `output_files.py` to `out_dir`.

    Args:
      focus_distances: None (a focus_distances.txt in the folder, else decimals in the file names, else the
        photos' EXIF focus distance), a list of numbers (one per image, natural file-name order) or a
        text-file path.
      focus_unit: "distance" (default; metres unless `unit` says otherwise), "diopter" or "disparity"; None =
        from a unit the values carry ("50cm", "2D"), else "distance".
      focus_order: "near_to_far" or "far_to_near" for a stack with no focus values: relative depth in slice
        units (0 = nearest slice). Not with focus_distances, a focus_distances.txt or a focus_unit.
      checkpoint: exported checkpoint folder; None = the shipped model. Ignored for method "classical".
      max_size: longer side in pixels of the working resolution (outputs are at the photos' own grid anyway).
      full_resolution: work at the photos' full resolution (max_size ignored; slow and memory-hungry).
      align: register the slices (alignment.py) before predicting.
      unit: label of the focus values' unit (default: m for distances, D for diopters, "disparity", "slice").
      compilation_cache: True = the persistent compilation cache in the user's cache folder
        (compilation_cache.py), a folder path = there, False = off.
      flips: network only: average over the stack's four mirror images (`predict_depth`); 4× the network time.
      defocus_refinement: network only: refine its depth by the blur each slice shows (`predict_depth`; skipped
        for a stack given by its order only, and by the classical method).
    Returns a summary dict (the metadata.json content plus the paths written).
    """
    started = time.perf_counter()
    timings: dict[str, float] = {}
    focus_unit, unit = _check_arguments(method, focus_unit, focus_order, focus_distances, unit, max_size,
                                        full_resolution, fov_deg, flips)
    if os.path.abspath(out_dir) == os.path.abspath(stack_dir):
        raise PredictionInputError(f"--out {out_dir!r} is the --stack folder: the pictures written there would be "
                                   "read as slices by the next run. Choose another --out (e.g. a sibling folder).")
    check_output_folder(out_dir)
    if isinstance(focus_distances, str):
        focus_distances = parse_focus_distances(focus_distances)
    # The focus values, their unit and the stack's files, from text and metadata only: before anything slow.
    files = list_stack_files(stack_dir)
    values, origin, declared = focus_positions_for_folder(stack_dir, files, focus_distances, focus_order=focus_order,
                                                          focus_unit=focus_unit)
    focus_unit, unit = _resolve_units(declared, origin, focus_unit, unit, focus_order)
    focus_working_units(np.sort(values), focus_unit)
    cache_dir = None
    if compilation_cache:
        cache_dir = enable_compilation_cache(compilation_cache if isinstance(compilation_cache, str) else None)
    network = None
    summary: dict = {"dualfocus_jax_version": __version__, "method": method}
    if method == "network":
        summary["mirror_averaged"] = bool(flips)
        t0 = time.perf_counter()
        # From the parameter store beside the traced programs when it holds this checkpoint (no orbax, no Flax).
        # The shape check traces the model: traced_network.py does it only when it has no stored program.
        network = load_network(checkpoint)
        summary["checkpoint"] = network.folder
        summary["model"] = f"DualFocus {network.label}"
        # Whether the slices' probabilities were weighted by their spacing (focus_units.with_slice_prior).
        summary["slice_prior"] = network.slice_prior
        timings["load_checkpoint_s"] = time.perf_counter() - t0
        log(f"[0/5] model: {summary['model']} from {summary['checkpoint']}")

    t0 = time.perf_counter()
    stack = load_focal_stack(stack_dir, focus_distances, max_size=None if full_resolution else max_size,
                             unit=unit or "", focus_order=focus_order, focus_unit=focus_unit)
    focus = np.asarray(stack.focus_positions)
    # validates the values before any heavy step; a network's expectation space decides how depth is averaged
    units = focus_working_units(focus, focus_unit, network.expectation if network is not None else "focus")
    timings["load_s"] = time.perf_counter() - t0
    output_hw = stack.original_size_hw or (stack.height, stack.width)
    shown = ", ".join(f"{f:.3g}" for f in focus) if focus_unit != ORDER_UNIT else "order only"
    log(f"[1/5] loaded {stack.num_slices} slices of {output_hw[1]}x{output_hw[0]} px from {stack_dir} (working "
        f"at {stack.width}x{stack.height}); focus {shown}{'' if focus_unit == ORDER_UNIT else ' ' + unit} from "
        f"{stack.focus_origin}; {units.describe(unit)}")
    cloud_note = None
    if ply and focus_unit in ("disparity", ORDER_UNIT):
        cloud_note = distance_for_point_cloud(np.zeros((1, 1)), units, unit)[1]
        log(f"      {cloud_note}")

    with OutputFolder(out_dir) as folder:  # locked from here on: a second run into out_dir is refused
        images = stack.images
        alignment = None
        t0 = time.perf_counter()
        if align:
            images, alignment = align_focal_stack(images)
            summary["alignment"] = {"reference_slice": alignment.reference_index,
                                    "scale": alignment.scale_S.tolist(),
                                    "shift_yx_working_px": alignment.shift_yx_S2.tolist()}
            log(f"[2/5] aligned to slice {alignment.reference_index + 1} in {time.perf_counter() - t0:.1f} s: "
                "scale " + ", ".join(f"{s:.4f}" for s in alignment.scale_S) + "; shift (px) "
                + ", ".join(f"({dy:+.1f},{dx:+.1f})" for dy, dx in alignment.shift_yx_S2))
        else:
            summary["alignment"] = None
            log("[2/5] alignment skipped (--noalign)")
        timings["align_s"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        try:
            prediction = predict_depth(images, focus, method=method, network=network, focus_unit=focus_unit,
                                       flips=flips, defocus_refinement=defocus_refinement and method == "network")
        except NetworkMismatchError as error:
            raise mismatch_error(summary["checkpoint"], error.config, error.mismatch) from None
        timings["predict_s"] = time.perf_counter() - t0
        log(f"[3/5] predicted ({method}) in {timings['predict_s']:.1f} s: depth "
            f"{np.percentile(prediction.depth_HW, 1):.3g}-{np.percentile(prediction.depth_HW, 99):.3g} {unit} "
            "(1st-99th percentile)")
        if prediction.defocus_fit is not None:
            summary["defocus_refinement"] = _defocus_summary(prediction)
            log("      " + _defocus_note(summary["defocus_refinement"]))

        t0 = time.perf_counter()
        if output_hw == (stack.height, stack.width):
            depth, uncertainty, aif = prediction.depth_HW, prediction.uncertainty_HW, prediction.all_in_focus_HWC
        else:
            depth = resize_map(prediction.depth_HW, output_hw)
            uncertainty = np.maximum(resize_map(prediction.uncertainty_HW, output_hw), 0.0)
            def aif():  # computed by write_prediction while the depth files are encoded in the background
                return all_in_focus_at_full_resolution(stack.source_files, prediction.weights_SHW, alignment,
                                                       output_hw)
        timings["full_grid_s"] = time.perf_counter() - t0
        log(f"[4/5] outputs at the photos' grid {output_hw[1]}x{output_hw[0]} px: depth and uncertainty in "
            f"{timings['full_grid_s']:.1f} s (the all-in-focus image is blended while they are written)"
            if output_hw != (stack.height, stack.width) else
            f"[4/5] outputs at the photos' grid {output_hw[1]}x{output_hw[0]} px (the working grid)")

        t0 = time.perf_counter()
        points = None
        if ply and cloud_note is None:
            z, z_unit = distance_for_point_cloud(prediction.depth_HW, units, unit)
            h, w = z.shape
            points = (depth_to_points(z, intrinsics_from_fov(h, w, fov_deg)),
                      prediction.all_in_focus_HWC.reshape(-1, 3))
            summary["point_cloud"] = {"file": "points.ply", "unit": z_unit, "grid_hw": [h, w], "fov_deg": fov_deg,
                                      "note": "one point per working-resolution pixel"
                                              + (" with diopter > 0 (1/diopter metres)" if focus_unit == "diopter"
                                                 else "")}
        elif ply:
            summary["point_cloud"] = {"file": None, "why": cloud_note}
        title = f"{os.path.basename(os.path.normpath(stack_dir))}: {method}" + (" (aligned)" if align else "")
        png_scales = write_prediction(folder, prediction, depth_HW=depth, uncertainty_HW=uncertainty,
                                      all_in_focus_HWC=aif, images_SHWC=images, focus_S=focus, unit=unit,
                                      title=title, points=points)
        folder.wait()  # the background writes
        order = units.near_to_far_S
        summary.update(
            stack=os.path.abspath(stack_dir),
            depth={"unit": unit, "focus_unit": focus_unit, "relative": units.relative,
                   "meaning": units.describe(unit), "expectation_over": units.mode,
                   "nearer_is": "larger" if focus_unit in ("diopter", "disparity") else "smaller"},
            focus_positions={"origin": stack.focus_origin, "unit": unit,
                             "near_to_far": [{"file": os.path.basename(stack.source_files[i]),
                                              "value": float(focus[i])} for i in order]},
            grid={"output_hw": list(output_hw), "working_hw": [stack.height, stack.width],
                  "full_resolution": bool(full_resolution or output_hw == (stack.height, stack.width))},
            png16=png_scales,
            compilation_cache=cache_dir)
        timings["write_s"] = time.perf_counter() - t0
        timings["total_s"] = time.perf_counter() - started
        summary["timings_s"] = {k.removesuffix("_s"): round(v, 3) for k, v in timings.items()}
        written = folder.commit(summary)
    log(f"[5/5] wrote {', '.join(os.path.basename(p) for p in written)} to {out_dir} "
        f"({time.perf_counter() - started:.1f} s in all)")
    summary["written"] = written
    return summary


def _defocus_summary(prediction) -> dict:
    fit = prediction.defocus_fit
    return {"applied": bool(prediction.defocus_applied), "blur_span_px": round(fit.blur_span_px, 4),
            "sharp_sigma_px": fit.sharp_sigma_px, "fit_gain": round(fit.gain, 4)}


def _defocus_note(fitted: dict) -> str:
    if fitted["applied"]:
        return (f"depth refined by the slices' blur: blur model sigma {fitted['blur_span_px']:.2f} px across the "
                f"focus range, sharp below {fitted['sharp_sigma_px']:.2f} px (explains {100 * fitted['fit_gain']:.0f}%"
                " of the slices' difference from the all-in-focus image)")
    return (f"defocus refinement not applied: the blur model explains only {100 * fitted['fit_gain']:.0f}% of the "
            "slices' difference from the all-in-focus image (the network's depth is kept)")


def _check_arguments(method, focus_unit, focus_order, focus_distances, unit, max_size, full_resolution, fov_deg,
                     flips=False):
    if method not in METHODS:
        raise PredictionInputError(f"unknown --method {method!r}; choose one of {', '.join(METHODS)}.")
    if flips and method != "network":
        raise PredictionInputError(f"--flips averages the network over the stack's mirror images; --method {method} "
                                   "does not use it. Drop --flips, or use --method network.")
    if focus_unit is not None and focus_unit not in FOCUS_UNITS:
        raise PredictionInputError(f"unknown --focus_unit {focus_unit!r}; choose one of {', '.join(FOCUS_UNITS)}.")
    if focus_order is not None:
        if focus_order not in FOCUS_ORDERS:
            raise PredictionInputError(f"unknown --focus_order {focus_order!r}; "
                                       f"choose one of {', '.join(FOCUS_ORDERS)}.")
        if focus_distances is not None:
            raise PredictionInputError("--focus_order is for stacks without focus values, but --focus_distances gives "
                             "values; pass one or the other.")
        if focus_unit is not None:
            raise PredictionInputError(f"--focus_order gives relative depth in slice units; --focus_unit {focus_unit} "
                                       "needs focus values. Pass the values (without --focus_order) or drop "
                                       "--focus_unit.")
        if unit is not None:
            raise PredictionInputError("--focus_order gives relative depth in slice units; drop --unit.")
    if focus_unit == "diopter" and unit not in (None, "D", "dpt", "1/m"):
        raise PredictionInputError(f"diopters are 1/m by definition; drop --unit {unit} "
                                   "(depth comes out in diopters, D).")
    if focus_unit == "disparity" and unit is not None and unit.lower() in LENGTH_UNITS:
        raise PredictionInputError(f"--unit {unit} is a length, but disparities are not distances; drop --unit (or "
                                   "name the disparity unit, e.g. --unit px), or give distances with --focus_unit "
                                   "distance.")
    if not full_resolution and (isinstance(max_size, bool) or not isinstance(max_size, (int, np.integer))
                                or max_size < 8):
        raise PredictionInputError(f"--max_size must be an integer >= 8 pixels, got {max_size!r}.")
    if not 0.0 < float(fov_deg) < 180.0:
        raise PredictionInputError(f"--fov_deg must be in (0, 180) degrees, got {fov_deg!r}.")
    return focus_unit, unit


def _resolve_units(declared, origin, focus_unit, unit, focus_order):
    """(focus unit, unit label) from the arguments and the unit the values themselves declare (`declared`,
    from `origin`), or a FocalStackError on a contradiction ("mixed units")."""
    if focus_order is not None:
        return ORDER_UNIT, DEFAULT_UNIT_LABELS[ORDER_UNIT]
    if declared is not None:
        kind, label = declared
        if focus_unit is not None and focus_unit != kind:
            raise FocalStackError(f"Mixed units: the focus values ({origin}) are {kind}s ({label}), but "
                                  f"--focus_unit is {focus_unit}. Drop --focus_unit or give the values as "
                                  f"{focus_unit}s.")
        if unit is not None and unit != label and not (kind == "diopter" and unit in ("D", "dpt", "1/m")):
            raise FocalStackError(f"Mixed units: the focus values ({origin}) are in {label}, but --unit is "
                                  f"{unit}. Drop --unit or convert the values to {unit}.")
        return kind, label
    focus_unit = focus_unit or "distance"
    return focus_unit, unit or DEFAULT_UNIT_LABELS[focus_unit]
