"""Full-resolution refinement of the finest focus costs (our extension; `DualFocusConfig.full_resolution_refinement`).

The decoder's finest costs live at 1/4 of the input and are upsampled bilinearly, so a depth edge is smeared
over about four pixels and a structure thinner than that (a spoke, a wire, a chair leg) is lost: on the
rendered motorcycle, pixels within 3 px of a depth edge are 46% of the scored pixels and carry 72% of the
shipped model's squared error. Each slice's own pixels still show, at full resolution, where it is sharp.

The refinement reads them: a small 2D convolution trunk per slice (shared weights) gives image features, the
features relative to their mean over the slices say which slice is sharpest here, and two 3×3×3 convolutions
over (slice, row, column) turn them and the upsampled cost into a correction added to the cost. The last
convolution starts at zero, so a network initialised from a checkpoint without the refinement predicts
exactly what that checkpoint did until training moves it.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualfocus_jax.model.conv3d import Conv3x3x3


class FullResolutionRefinement(nn.Module):
    """Call with the finest level's costs upsampled to the input, (B, S, H, W) float32, and the sorted stack
    (B, S, H, W, 3) in [0, 1]; returns the corrected costs (B, S, H, W) float32.

    Attributes:
      width: channels of the per-slice image features and of the hidden 3D convolution.
      conv3d_impl: `Conv3x3x3` implementation ("slices" or "lax").
      dtype: compute dtype of the convolutions (the returned costs are float32).
    """

    width: int
    conv3d_impl: str = "slices"
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, costs_BSHW: jax.Array, stack_BSHWC: jax.Array) -> jax.Array:
        b, s, h, w, c = stack_BSHWC.shape
        features = (stack_BSHWC.reshape(b * s, h, w, c) - 0.5).astype(self.dtype)
        for index in range(2):
            features = nn.relu(nn.Conv(self.width, (3, 3), dtype=self.dtype, name=f"image_conv{index}")(features))
        features = features.reshape(b, s, h, w, self.width)
        # Sharpness is relative: what tells the in-focus slice is its features against the other slices'.
        relative = features - jnp.mean(features, axis=1, keepdims=True)
        volume = jnp.concatenate([features, relative, costs_BSHW[..., None].astype(self.dtype)], axis=-1)
        hidden = nn.relu(Conv3x3x3(self.width, use_bias=True, impl=self.conv3d_impl, dtype=self.dtype,
                                   name="volume_conv")(volume))
        correction = Conv3x3x3(1, use_bias=True, impl=self.conv3d_impl, kernel_init=nn.initializers.zeros,
                               dtype=self.dtype, name="correction")(hidden)
        return costs_BSHW + correction[..., 0].astype(jnp.float32)
