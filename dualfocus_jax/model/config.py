"""Sizes and variants of the DualFocus network, as one frozen dataclass.

`model_config(size, variant)` is the only constructor most code needs:

* sizes: ``paper`` (about 27M parameters, the paper's count; the DFV-like core is about 19M, docs/design/METHOD.md
  "Network" item 6, the rest is the concatenated volume and the spatial branch) and ``small`` (under 1M
  parameters, trainable on two CPU cores).
* variants (docs/design/METHOD.md, "Ablation"):

  ============  ===============================  =================  ====================
  variant       focal volume fed to the decoder  spatial constraint focal constraint
  ============  ===============================  =================  ====================
  dualfocus     [V, ΔV] (2C channels)            yes (L_sv)         L_fv + projection
  no_spatial    [V, ΔV]                          no                 L_fv + projection
  no_focal      [V, ΔV]                          yes (L_sv)         no
  dfv           ΔV (C channels, as DFV did)      no                 no
  fv            V (C channels)                   no                 no
  ============  ===============================  =================  ====================

`DualFocusConfig.from_config_dict` builds one from an `ml_collections.ConfigDict` (or a plain dict), so the
experiment configs can keep the model settings in their own `config.model` block.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from dualfocus_jax.focus_statistics import EXPECTATION_SPACES
from dualfocus_jax.slice_prior import SLICE_PRIORS

SIZES = ("small", "paper")
VARIANTS = ("dualfocus", "no_spatial", "no_focal", "dfv", "fv")
VOLUME_MODES = ("concat", "difference", "plain")
SOLVERS = ("dct", "cg")
SOLVER_STRIDES = (4, 8, 16, 32)
PAD_MODES = ("edge", "reflect")
CONV3D_IMPLS = ("slices", "lax")
COST_UPSAMPLINGS = ("bilinear", "joint_bilateral")
# Compute precisions: parameters, softmax, expectations, solvers and losses stay float32 in both.
DTYPES = ("float32", "bfloat16")

# The network works on four scales, coarsest first; every per-level tuple below follows this order.
LEVEL_STRIDES = (32, 16, 8, 4)
# Input height and width are padded to a multiple of the coarsest stride (and cropped back).
PAD_MULTIPLE = 32


@dataclasses.dataclass(frozen=True)
class DualFocusConfig:
    """Every size, variant and loss setting of `DualFocusNet` and `dualfocus_loss`.

    Encoder (ResNet-18-style trunk, pyramid pooling, FPN top-down path):
      stem_width: channels of the 7×7 stride-2 stem convolution.
      encoder_widths: channels of the four residual stages (strides 4, 8, 16, 32).
      encoder_blocks: basic blocks per stage ((2, 2, 2, 2) is ResNet-18).
      pyramid_pool_grids: output grids of the adaptive average pools of the pyramid pooling at 1/32.
      volume_channels: C, the per-slice feature channels of the focal volume at 1/32, 1/16, 1/8, 1/4.
      norm_groups: the largest number of GroupNorm groups (fewer when the channels do not divide).
    Focal volume and decoder:
      volume_mode: "concat" ([V_n, V_{n+1} − V_n], DualFocus), "difference" (DFV), "plain" (FV).
      decoder_channels: channels of the 3D decoder at 1/32, 1/16, 1/8, 1/4 (each level's upsampling
        convolution hands half of them to the next finer level).
      conv3d_impl: "slices" computes each 3×3×3 convolution as three 2D convolutions over shifted focal
        slices (faster than XLA:CPU's native 3D convolution, see `conv3d.py`), "lax" uses
        `lax.conv_general_dilated` in 3D. Same parameters, same result up to rounding.
      full_resolution_refinement: correct the finest level's upsampled costs at the input's resolution from
        the slices' own pixels (`refinement.py`; our extension, off in the paper's network, whose costs end
        at 1/4).
      refinement_width: channels of that refinement's per-slice image features and 3D convolution.
      cost_upsampling: how the finest costs reach the input's size: "bilinear" (the paper's network, as DFV)
        or "joint_bilateral" (each low-resolution cell weighted by how close its colour is to the pixel's in
        the network's own all-in-focus image, `guided_upsampling.py`; our extension, no parameters).
      guide_reach, guide_sigma: that upsampling's spatial tent half-width in 1/4-resolution cells (1 reads the
        2×2 cells bilinear reads) and its colour scale (RMS channel difference, images in [0, 1]).
    Spatial constraint (docs/design/METHOD.md "Network" item 3):
      use_spatial: build the spatial branch, concatenate its surfaces into the volume, train with L_sv.
      solver: "dct" (exact Neumann least squares) or "cg" (unrolled conjugate gradient, `cg_iters` steps).
      solver_stride: resolution of the gradient heads and the solver, 1/solver_stride of the input (16 as
        in VA-DepthNet; 8 or 4 are affordable with the O(HW log HW) DCT solver).
      surface_channels: C2, the number of gradient fields (and integrated surfaces) per focal plane.
      spatial_context_width, spatial_context_blocks: width and residual blocks of the head's context trunk,
        which runs at 1/32 (where wide convolutions are cheap) and is upsampled to the solver resolution.
      spatial_detail_width: width of the head's solver-resolution path.
      theta_width: hidden width of θ, the head mapping surfaces to a 2-channel gradient for L_sv.
    Focal constraint:
      use_focal: train with L_fv (lambda_fv is forced to 0 when False).
      project_unimodal_at_inference: project p onto unimodal distributions when `train=False`.
    Losses (docs/design/METHOD.md "Losses"):
      lambda_sv, lambda_fv: weights of L_sv and L_fv in the total (not published; see `losses.py`).
      tau_rel: τ of the in-focus weights q_n, relative to the mean focus spacing (f_S − f_1)/(S − 1).
      level_weights: deep-supervision weights of L_depth, finest level first (8/15, 4/15, 2/15, 1/15).
      smooth_l1_beta: the quadratic-to-linear switch of smooth-L1, in the unit of the focus positions.
      gt_min_valid_fraction: share of valid GT pixels a solver-resolution cell needs to count as valid.
    Depth:
      expectation: "focus" (D = Σ p_n f_n, any unit) or "inverse_focus" (D = 1 / Σ p_n / f_n, linear in
        inverse distance as blur is; focus positions must be distances > 0). See `focus_statistics.py`.
      slice_prior: "none" or "blur_cells": every level's focus probabilities weighted by the width of each
        slice's cell in inverse focus distance and renormalised (`slice_prior.with_blur_cell_prior`; our
        extension: stacks spaced evenly in metres otherwise come out biased far), before the inference-time
        projection, so that the projection acts on the probabilities the training penalty L_fv sees. Focus
        positions must be distances > 0. The predictor applies the same weights, then the projection, to the
        network's probabilities in the stack's own focus unit (`inference/focus_units.py`), and so does the
        evaluation on datasets whose focus values are disparities (`evaluation.evaluate`).
    Input:
      pad_mode: "edge" or "reflect" padding of H and W up to a multiple of 32 (cropped back after).
    Precision:
      dtype: compute dtype of the convolutions and normalisations, "float32" or "bfloat16" (mixed precision:
        parameters, GroupNorm statistics, the softmax over slices, the expectations, the surface solvers and
        the losses stay float32). benchmarks/bench_precision.py measures what it costs and gains.
    """

    size: str = "small"
    variant: str = "dualfocus"
    # Encoder.
    stem_width: int = 16
    encoder_widths: tuple[int, int, int, int] = (16, 32, 64, 96)
    encoder_blocks: tuple[int, int, int, int] = (1, 1, 1, 1)
    pyramid_pool_grids: tuple[int, ...] = (1, 2, 3, 6)
    volume_channels: tuple[int, int, int, int] = (32, 16, 8, 8)
    norm_groups: int = 8
    # Focal volume and decoder.
    volume_mode: str = "concat"
    decoder_channels: tuple[int, int, int, int] = (32, 16, 16, 16)
    conv3d_impl: str = "slices"
    full_resolution_refinement: bool = False
    refinement_width: int = 8
    cost_upsampling: str = "bilinear"
    # Chosen on validation stacks (engine draws of another seed than its test split, their layered-protocol
    # renderings, synthetic_focal train[180:]) with the fifth engine stage's network: depth error fell with
    # the reach up to 4 cells and little beyond, at twice the time for 6; sigma 0.05 beat 0.03, 0.08 and 0.1.
    guide_reach: int = 4
    guide_sigma: float = 0.05
    # Spatial constraint.
    use_spatial: bool = True
    solver: str = "dct"
    solver_stride: int = 16
    cg_iters: int = 50
    surface_channels: int = 8
    spatial_context_width: int = 48
    spatial_context_blocks: int = 1
    spatial_detail_width: int = 16
    theta_width: int = 16
    # Focal constraint.
    use_focal: bool = True
    project_unimodal_at_inference: bool = True
    # Losses.
    lambda_sv: float = 0.1
    lambda_fv: float = 1.0
    tau_rel: float = 0.5
    level_weights: tuple[float, float, float, float] = (8 / 15, 4 / 15, 2 / 15, 1 / 15)
    smooth_l1_beta: float = 1.0
    gt_min_valid_fraction: float = 0.5
    # Depth.
    expectation: str = "focus"
    slice_prior: str = "none"
    # Input.
    pad_mode: str = "edge"
    # Precision.
    dtype: str = "float32"

    def __post_init__(self):
        def need(condition: bool, message: str):
            if not condition:
                raise ValueError(message)

        # Lists given for the tuple fields become tuples, so a config is always hashable (it keys caches of
        # compiled functions, e.g. evaluation.evaluate.prediction_function).
        for field in dataclasses.fields(self):
            if isinstance(getattr(self, field.name), list):
                object.__setattr__(self, field.name, tuple(getattr(self, field.name)))

        need(self.size in SIZES, f"size must be one of {SIZES}, got {self.size!r}.")
        need(self.variant in VARIANTS, f"variant must be one of {VARIANTS}, got {self.variant!r}.")
        need(self.volume_mode in VOLUME_MODES, f"volume_mode must be one of {VOLUME_MODES}, got {self.volume_mode!r}.")
        need(self.expectation in EXPECTATION_SPACES,
             f"expectation must be one of {EXPECTATION_SPACES}, got {self.expectation!r}.")
        need(self.slice_prior in SLICE_PRIORS, f"slice_prior must be one of {SLICE_PRIORS}, got {self.slice_prior!r}.")
        need(self.solver in SOLVERS, f"solver must be one of {SOLVERS}, got {self.solver!r}.")
        need(
            self.solver_stride in SOLVER_STRIDES,
            f"solver_stride must be one of {SOLVER_STRIDES} (a level of the encoder), got {self.solver_stride!r}.",
        )
        need(self.pad_mode in PAD_MODES, f"pad_mode must be one of {PAD_MODES}, got {self.pad_mode!r}.")
        need(self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}.")
        need(self.cost_upsampling in COST_UPSAMPLINGS,
             f"cost_upsampling must be one of {COST_UPSAMPLINGS}, got {self.cost_upsampling!r}.")
        need(self.guide_reach >= 1, f"guide_reach must be ≥ 1 (cells), got {self.guide_reach!r}.")
        need(self.guide_sigma > 0, f"guide_sigma must be > 0, got {self.guide_sigma!r}.")
        need(self.conv3d_impl in CONV3D_IMPLS, f"conv3d_impl must be one of {CONV3D_IMPLS}, got {self.conv3d_impl!r}.")
        for name in ("encoder_widths", "encoder_blocks", "volume_channels", "decoder_channels", "level_weights"):
            need(len(getattr(self, name)) == 4, f"{name} needs one entry per level (4), got {getattr(self, name)!r}.")
        for name in ("stem_width", "surface_channels", "spatial_context_width", "spatial_detail_width",
                     "theta_width", "norm_groups", "refinement_width"):
            need(int(getattr(self, name)) >= 1, f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        need(all(w >= 1 for w in self.encoder_widths + self.volume_channels), "widths must be positive integers.")
        need(all(b >= 1 for b in self.encoder_blocks), f"encoder_blocks must be ≥ 1, got {self.encoder_blocks}.")
        need(all(c >= 2 for c in self.decoder_channels), f"decoder_channels must be ≥ 2, got {self.decoder_channels}.")
        need(len(self.pyramid_pool_grids) >= 1 and all(g >= 1 for g in self.pyramid_pool_grids),
             f"pyramid_pool_grids must be positive grid sizes, got {self.pyramid_pool_grids}.")
        need(self.cg_iters >= 1, f"cg_iters must be ≥ 1, got {self.cg_iters}.")
        need(self.spatial_context_blocks >= 0, "spatial_context_blocks must be ≥ 0.")
        need(self.tau_rel > 0, f"tau_rel must be > 0 (a fraction of the focus spacing), got {self.tau_rel}.")
        need(self.smooth_l1_beta > 0, f"smooth_l1_beta must be > 0, got {self.smooth_l1_beta}.")
        need(self.lambda_sv >= 0 and self.lambda_fv >= 0, "lambda_sv and lambda_fv must be ≥ 0.")
        need(0.0 < self.gt_min_valid_fraction <= 1.0, "gt_min_valid_fraction must lie in (0, 1].")
        need(not (self.use_focal is False and self.lambda_fv != 0.0),
             "use_focal=False needs lambda_fv=0 (the focal penalty is off); set both or use variant='no_focal'.")

    @property
    def surface_level(self) -> int:
        """Index (coarsest first, into LEVEL_STRIDES) of the level where the surfaces join the volume."""
        return LEVEL_STRIDES.index(self.solver_stride)

    @property
    def volume_multiplier(self) -> int:
        """Channels of the enhanced volume per feature channel: 2 for [V, ΔV], 1 for ΔV or V."""
        return 2 if self.volume_mode == "concat" else 1

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (tuples stay tuples), e.g. to store next to a checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_config_dict(cls, config: Mapping[str, Any] | Any) -> DualFocusConfig:
        """Builds a config from an `ml_collections.ConfigDict` or a mapping of field names to values.

        A mapping with `size` and/or `variant` starts from `model_config(size, variant)` and applies the
        remaining keys as overrides; lists become tuples. Unknown keys raise ValueError (a typo must not be
        silently ignored).
        """
        if hasattr(config, "to_dict"):
            config = config.to_dict()
        values = dict(config)
        size = values.pop("size", "small")
        variant = values.pop("variant", "dualfocus")
        return model_config(size=size, variant=variant, **values)


def _size_fields(size: str) -> dict[str, Any]:
    if size == "paper":
        # DFV's feature extractor (ResNet-18 + pyramid pooling + FPN, volumes 128/64/32/16) and decoder
        # (128→128→64→32→32) give the ≈19M core; the spatial head's 1/32 context trunk holds most of the
        # remaining ≈8M that the paper's 27M count leaves for the spatial branch and the concat volume.
        return dict(
            stem_width=64,
            encoder_widths=(64, 128, 256, 512),
            encoder_blocks=(2, 2, 2, 2),
            volume_channels=(128, 64, 32, 16),
            decoder_channels=(128, 64, 32, 32),
            norm_groups=32,
            surface_channels=32,
            spatial_context_width=416,
            spatial_context_blocks=2,
            spatial_detail_width=64,
            theta_width=32,
        )
    if size == "small":
        return {}  # the dataclass defaults are the small size
    raise ValueError(f"size must be one of {SIZES}, got {size!r}.")


def _variant_fields(variant: str) -> dict[str, Any]:
    fields = {
        "dualfocus": dict(volume_mode="concat", use_spatial=True, use_focal=True, project_unimodal_at_inference=True),
        "no_spatial": dict(volume_mode="concat", use_spatial=False, use_focal=True, project_unimodal_at_inference=True),
        "no_focal": dict(volume_mode="concat", use_spatial=True, use_focal=False, project_unimodal_at_inference=False,
                         lambda_fv=0.0),
        "dfv": dict(volume_mode="difference", use_spatial=False, use_focal=False, project_unimodal_at_inference=False,
                    lambda_fv=0.0),
        "fv": dict(volume_mode="plain", use_spatial=False, use_focal=False, project_unimodal_at_inference=False,
                   lambda_fv=0.0),
    }
    if variant not in fields:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}.")
    return fields[variant]


def model_config(size: str = "small", variant: str = "dualfocus", **overrides: Any) -> DualFocusConfig:
    """The config of one size ("small" | "paper") and variant (see the module docstring), with overrides.

    Overrides are field names of `DualFocusConfig` (e.g. ``solver="cg", solver_stride=8``); lists are
    turned into tuples so the config stays hashable (it is a static argument of jitted functions).
    """
    known = {f.name for f in dataclasses.fields(DualFocusConfig)} - {"size", "variant"}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown DualFocusConfig field(s) {unknown}; valid fields: {sorted(known)}.")
    fields: dict[str, Any] = dict(size=size, variant=variant)
    fields.update(_size_fields(size))
    fields.update(_variant_fields(variant))
    fields.update({k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    return DualFocusConfig(**fields)
