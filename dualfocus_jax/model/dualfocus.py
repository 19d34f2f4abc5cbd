"""DualFocusNet: focal stack in; depth, uncertainty, focus probabilities and all-in-focus image out.

Pipeline (docs/design/METHOD.md "Network"): sort the slices by focus position → pad H, W to a multiple of 32 →
ImageNet-normalise → shared 2D encoder (features at 1/32, 1/16, 1/8, 1/4) → focal volumes ([V, ΔV], ΔV or
V by variant) → optional spatial branch, whose integrable surfaces join the volume at the solver's level →
3D decoder (a cost per slice at four levels) → per level: bilinear upsampling of the costs to the input
size (the finest, optionally, guided by the colours of a first pass's all-in-focus image:
`guided_upsampling.py`, or corrected at that size from the slices' pixels: `refinement.py`), softmax
over slices, optionally p weighted by each slice's cell in inverse focus distance
(`DualFocusConfig.slice_prior`), depth as the expectation of the focus positions (or of their inverse,
`DualFocusConfig.expectation`) → at inference, optionally, the exact unimodal projection of the finest p
→ uncertainty and all-in-focus image.

The focus positions enter only the sort, the expectations and (with `slice_prior`, which needs distances)
the slice weights, so they may be in any unit (metres, dioptres, disparity) and differ per example. The
module has no mutable state: `model.apply(params, ...)` is pure.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from dualfocus_jax.focus_statistics import depth_uncertainty, expected_depth
from dualfocus_jax.model.compile_options import FAST_COMPILE_OPTIONS
from dualfocus_jax.model.config import PAD_MULTIPLE, DualFocusConfig
from dualfocus_jax.model.decoder import FocalDecoder
from dualfocus_jax.model.encoder import FocalStackEncoder
from dualfocus_jax.model.focal_volume import enhanced_focal_volume
from dualfocus_jax.model.guided_upsampling import joint_bilateral_upsample
from dualfocus_jax.model.padding import crop_spatial, pad_spatial, padding_to_multiple
from dualfocus_jax.model.refinement import FullResolutionRefinement
from dualfocus_jax.model.resampling import resize_bilinear_hw
from dualfocus_jax.model.resnet import trunk_input_from_images
from dualfocus_jax.model.spatial_branch import SpatialBranch
from dualfocus_jax.slice_prior import with_blur_cell_prior
from dualfocus_jax.variational import project_unimodal


def validate_inputs(stack_BSHWC, focus_BS) -> tuple[int, int, int, int]:
    """Checks shapes and dtypes of a focal stack and its focus positions; returns (B, S, H, W).

    Raises ValueError naming the problem and the fix. Works on traced arrays (only static shapes are read).
    """
    shape = tuple(stack_BSHWC.shape)
    if len(shape) != 5 or shape[-1] != 3:
        raise ValueError(
            f"stack must have shape (B, S, H, W, 3) (batch, slices, height, width, RGB), got {shape}; "
            "add a batch axis with stack[None] for a single stack, and repeat a grey channel to RGB."
        )
    b, s, h, w, _ = shape
    if s < 2:
        raise ValueError(f"a focal stack needs at least 2 slices (S ≥ 2), got S={s}.")
    if h < 1 or w < 1 or b < 1:
        raise ValueError(f"stack has an empty axis: shape {shape}.")
    focus_shape = tuple(focus_BS.shape)
    if focus_shape != (b, s):
        raise ValueError(
            f"focus positions must have shape (B, S) = ({b}, {s}), one per slice of each stack, got {focus_shape}; "
            "broadcast a shared (S,) vector with jnp.broadcast_to(focus, (B, S))."
        )
    if not jnp.issubdtype(stack_BSHWC.dtype, jnp.floating):
        raise ValueError(f"stack must be float images in [0, 1], got dtype {stack_BSHWC.dtype}; divide uint8 by 255.")
    if not jnp.issubdtype(focus_BS.dtype, jnp.floating):
        raise ValueError(f"focus positions must be floats, got dtype {focus_BS.dtype}; cast with .astype(float32).")
    return b, s, h, w


def sorted_by_focus(stack_BSHWC: jax.Array, focus_BS: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The stack and focus positions reordered per example so that f_1 < … < f_S (stable sort)."""
    order = jnp.argsort(focus_BS, axis=1, stable=True)
    focus = jnp.take_along_axis(focus_BS, order, axis=1)
    stack = jnp.take_along_axis(stack_BSHWC, order[:, :, None, None, None], axis=1)
    return stack, focus


