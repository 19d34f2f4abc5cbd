"""Depth, uncertainty and an all-in-focus image from one focal stack, by the network or the classical method.

Both methods produce per-pixel weights over the slices, and depth is computed from them in the working
units of `focus_units.py` (distance, inverse distance for wide focus spans, diopter, disparity or slice
index), so the two methods treat a user's focus values the same way. The network always gets the slices
near to far (the order it was trained on); for diopters and disparities that is descending value.

Slice counts: any S >= 2 runs unchanged (the encoder is per slice, the decoder 3D-convolutional along the
slice axis); the shipped network was trained on 3, 5, 7, 10 and 16 slices (experiments/results/generalisation/
scores it per slice count), and keeping every slice of a long stack works as well as choosing a subset (the
same tables). Image size: any; the
model pads to a multiple of 32 internally and crops back. It is traced and compiled once per (S, H, W)
(traced_network.py keeps both between processes).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import numpy as np

from dualfocus_jax.classical import FOCUS_MEASURES, estimate_depth_classical, focus_distribution
from dualfocus_jax.inference.defocus_refinement import BlurFit, refine_with_defocus
from dualfocus_jax.inference.focus_units import (
    ORDER_UNIT,
    FocusWorkingUnits,
    depth_from_slice_probabilities,
    focus_working_units,
    from_inverse_distance,
    with_slice_prior,
)
from dualfocus_jax.inference.traced_network import CheckpointNetwork, network_probabilities
from dualfocus_jax.slice_prior import projects_after_weights
from dualfocus_jax.variational import project_unimodal

if TYPE_CHECKING:  # the model package imports Flax, which a prediction from stored programs does not need
    from dualfocus_jax.model import DualFocusConfig

METHODS = ("network", "classical")


@dataclasses.dataclass(frozen=True)
class DepthPrediction:
    """depth_HW, uncertainty_HW: float32, in the unit of the focus positions; all_in_focus_HWC in [0, 1];
    units: how the focus positions were used (see focus_units.py); weights_SHW: the per-pixel weight of each
    slice, in the order the slices were given (ascending focus position), summing to 1 (the all-in-focus
    image is Σ_s w_s I_s); defocus_fit: the stack's blur model when the defocus refinement ran (its `applied`
    says whether it changed the depth), else None."""

    depth_HW: np.ndarray
    uncertainty_HW: np.ndarray
    all_in_focus_HWC: np.ndarray
    units: FocusWorkingUnits
    weights_SHW: np.ndarray | None = None
    defocus_fit: BlurFit | None = None
    defocus_applied: bool = False


def predict_depth(images_SHWC: np.ndarray, focus_distances_S: np.ndarray, *, method: str = "network",
                  params: dict | None = None, config: DualFocusConfig | None = None,
                  focus_unit: str = "distance", network: CheckpointNetwork | None = None,
                  flips: bool = False, defocus_refinement: bool = False) -> DepthPrediction:
    """Depth from a focal stack sorted by ascending focus position (as a `FocalStack` holds it).

    Args:
      images_SHWC: (S, H, W, 3) float32 in [0, 1].
      focus_distances_S: (S,) ascending focus positions in `focus_unit` (distances > 0 in any length unit;
        diopters and disparities of any sign; for "order", 0 = nearest .. S-1 = farthest).
      method: "network" (needs params and config, or network) or "classical" (`estimate_depth_classical`,
        refined).
      focus_unit: "distance", "diopter", "disparity" or "order" (focus_units.py).
      network: for "network", a checkpoint from `traced_network.load_network` instead of params and config
        (what the predictor passes: it may run from stored parameters and programs without Flax).
      flips: for "network", average the probabilities over the stack and its three mirror images (left-right,
        up-down, both), each mirrored back: 4× the network time; the result mirrors exactly with the input.
      defocus_refinement: for "network", refine its depth by the blur each slice shows (defocus_refinement.py:
        the network's depth is the prior, a re-blurred all-in-focus image the likelihood). Needs focus values
        (not "order", where it is skipped); left as the network gave it where the stack shows no usable blur.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}.")
    if flips and method != "network":
        raise ValueError(f"flips averages the network over mirror images; method {method!r} does not use it.")
    if defocus_refinement and method != "network":
        raise ValueError(f"defocus_refinement refines the network's depth; method {method!r} does not use it.")
    images = np.asarray(images_SHWC, np.float32)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] != np.size(focus_distances_S):
        raise ValueError(f"images must be (S, H, W, 3) with S = number of focus distances "
                         f"({np.size(focus_distances_S)}), got {images.shape}.")
    if method == "network" and network is None and (params is None or config is None):
        raise ValueError("method 'network' needs params and config (load_exported_checkpoint()) or a network "
                         "(traced_network.load_network()).")
    expectation, slice_prior, projects = "focus", "none", False
    if method == "network":
        expectation = network.expectation if network is not None else config.expectation
        slice_prior = network.slice_prior if network is not None else config.slice_prior
        projects = projects_after_weights(slice_prior, network.project_unimodal_at_inference if network is not None
                                          else config.project_unimodal_at_inference)
    units = focus_working_units(focus_distances_S, focus_unit, expectation)
    near_to_far = units.near_to_far_S
    back_to_given = np.argsort(near_to_far)  # near-to-far index -> given (ascending) index
    if method == "network":
        stack = jnp.asarray(images[near_to_far])
        if network is not None:
            run = network.probabilities
        else:
            def run(images):
                return network_probabilities(params, config, images)
        prob, aif = _mirror_averaged(run, stack) if flips else run(stack)
        prob = np.asarray(prob)
        # Depth from the weighted probabilities, projected here when the network left that to follow the
        # weights; the all-in-focus weights stay as the network blends them.
        weighted = with_slice_prior(prob, units, slice_prior)
        if projects:
            weighted = np.asarray(_project_slices(jnp.asarray(weighted, jnp.float32)), np.float64)
        depth, uncertainty = depth_from_slice_probabilities(weighted, units)
        aif = np.clip(np.asarray(aif, np.float32), 0, 1)
        fit, applied = None, False
        if defocus_refinement and focus_unit != ORDER_UNIT:
            depth, uncertainty, fit, applied = _refined_by_defocus(images, focus_distances_S, focus_unit, depth,
                                                                   uncertainty, aif)
        return DepthPrediction(depth, uncertainty, aif, units, prob[back_to_given].astype(np.float32), fit, applied)
    return _classical(images[near_to_far], units, back_to_given)


