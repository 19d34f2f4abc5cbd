"""Training losses of DualFocus: L = L_depth + λ_sv L_sv + λ_fv L_fv (docs/design/METHOD.md "Losses").

* L_depth: smooth-L1 between each deep-supervision level's depth and the ground truth D*, on pixels whose
  D* is valid and lies in [f_1, f_S], averaged over those pixels of the batch, levels weighted
  8/15, 4/15, 2/15, 1/15 finest first (DFV). In the unit of the focus positions, as in DFV, so
  `smooth_l1_beta` is in that unit too.
* L_sv, spatial variational loss: Σ_{x,n} q_n(x) ‖∇D*(x) − θ(z*_n)(x)‖₁ at the solver's resolution, with
  in-focus weights q_n(x) = softmax_n(−|f_n − D*(x)| / τ), τ = tau_rel · (f_S − f_1)/(S − 1) so that q does
  not flatten out when f is in small units (DDFF disparities span 0.02–0.28).
  Unit-free choice: ∇D* is the forward difference between neighbouring solver-resolution pixels divided by
  the example's focus range f_S − f_1, so L_sv (and θ's output) is the same number whether depth is in metres,
  dioptres or disparity, and λ_sv does not depend on the dataset's unit. D* reaches the solver resolution by
  validity-aware average pooling (invalid pixels excluded; a cell needs `gt_min_valid_fraction` valid pixels),
  after the same padding to a multiple of 32 that the model applies (padding counts as invalid).
  Normalisation: the mean over valid (pixel, component) pairs, times 2, i.e. the per-pixel L1 norm of the
  2-vector averaged over pixels when both components are valid.
* L_fv, focal variational loss: `focal_unimodality_penalty` of the finest p (summed over pixels per
  example), divided by the pixel count and averaged over the batch, so λ_fv does not depend on image size.

The λ defaults in `config.py` are starting points, not tuned values: L_depth is in the dataset's unit while
L_sv and L_fv are unit-free, so the experiment configs set λ per dataset.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from dualfocus_jax.model.config import PAD_MULTIPLE, DualFocusConfig
from dualfocus_jax.model.dualfocus import DualFocusOutput
from dualfocus_jax.model.padding import pad_spatial, padding_to_multiple
from dualfocus_jax.variational import focal_unimodality_penalty


def smooth_l1(error: jax.Array, beta: float) -> jax.Array:
    """0.5 e²/β where |e| < β, |e| − 0.5 β elsewhere (PyTorch's smooth_l1_loss, elementwise)."""
    magnitude = jnp.abs(error)
    return jnp.where(magnitude < beta, 0.5 * jnp.square(error) / beta, magnitude - 0.5 * beta)


def depth_supervision_mask(depth_gt_BHW: jax.Array, valid_BHW: jax.Array, focus_BS: jax.Array) -> jax.Array:
    """Pixels supervised by L_depth: valid, finite and within [min_n f_n, max_n f_n]; (B, H, W) bool."""
    low = jnp.min(focus_BS, axis=1)[:, None, None]
    high = jnp.max(focus_BS, axis=1)[:, None, None]
    finite = jnp.isfinite(depth_gt_BHW)
    return valid_BHW.astype(bool) & finite & (depth_gt_BHW >= low) & (depth_gt_BHW <= high)


def depth_loss(depth_levels, depth_gt_BHW: jax.Array, mask_BHW: jax.Array, *,
               level_weights=(8 / 15, 4 / 15, 2 / 15, 1 / 15), beta: float = 1.0) -> jax.Array:
    """L_depth: Σ_l w_l · mean over masked pixels of the batch of smooth_l1(D_l − D*); a scalar.

    Args:
      depth_levels: sequence of (B, H, W) depths, finest first, as many as level_weights.
      depth_gt_BHW: ground truth, same unit; values at unmasked pixels are ignored (NaN allowed).
      mask_BHW: pixels to supervise (see `depth_supervision_mask`).
    An empty mask gives 0 (with zero gradients) rather than NaN.
    """
    if len(depth_levels) != len(level_weights):
        raise ValueError(f"got {len(depth_levels)} depth levels but {len(level_weights)} level weights.")
    mask = mask_BHW.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    target = jnp.where(mask_BHW, depth_gt_BHW, 0.0)
    total = jnp.zeros((), jnp.float32)
    for weight, depth in zip(level_weights, depth_levels):
        error = jnp.where(mask_BHW, depth - target, 0.0)
        total = total + weight * jnp.sum(smooth_l1(error, beta) * mask) / count
    return total


def in_focus_weights(depth_BHW: jax.Array, focus_BS: jax.Array, tau_rel: float) -> jax.Array:
    """q_n(x) = softmax_n(−|f_n − D(x)| / τ), τ = tau_rel · (max f − min f)/(S − 1); (B, S, H, W).

    Sums to 1 over n at every pixel and peaks at the focus position nearest to D(x).
    """
    num_slices = focus_BS.shape[1]
    spacing = (jnp.max(focus_BS, axis=1) - jnp.min(focus_BS, axis=1)) / (num_slices - 1)
    tau = tau_rel * jnp.maximum(spacing, jnp.finfo(jnp.float32).tiny)[:, None, None, None]
    distance = jnp.abs(focus_BS[:, :, None, None] - depth_BHW[:, None])
    return jax.nn.softmax(-distance / tau, axis=1)


def downsample_depth_with_mask(depth_BHW: jax.Array, valid_BHW: jax.Array, factor: int,
                               min_valid_fraction: float = 0.5) -> tuple[jax.Array, jax.Array]:
    """Average of the valid pixels in each factor×factor cell; (B, H, W) → (B, H/f, W/f) depth and bool.

    H and W must be multiples of factor. A cell is valid when at least `min_valid_fraction` of its pixels
    are; its depth is the mean over its valid pixels only, so invalid zeros never drag depths down.
    """
    b, h, w = depth_BHW.shape
    if h % factor or w % factor:
        raise ValueError(f"depth of size {h}×{w} is not a multiple of the downsampling factor {factor}.")
    valid = valid_BHW.astype(bool) & jnp.isfinite(depth_BHW)
    weight = valid.astype(jnp.float32)
    values = jnp.where(valid, depth_BHW, 0.0)
    cells = (b, h // factor, factor, w // factor, factor)
    count = jnp.sum(weight.reshape(cells), axis=(2, 4))
    total = jnp.sum(values.reshape(cells), axis=(2, 4))
    depth = total / jnp.maximum(count, 1.0)
    return depth, count >= min_valid_fraction * factor * factor


def unit_free_depth_gradients(depth_BHW: jax.Array, valid_BHW: jax.Array, focus_range_B: jax.Array):
    """Forward differences of depth divided by the focus range; returns (gradient, valid), (B, H, W, 2) each.

    Component 0 is along W (x), D[i, j+1] − D[i, j]; component 1 along H (y), D[i+1, j] − D[i, j] — the
    convention of `dualfocus_jax.variational`. The last column (x) and row (y) have no difference: invalid.
    A difference is valid when both of its pixels are.
    """
    scale = 1.0 / jnp.maximum(focus_range_B, jnp.finfo(jnp.float32).tiny)[:, None, None]
    gx = jnp.pad((depth_BHW[:, :, 1:] - depth_BHW[:, :, :-1]), ((0, 0), (0, 0), (0, 1))) * scale
    gy = jnp.pad((depth_BHW[:, 1:, :] - depth_BHW[:, :-1, :]), ((0, 0), (0, 1), (0, 0))) * scale
    vx = jnp.pad(valid_BHW[:, :, 1:] & valid_BHW[:, :, :-1], ((0, 0), (0, 0), (0, 1)))
    vy = jnp.pad(valid_BHW[:, 1:, :] & valid_BHW[:, :-1, :], ((0, 0), (0, 1), (0, 0)))
    return jnp.stack([gx, gy], axis=-1), jnp.stack([vx, vy], axis=-1)


def spatial_variational_loss(surface_gradients_BSHW2: jax.Array, depth_gt_BHW: jax.Array, valid_BHW: jax.Array,
                             focus_BS: jax.Array, *, stride: int, tau_rel: float,
                             min_valid_fraction: float = 0.5) -> jax.Array:
    """L_sv (see the module docstring); a scalar.

    Args:
      surface_gradients_BSHW2: θ output (B, S, h, w, 2) on the model's padded grid at 1/stride, slices in
        the order of focus_BS (the model's sorted `focus_positions`).
      depth_gt_BHW, valid_BHW: ground truth at input resolution (B, H, W) and its validity.
      focus_BS: (B, S) focus positions (sorted, as returned by the model).
      stride: the solver stride of the config.
    """
    b, h, w = depth_gt_BHW.shape
    pads = padding_to_multiple(h, w, PAD_MULTIPLE)
    depth = pad_spatial(jnp.where(valid_BHW, depth_gt_BHW, 0.0), pads, spatial_axes=(1, 2), mode="constant")
    valid = pad_spatial(valid_BHW.astype(bool), pads, spatial_axes=(1, 2), mode="constant", constant=False)
    expected = (b, focus_BS.shape[1], depth.shape[1] // stride, depth.shape[2] // stride, 2)
    if tuple(surface_gradients_BSHW2.shape) != expected:
        raise ValueError(
            f"surface_gradients has shape {tuple(surface_gradients_BSHW2.shape)}, expected {expected} for ground "
            f"truth of size {h}×{w} at solver stride {stride}; pass the model's outputs and the config it used."
        )
    depth_low, valid_low = downsample_depth_with_mask(depth, valid, stride, min_valid_fraction)
    focus_range = jnp.max(focus_BS, axis=1) - jnp.min(focus_BS, axis=1)
    target, target_valid = unit_free_depth_gradients(depth_low, valid_low, focus_range)
    weights = in_focus_weights(depth_low, focus_BS, tau_rel)  # (B, S, h, w)

    error = jnp.abs(surface_gradients_BSHW2 - target[:, None])  # (B, S, h, w, 2)
    weighted = jnp.sum(weights[..., None] * error, axis=1)  # Σ_n q_n |·|, (B, h, w, 2)
    mask = target_valid.astype(jnp.float32)
    count = jnp.maximum(jnp.sum(mask), 1.0)
    return 2.0 * jnp.sum(jnp.where(target_valid, weighted, 0.0)) / count


def focal_variational_loss(prob_BSHW: jax.Array) -> jax.Array:
    """L_fv per pixel, averaged over the batch; a scalar (unit: probability²)."""
    pixels = prob_BSHW.shape[2] * prob_BSHW.shape[3]
    return jnp.mean(focal_unimodality_penalty(prob_BSHW, axis=1)) / pixels


def dualfocus_loss(outputs: DualFocusOutput, depth_gt_BHW: jax.Array, valid_BHW: jax.Array,
                   config: DualFocusConfig) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The total training loss and its components.

    Args:
      outputs: `DualFocusNet.apply(..., train=True)` outputs.
      depth_gt_BHW: (B, H, W) ground-truth depth in the unit of the focus positions.
      valid_BHW: (B, H, W) bool, pixels with ground truth.
      config: the model's config (λ_sv, λ_fv, τ, level weights, solver stride).

    Returns (total, components) with components "depth", "focal" (reported even when λ_fv = 0), "spatial"
    (spatial variants only) and "total".
    """
    depth = outputs.depth
    if tuple(depth_gt_BHW.shape) != tuple(depth.shape):
        raise ValueError(f"depth_gt has shape {tuple(depth_gt_BHW.shape)}, the prediction {tuple(depth.shape)}; "
                         "pass ground truth at the input resolution, (B, H, W).")
    if tuple(valid_BHW.shape) != tuple(depth.shape):
        raise ValueError(f"valid mask has shape {tuple(valid_BHW.shape)}, expected {tuple(depth.shape)}.")
    if config.use_spatial and outputs.surface_gradients is None:
        raise ValueError("config.use_spatial is set but outputs have no surface_gradients; use the same config "
                         "for the model and the loss.")
    focus = outputs.focus_positions
    valid = valid_BHW.astype(bool)

    mask = depth_supervision_mask(depth_gt_BHW, valid, focus)
    components = {"depth": depth_loss(outputs.depth_levels, depth_gt_BHW, mask,
                                      level_weights=config.level_weights, beta=config.smooth_l1_beta)}
    total = components["depth"]
    if config.use_spatial:
        components["spatial"] = spatial_variational_loss(
            outputs.surface_gradients, depth_gt_BHW, valid, focus, stride=config.solver_stride,
            tau_rel=config.tau_rel, min_valid_fraction=config.gt_min_valid_fraction)
        total = total + config.lambda_sv * components["spatial"]
    components["focal"] = focal_variational_loss(outputs.prob)
    total = total + config.lambda_fv * components["focal"]
    components["total"] = total
    return total, components
