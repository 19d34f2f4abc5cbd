"""Spatial constraint: per-plane gradient fields projected onto integrable surfaces (docs/design/METHOD.md item 3).

For every focal plane n a 2D head (weights shared across planes) predicts C2 pairs of gradient fields
Γ_n = (g_x, g_y); each pair is replaced by its least-squares integrable surface
    z*_n = argmin_z ‖P z − Γ_n‖²         (P: forward differences, Neumann boundary, zero mean),
solved exactly by DCT or by unrolled CG (`dualfocus_jax.variational`). Planes in focus yield consistent,
integrable fields and keep their energy; out-of-focus planes yield noise that the projection mostly removes.
The surfaces, normalised, join the focal volume at the solver's resolution, and θ, a small head, maps them to
a 2-channel depth gradient supervised by L_sv.

Head layout (a choice; the paper gives none): a wide context trunk at 1/32, where 3×3 convolutions over
many channels are cheap, upsampled to the solver resolution and added to a narrow path on the volume at that
resolution; a fusing convolution then predicts the fields. Context matters because a gradient field must
know the geometry around a pixel, detail because depth edges must land on the right pixel.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualfocus_jax.model.config import DualFocusConfig
from dualfocus_jax.model.encoder import ConvNormAct
from dualfocus_jax.model.norms import StackGroupNorm
from dualfocus_jax.model.resampling import resize_bilinear_hw
from dualfocus_jax.model.resnet import conv_init
from dualfocus_jax.variational import integrate_gradients_cg, integrate_gradients_dct


class ResidualBlock2D(nn.Module):
    """Two 3×3 ConvNormAct-style convolutions with an identity shortcut; (B·S, h, w, C) → same shape."""

    num_slices: int
    max_groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width = x.shape[-1]
        y = ConvNormAct(width, 3, self.num_slices, self.max_groups, self.dtype, name="conv1")(x)
        y = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=conv_init,
                    dtype=self.dtype, name="conv2")(y)
        y = StackGroupNorm(self.num_slices, self.max_groups, dtype=self.dtype, name="norm2")(y)
        return nn.leaky_relu(x.astype(self.dtype) + y, 0.1)


def integrated_surfaces(grad_x_BSHWK: jax.Array, grad_y_BSHWK: jax.Array, *, solver: str, cg_iters: int) -> jax.Array:
    """Least-squares integrable surfaces of K gradient-field pairs per plane; (B, S, h, w, K) each → same.

    The solvers integrate over the last two axes, so the K fields move in front of (h, w) and back.
    """
    gx = jnp.moveaxis(grad_x_BSHWK, -1, 2)  # (B, S, K, h, w)
    gy = jnp.moveaxis(grad_y_BSHWK, -1, 2)
    if solver == "dct":
        z = integrate_gradients_dct(gx, gy)
    elif solver == "cg":
        z = integrate_gradients_cg(gx, gy, num_iters=cg_iters)
    else:
        raise ValueError(f"solver must be 'dct' or 'cg', got {solver!r}.")
    return jnp.moveaxis(z, 2, -1)


def normalised_surfaces(surfaces_BSHWK: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Divides each surface channel by its RMS over the whole stack (S, h, w) of its example.

    One scale per channel and stack, not per plane, so the relative energy of the planes (large for the
    consistent in-focus ones) survives the normalisation; the surfaces are zero-mean already.
    """
    rms = jnp.sqrt(jnp.mean(jnp.square(surfaces_BSHWK), axis=(1, 2, 3), keepdims=True) + eps)
    return surfaces_BSHWK / rms


class SpatialBranch(nn.Module):
    """Gradient heads, surface solver and θ head.

    Call with the enhanced focal volume at 1/32, context (B, S, h32, w32, Cc), and at the solver
    resolution, detail (B, S, h, w, Cd). Returns a dict:
      surfaces: (B, S, h, w, C2) normalised integrable surfaces, to concatenate into the volume.
      surface_gradients: (B, S, h, w, 2) θ(z*_n), the predicted unit-free depth gradient (x along w first,
        then y along h) per solver-resolution pixel, compared with the ground truth's in L_sv.
      gradient_fields: (B, S, h, w, 2·C2) the raw fields Γ (x fields first), for diagnostics.
    """

    config: DualFocusConfig

    @nn.compact
    def __call__(self, context_BSHWC: jax.Array, detail_BSHWC: jax.Array) -> dict[str, jax.Array]:
        cfg = self.config
        b, s, h, w, _ = detail_BSHWC.shape
        groups = cfg.norm_groups
        k = cfg.surface_channels
        dtype = jnp.dtype(cfg.dtype)

        context = context_BSHWC.reshape(b * s, *context_BSHWC.shape[2:])
        context = ConvNormAct(cfg.spatial_context_width, 3, s, groups, dtype, name="context_in")(context)
        for index in range(cfg.spatial_context_blocks):
            context = ResidualBlock2D(s, groups, dtype, name=f"context_block{index}")(context)
        context = ConvNormAct(cfg.spatial_detail_width, 1, s, groups, dtype, name="context_out")(context)
        context = resize_bilinear_hw(context, h, w)

        detail = detail_BSHWC.reshape(b * s, h, w, detail_BSHWC.shape[-1])
        detail = ConvNormAct(cfg.spatial_detail_width, 3, s, groups, dtype, name="detail_in")(detail)
        fused = ConvNormAct(cfg.spatial_detail_width, 3, s, groups, dtype, name="fuse")(context + detail)
        fields = nn.Conv(2 * k, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype, name="gradient_fields")(fused)
        # The solvers (DCT or CG least squares) run in float32 whatever the compute dtype.
        fields = fields.reshape(b, s, h, w, 2 * k).astype(jnp.float32)

        surfaces = integrated_surfaces(fields[..., :k], fields[..., k:], solver=cfg.solver, cg_iters=cfg.cg_iters)
        surfaces = normalised_surfaces(surfaces)

        theta = surfaces.reshape(b * s, h, w, k)
        theta = nn.relu(nn.Conv(cfg.theta_width, (3, 3), padding=((1, 1), (1, 1)), kernel_init=conv_init,
                                dtype=dtype, name="theta_hidden")(theta))
        theta = nn.Conv(2, (3, 3), padding=((1, 1), (1, 1)), dtype=dtype, name="theta_out")(theta)
        return dict(surfaces=surfaces, surface_gradients=theta.reshape(b, s, h, w, 2).astype(jnp.float32),
                    gradient_fields=fields)