@struct.dataclass
class DualFocusOutput:
    """What `DualFocusNet` returns; a pytree, so `jax.jit`, `jax.device_get` and `jax.export` see its arrays.

    Every slice axis is in ascending focus order, the order of `focus_positions`.

    Attributes:
      depth: (B, H, W) Σ_n p_n f_n, in the unit of the focus positions.
      uncertainty: (B, H, W) sqrt(Σ_n p_n (depth − f_n)²), same unit.
      prob: (B, S, H, W) focus probabilities of the finest level (weighted by the slice prior if the config
        has one, then unimodal-projected at inference if it asks for it).
      all_in_focus: (B, H, W, 3) Σ_n p_n I_n, p before the slice prior and its projection (it blends by
        sharpness; projected when there is no prior).
      depth_levels: list of 4 (B, H, W) depths of the deep-supervision levels at input resolution, finest
        first (unprojected, for L_depth).
      focus_positions: (B, S) the sorted focus positions.
      surface_gradients: (B, S, h, w, 2) θ output on the padded grid at 1/solver_stride, x (along W) then y
        (along H) unit-free gradient per solver pixel, for L_sv; None for configs without the spatial branch
        (`use_spatial=False`: the no_spatial, dfv and fv variants).
    """

    depth: jax.Array
    uncertainty: jax.Array
    prob: jax.Array
    all_in_focus: jax.Array
    depth_levels: list[jax.Array]
    focus_positions: jax.Array
    surface_gradients: jax.Array | None = None


class DualFocusNet(nn.Module):
    """The DualFocus network; all sizes and variants come from `config` (see `config.py`).

    Call: `model.apply(params, stack_BSHWC, focus_BS, train=...)` with
      stack_BSHWC: (B, S, H, W, 3) float images in [0, 1], S ≥ 2, any H, W, slices in any order.
      focus_BS: (B, S) focus position of each slice, any unit, any order (sorted with the slices inside).
      train: True skips the inference-time unimodal projection (the training penalty L_fv needs the raw p).

    Returns a `DualFocusOutput` (slice axes in ascending focus order).
    """

    config: DualFocusConfig

    @nn.compact
    def __call__(self, stack_BSHWC: jax.Array, focus_BS: jax.Array, *, train: bool) -> DualFocusOutput:
        cfg = self.config
        b, s, h, w = validate_inputs(stack_BSHWC, focus_BS)
        stack, focus = sorted_by_focus(stack_BSHWC.astype(jnp.float32), focus_BS.astype(jnp.float32))

        pads = padding_to_multiple(h, w, PAD_MULTIPLE)
        padded = pad_spatial(stack, pads, spatial_axes=(2, 3), mode=cfg.pad_mode)
        hp, wp = padded.shape[2], padded.shape[3]
        compute = jnp.dtype(cfg.dtype)
        images = trunk_input_from_images(padded.reshape(b * s, hp, wp, 3)).astype(compute)

        features = FocalStackEncoder(cfg.stem_width, cfg.encoder_widths, cfg.encoder_blocks, cfg.volume_channels,
                                     cfg.pyramid_pool_grids, cfg.norm_groups, compute, name="encoder")(images, s)
        volumes = [enhanced_focal_volume(f.reshape(b, s, *f.shape[1:]), cfg.volume_mode) for f in features]

        surface_gradients = None
        if cfg.use_spatial:
            level = cfg.surface_level
            spatial = SpatialBranch(cfg, name="spatial_branch")(volumes[0], volumes[level])
            volumes[level] = jnp.concatenate([volumes[level], spatial["surfaces"].astype(compute)], axis=-1)
            surface_gradients = spatial["surface_gradients"]

        costs = FocalDecoder(cfg.decoder_channels, cfg.norm_groups, cfg.conv3d_impl, compute,
                             name="decoder")(tuple(volumes))
        # Costs are upsampled as logits (before the softmax), as DFV does, then cropped to the input.
        upsampled = [resize_bilinear_hw(cost, hp, wp, channel_last=False) for cost in reversed(costs)]
        if cfg.cost_upsampling == "joint_bilateral":
            # Guided by the all-in-focus image of the bilinear pass: it is sharp wherever a slice is. The guide
            # only sets weights, so training does not push the costs to change it (no gradient through it).
            guide = jax.lax.stop_gradient(jnp.einsum("bshw,bshwc->bhwc", jax.nn.softmax(upsampled[0], axis=1),
                                                     padded))
            upsampled[0] = joint_bilateral_upsample(costs[-1], guide, reach=cfg.guide_reach,
                                                    sigma_colour=cfg.guide_sigma)
        logits_levels = [crop_spatial(cost, pads, spatial_axes=(2, 3)) for cost in upsampled]
        if cfg.full_resolution_refinement:
            logits_levels[0] = FullResolutionRefinement(cfg.refinement_width, cfg.conv3d_impl, compute,
                                                        name="refinement")(logits_levels[0], stack)
        prob_levels = [jax.nn.softmax(logits, axis=1) for logits in logits_levels]
        sharpness = prob_levels[0]
        if cfg.slice_prior == "blur_cells":
            prob_levels = [with_blur_cell_prior(p, 1.0 / focus) for p in prob_levels]
        prob = prob_levels[0]
        if not train and cfg.project_unimodal_at_inference:
            # The probabilities depth is taken from, weighted if the config says so: those L_fv trains.
            prob = project_unimodal(prob, axis=1)
        # The all-in-focus image blends by how sharp each slice is: the network's own probabilities, before any
        # weights on depth (and, with weights, before the projection, which belongs to them).
        all_in_focus = jnp.einsum("bshw,bshwc->bhwc", prob if cfg.slice_prior == "none" else sharpness, stack)
        depth_levels = [expected_depth(p, focus, cfg.expectation) for p in prob_levels]
        depth = expected_depth(prob, focus, cfg.expectation)
        return DualFocusOutput(
            depth=depth,
            uncertainty=depth_uncertainty(prob, focus, depth, cfg.expectation),
            prob=prob,
            all_in_focus=all_in_focus,
            depth_levels=depth_levels,
            focus_positions=focus,
            surface_gradients=surface_gradients,
        )


