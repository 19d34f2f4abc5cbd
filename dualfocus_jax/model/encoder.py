"""Per-slice 2D encoder: ResNet-18-style trunk, pyramid pooling and an FPN top-down path.

Layout from DFV's feature extractor (docs/design/METHOD.md "Network" item 1): the trunk's 1/32 output goes through
ICNet-style pyramid pooling (adaptive average pools, 1×1 convolutions, summed back), then a top-down path
upsamples ×2 (nearest), convolves, concatenates the trunk's lateral output of that scale and fuses it with a
3×3 convolution; a 1×1 projection at each scale gives the focal-volume features. Weights are shared across
slices by running the encoder on the (B·S, H, W, 3) batch of all slices.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualfocus_jax.model.norms import StackGroupNorm
from dualfocus_jax.model.resampling import adaptive_avg_pool, resize_bilinear_hw, upsample_nearest_2x
from dualfocus_jax.model.resnet import ResNetTrunk, conv_init


class ConvNormAct(nn.Module):
    """Convolution, stack-shared GroupNorm and LeakyReLU(0.1) (DFV's conv2DBatchNormRelu, stateless).

    Call with (B·S, h, w, Cin); returns (B·S, h, w, features).
    """

    features: int
    kernel_size: int
    num_slices: int
    max_groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        pad = self.kernel_size // 2
        x = nn.Conv(self.features, (self.kernel_size, self.kernel_size), padding=((pad, pad), (pad, pad)),
                    use_bias=False, kernel_init=conv_init, dtype=self.dtype, name="conv")(x)
        x = StackGroupNorm(self.num_slices, self.max_groups, dtype=self.dtype, name="norm")(x)
        return nn.leaky_relu(x, 0.1)


class PyramidPooling(nn.Module):
    """ICNet-style pyramid pooling with summation; (B·S, h, w, C) → (B·S, h, w, C).

    out = relu((x + ¼ Σ_g up(conv(pool_g(x)))) / 2), one 1×1 ConvNormAct per grid g; a grid larger than the
    feature map is clamped to it (small inputs have 1/32 maps of 1–2 pixels).
    """

    grids: tuple[int, ...]
    num_slices: int
    max_groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        _, h, w, c = x.shape
        total = x
        for index, grid in enumerate(self.grids):
            pooled = adaptive_avg_pool(x, min(grid, h), min(grid, w))
            pooled = ConvNormAct(c, 1, self.num_slices, self.max_groups, self.dtype, name=f"path{index}")(pooled)
            total = total + 0.25 * resize_bilinear_hw(pooled, h, w)
        return nn.relu(total / 2.0)


class FocalStackEncoder(nn.Module):
    """Shared-weight encoder of every slice.

    Attributes:
      stem_width, widths, blocks: the trunk (see `ResNetTrunk`).
      volume_channels: projected channels at 1/32, 1/16, 1/8, 1/4.
      pool_grids: pyramid pooling grids.
      max_groups: GroupNorm groups.
      dtype: compute dtype.

    Call with normalised images (B·S, H, W, 3), H, W multiples of 32, and S. Returns the per-slice features
    coarsest first: (B·S, H/32, W/32, volume_channels[0]), ..., (B·S, H/4, W/4, volume_channels[3]).
    """

    stem_width: int
    widths: tuple[int, int, int, int]
    blocks: tuple[int, int, int, int]
    volume_channels: tuple[int, int, int, int]
    pool_grids: tuple[int, ...]
    max_groups: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images_NHWC: jax.Array, num_slices: int) -> tuple[jax.Array, ...]:
        s, g, dtype = num_slices, self.max_groups, self.dtype
        lateral4, lateral8, lateral16, lateral32 = ResNetTrunk(self.stem_width, self.widths, self.blocks, dtype,
                                                               name="trunk")(images_NHWC)
        top32 = PyramidPooling(self.pool_grids, s, g, dtype, name="pyramid_pooling")(lateral32)

        fused = top32
        pyramid = [top32]
        for name, lateral, width in (("16", lateral16, self.widths[2]), ("8", lateral8, self.widths[1]),
                                     ("4", lateral4, self.widths[0])):
            up = ConvNormAct(width, 3, s, g, dtype, name=f"upconv{name}")(upsample_nearest_2x(fused))
            fused = ConvNormAct(width, 3, s, g, dtype, name=f"iconv{name}")(jnp.concatenate([lateral, up], -1))
            pyramid.append(fused)

        return tuple(
            ConvNormAct(channels, 1, s, g, dtype, name=f"proj{stride}")(features)
            for features, channels, stride in zip(pyramid, self.volume_channels, (32, 16, 8, 4))
        )
