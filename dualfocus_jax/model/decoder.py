"""3D decoder over (S, h, w): four levels coarse to fine, one focus cost per slice at each level.

After DFV (docs/design/METHOD.md "Network" item 4): at each level two residual blocks of 3×3×3 convolutions, a
2-layer "classify" head giving one cost per slice (deep supervision), and, except at the finest level, a
×(1, 2, 2) upsampling (bilinear in h, w; the focal axis keeps its S slices) with a 3×3×3 convolution to half
the channels, concatenated with the next level's volume. Normalisation is GroupNorm over the whole
(S, h, w) volume of each example (stateless, see `norms.py`).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualfocus_jax.model.conv3d import Conv3x3x3
from dualfocus_jax.model.norms import group_count
from dualfocus_jax.model.resampling import resize_bilinear_hw


class ResidualBlock3D(nn.Module):
    """relu(shortcut(x) + GN(conv(relu(GN(conv(x)))))); (B, S, h, w, Cin) → (B, S, h, w, features).

    The shortcut is a 1×1×1 convolution with GroupNorm when Cin ≠ features (DFV's projfeat3d).
    """

    features: int
    max_groups: int
    impl: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        groups = group_count(self.features, self.max_groups)
        y = Conv3x3x3(self.features, impl=self.impl, dtype=self.dtype, name="conv1")(x)
        y = nn.relu(nn.GroupNorm(num_groups=groups, dtype=self.dtype, name="norm1")(y))
        y = Conv3x3x3(self.features, impl=self.impl, dtype=self.dtype, name="conv2")(y)
        y = nn.GroupNorm(num_groups=groups, dtype=self.dtype, name="norm2")(y)
        if x.shape[-1] != self.features:
            x = nn.Dense(self.features, use_bias=False, dtype=self.dtype, name="shortcut")(x)
            x = nn.GroupNorm(num_groups=groups, dtype=self.dtype, name="shortcut_norm")(x)
        return nn.relu(x.astype(self.dtype) + y)


class DecoderLevel(nn.Module):
    """One decoder level.

    Call with the level's input volume (B, S, h, w, Cin). Returns (cost, upsampled): cost (B, S, h, w), the
    per-slice focus logits, and upsampled (B, S, 2h, 2w, features // 2) for the next level, or None at the
    finest level (`upsample=False`).
    """

    features: int
    upsample: bool
    max_groups: int
    impl: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array | None]:
        groups = group_count(self.features, self.max_groups)
        x = ResidualBlock3D(self.features, self.max_groups, self.impl, self.dtype, name="block1")(x)
        x = ResidualBlock3D(self.features, self.max_groups, self.impl, self.dtype, name="block2")(x)

        cost = Conv3x3x3(self.features, impl=self.impl, dtype=self.dtype, name="classify1")(x)
        cost = nn.relu(nn.GroupNorm(num_groups=groups, dtype=self.dtype, name="classify_norm")(cost))
        # The costs leave in float32: the softmax over slices and the expectations need its resolution.
        cost = Conv3x3x3(1, use_bias=True, impl=self.impl, dtype=self.dtype, name="classify2")(cost)[..., 0]
        cost = cost.astype(jnp.float32)

        if not self.upsample:
            return cost, None
        _, _, h, w, _ = x.shape
        up = resize_bilinear_hw(x, 2 * h, 2 * w)
        half = self.features // 2
        up = Conv3x3x3(half, impl=self.impl, dtype=self.dtype, name="up_conv")(up)
        up = nn.relu(nn.GroupNorm(num_groups=group_count(half, self.max_groups), dtype=self.dtype,
                                  name="up_norm")(up))
        return cost, up


class FocalDecoder(nn.Module):
    """The four levels; volumes and channels coarsest first.

    Attributes:
      channels: features of the four levels (1/32, 1/16, 1/8, 1/4).
      max_groups: GroupNorm groups.
      impl: 3×3×3 convolution implementation ("slices" or "lax").
      dtype: compute dtype (the costs come out float32 either way).

    Call with four volumes (B, S, h_l, w_l, C_l), coarsest first, each level twice the previous one's h, w.
    Returns the four costs (B, S, h_l, w_l), coarsest first.
    """

    channels: tuple[int, int, int, int]
    max_groups: int
    impl: str
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, volumes: tuple[jax.Array, ...]) -> list[jax.Array]:
        costs = []
        carried = None
        for level, (volume, features) in enumerate(zip(volumes, self.channels)):
            volume = volume.astype(self.dtype)
            x = volume if carried is None else jnp.concatenate([carried, volume], axis=-1)
            last = level == len(volumes) - 1
            cost, carried = DecoderLevel(features, not last, self.max_groups, self.impl, self.dtype,
                                          name=f"level{level}")(x)
            costs.append(cost)
        return costs
