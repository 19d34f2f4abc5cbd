"""Slice weights by the stretch of inverse focus distance each slice stands for (`DualFocusConfig.slice_prior`).

  none        p_n as the network's softmax (and unimodal projection) gives it.
  blur_cells  p_n ∝ p_n · w_n, w_n the width of slice n's cell in a blur-linear value (inverse focus distance,
              diopters, disparity); see `with_blur_cell_prior`.

NumPy only at import: the predictor's `--help` and its focus-unit checks run without JAX. The functions work on
NumPy arrays (the predictor) and on JAX arrays (the network) alike.
"""

from __future__ import annotations

import numpy as np

SLICE_PRIORS = ("none", "blur_cells")


def projects_after_weights(slice_prior: str, project_unimodal_at_inference: bool) -> bool:
    """Whether the inference-time unimodal projection must wait for the slice weights: a model with a prior that
    projects at inference projects the weighted probabilities (those its training penalty L_fv sees), so a caller
    that weights them outside the network (the predictor, the evaluation in disparities) projects them itself."""
    return project_unimodal_at_inference and slice_prior != "none"


def _array_module(array):
    if isinstance(array, np.ndarray):
        return np
    import jax.numpy as jnp  # a JAX array: JAX is imported already

    return jnp


def blur_cell_widths(blur_values_BS):
    """(B, S) width of each slice's cell along a blur-linear axis (inverse focus distance, diopters, disparity),
    relative to the stack's mean width: half the distance between its two neighbours, the full distance to
    the one neighbour at either end. Values sorted either way; NumPy arrays in, NumPy out, else jnp."""
    xp = _array_module(blur_values_BS)
    gaps = xp.abs(xp.diff(blur_values_BS, axis=1))
    widths = xp.concatenate([gaps[:, :1], (gaps[:, :-1] + gaps[:, 1:]) / 2, gaps[:, -1:]], axis=1)
    return widths / xp.mean(widths, axis=1, keepdims=True)


def with_blur_cell_prior(prob_BSHW, blur_values_BS):
    """p_n · w_n / Σ_m p_m · w_m, w = `blur_cell_widths` (NumPy in, NumPy out, else jnp).

    Why: the network's costs say how sharp each slice is. Where several slices are about equally sharp (inside
    the depth of field, or between two slices) the depths left possible are spread evenly in blur, i.e. in
    inverse distance, not evenly over the slices; a slice standing for a wider stretch of inverse distance
    carries more of them. Without the weights, a stack spaced evenly in metres (slices crowded at the far end
    in inverse distance) comes out biased far, and one spaced evenly in diopters would not: the network,
    which never sees the focus values, cannot tell the two apart. For evenly blur-spaced stacks w = 1.
    """
    xp = _array_module(prob_BSHW)
    weighted = prob_BSHW * blur_cell_widths(blur_values_BS)[:, :, None, None]
    return weighted / xp.sum(weighted, axis=1, keepdims=True)
