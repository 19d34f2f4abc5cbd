"""Stateless normalisation layers of the network.

The network has no BatchNorm on purpose: BatchNorm's running statistics are mutable state, which would
make `model.apply(params, ...)` impure (a `batch_stats` collection to thread through every step) and would
couple examples inside a batch. Instead:

* `ChannelAffine` in the ResNet trunk: a per-channel scale and bias, i.e. an ImageNet BatchNorm in eval
  mode with its statistics folded in (detectron2's "FrozenBatchNorm", here trainable). It lets a converted
  torchvision checkpoint reproduce its features exactly, and costs nothing at inference.
* `StackGroupNorm` everywhere else in the 2D encoder: GroupNorm whose statistics are shared by all S slices
  of one focal stack. Per-slice statistics would divide out each slice's overall sharpness, the very cue
  depth from focus compares across slices; shared statistics keep the slices comparable (as DFV's
  BatchNorm did across the batch of slices) while staying per-example and stateless.
* plain `flax.linen.GroupNorm` on the (B, S, h, w, C) volumes of the 3D decoder, where the statistics
  naturally cover the whole stack.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp


def group_count(channels: int, max_groups: int) -> int:
    """Largest number of GroupNorm groups ≤ max_groups that divides `channels`."""
    return math.gcd(int(channels), int(max_groups))


class ChannelAffine(nn.Module):
    """y = x · scale + bias per channel; x (..., C) → (..., C).

    Attributes:
      scale_init: initialiser of `scale`. Residual branches start with zeros so a trunk trained from
        scratch begins as an identity map (no normalisation statistics to keep activations bounded).
    """

    scale_init: nn.initializers.Initializer = nn.initializers.ones
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        channels = x.shape[-1]
        scale = self.param("scale", self.scale_init, (channels,), jnp.float32)
        bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
        return x.astype(self.dtype) * scale.astype(self.dtype) + bias.astype(self.dtype)


class StackGroupNorm(nn.Module):
    """GroupNorm with statistics shared across the slices of each stack.

    Call with x of shape (B·S, h, w, C), the slices of one stack contiguous (as `reshape(B * S, ...)` of a
    (B, S, ...) array gives); returns the same shape.

    Attributes:
      num_slices: S.
      max_groups: the largest number of groups (fewer when C is not divisible, see `group_count`).
    """

    num_slices: int
    max_groups: int = 8
    dtype: jnp.dtype = jnp.float32  # of the output; flax computes the statistics in float32

    @nn.compact
    def __call__(self, x_NHWC: jax.Array) -> jax.Array:
        n, h, w, c = x_NHWC.shape
        per_stack = x_NHWC.reshape(n // self.num_slices, self.num_slices, h, w, c)
        # flax's GroupNorm reduces over every non-batch axis, here (S, h, w) and the channels of a group.
        normed = nn.GroupNorm(num_groups=group_count(c, self.max_groups), epsilon=1e-5, dtype=self.dtype,
                              name="norm")(per_stack)
        return normed.reshape(n, h, w, c)