def initial_params(config: DualFocusConfig, rng: jax.Array) -> dict:
    """Freshly initialised variables ({'params': ...}) of `DualFocusNet(config)`.

    The parameters do not depend on the input size or the number of slices, so a minimal 2-slice 32×32
    stack traces the model; the jitted init is compiled unoptimised (see `compile_options.py`), which keeps
    it to seconds on a CPU instead of tens of seconds.
    """
    model = DualFocusNet(config)
    stack = jnp.zeros((1, 2, 32, 32, 3), jnp.float32)
    focus = jnp.asarray([[0.0, 1.0]], jnp.float32)
    init = jax.jit(lambda key: model.init(key, stack, focus, train=True), compiler_options=FAST_COMPILE_OPTIONS)
    return init(rng)


def abstract_params(config: DualFocusConfig, num_slices: int = 5, height: int = 64, width: int = 64):
    """Parameter shapes of `DualFocusNet(config)` without computing anything (`jax.eval_shape` of init)."""
    model = DualFocusNet(config)
    stack = jax.ShapeDtypeStruct((1, num_slices, height, width, 3), jnp.float32)
    focus = jax.ShapeDtypeStruct((1, num_slices), jnp.float32)
    return jax.eval_shape(lambda rng, x, f: model.init(rng, x, f, train=True), jax.random.key(0), stack, focus)


def params_mismatch(params, config: DualFocusConfig) -> str | None:
    """None when `params` have exactly the shapes `DualFocusNet(config)` needs, else the first differences."""
    expected = {jax.tree_util.keystr(path): tuple(leaf.shape) for path, leaf in
                jax.tree_util.tree_leaves_with_path(abstract_params(config, num_slices=2, height=32, width=32))}
    found = {jax.tree_util.keystr(path): tuple(jnp.shape(leaf))
             for path, leaf in jax.tree_util.tree_leaves_with_path(params)}
    missing = sorted(set(expected) - set(found))
    extra = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
    details = []
    if wrong:
        details.append("shape mismatches " + ", ".join(f"{k}: {found[k]} vs {expected[k]}" for k in wrong[:3]))
    if missing:
        details.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra:
        details.append(f"{len(extra)} unexpected (e.g. {extra[0]})")
    return "; ".join(details) or None


def parameter_count(params) -> int:
    """Total number of scalars in a parameter tree (arrays or ShapeDtypeStructs)."""
    return int(sum(int(jnp.size(leaf)) if hasattr(leaf, "size") else 0 for leaf in jax.tree.leaves(params)))