def _refined_by_defocus(images_SHWC, focus_S, focus_unit: str, depth_HW, uncertainty_HW, aif_HWC):
    """(depth, uncertainty, fit, applied) after `refine_with_defocus`, in the unit of the focus positions. Blur
    is linear in inverse distance, and in diopters and disparities themselves, so distances are inverted for
    it and back (uncertainty by first-order propagation, σ_d = σ_u · d²)."""
    focus = np.asarray(focus_S, np.float64)
    depth = np.asarray(depth_HW, np.float64)
    std = np.asarray(uncertainty_HW, np.float64)
    inverse = focus_unit == "distance"
    if inverse:
        depth = np.clip(depth, focus.min(), focus.max())  # the expectation stays inside the focus range
        focus, std, depth = 1.0 / focus, std / depth ** 2, 1.0 / depth
    result = refine_with_defocus(np.asarray(images_SHWC, np.float32).mean(-1), aif_HWC.mean(-1), focus, depth, std)
    refined, refined_std = np.asarray(result.u_HW, np.float64), np.asarray(result.std_u_HW, np.float64)
    if inverse:
        refined = 1.0 / refined
        refined_std = refined_std * refined ** 2
    return refined.astype(np.float32), refined_std.astype(np.float32), result.fit, result.applied


@jax.jit
def _project_slices(prob_SHW):
    return project_unimodal(prob_SHW, axis=0)


def _mirror_averaged(run, stack_SHWC):
    """(p, all-in-focus) of `run` averaged over the stack and its left-right, up-down and double mirror images,
    each output mirrored back. The four mirrors share one (S, H, W) shape, so one compiled program."""
    prob_sum, aif_sum = 0.0, 0.0
    for flip_h in (False, True):
        for flip_w in (False, True):
            prob, aif = run(_mirrored(stack_SHWC, 1, flip_h, flip_w))
            prob_sum = prob_sum + _mirrored(jnp.asarray(prob), 1, flip_h, flip_w)
            aif_sum = aif_sum + _mirrored(jnp.asarray(aif), 0, flip_h, flip_w)
    return prob_sum / 4.0, aif_sum / 4.0


def _mirrored(x, axis_h: int, flip_h: bool, flip_w: bool):
    """x reversed along axis_h (rows) and/or axis_h + 1 (columns)."""
    axes = tuple(axis for axis, flip in ((axis_h, flip_h), (axis_h + 1, flip_w)) if flip)
    return jnp.flip(x, axes) if axes else x


def _classical(images_SHWC: np.ndarray, units: FocusWorkingUnits, back_to_given: np.ndarray) -> DepthPrediction:
    """The classical baseline on slices in near-to-far order (its values need only be monotonic)."""
    result = estimate_depth_classical(jnp.asarray(images_SHWC), jnp.asarray(units.values_S, jnp.float32))
    depth = np.asarray(result.depth_HW, np.float64)
    uncertainty = np.asarray(result.uncertainty_HW, np.float64)
    if units.mode == "inverse distance":
        depth, uncertainty = from_inverse_distance(depth, uncertainty, units)  # as for the network
    aif = np.clip(np.asarray(result.all_in_focus_HWC, np.float32), 0, 1)
    # The slice weights behind its all-in-focus image (estimate_depth_classical's defaults: modified Laplacian,
    # 9 px window, temperature 0.1), for an all-in-focus image at the input's full pixel grid.
    weights = np.asarray(focus_distribution(FOCUS_MEASURES["modified_laplacian"](jnp.asarray(images_SHWC), window=9),
                                            temperature=0.1), np.float32)
    return DepthPrediction(depth.astype(np.float32), uncertainty.astype(np.float32), aif, units,
                           weights[back_to_given])
