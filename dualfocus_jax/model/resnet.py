"""ResNet-18-style 2D trunk (torchvision's layout), without the classifier.

Parameter names mirror torchvision's (`conv1`, `bn1`, `layer{i}_{j}/conv1`, `.../downsample_conv`, ...)
so `pretrained_encoder.py` can map a converted ImageNet checkpoint one to one; BatchNorm layers are
`ChannelAffine`s (BatchNorm in eval mode with its statistics folded in; see `norms.py` for why).
Padding is explicit and symmetric, as in PyTorch, so strided layers sample the same pixels as torchvision's.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from dualfocus_jax.model.norms import ChannelAffine

# He initialisation (fan-in, normal) suits the ReLU trunk trained from scratch; the 2D convolutions of the
# encoder and the spatial branch use it too.
conv_init = nn.initializers.variance_scaling(2.0, "fan_in", "normal")


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with a residual connection; (N, h, w, Cin) → (N, h/stride, w/stride, width)."""

    width: int
    stride: int = 1
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = self.dtype
        y = nn.Conv(self.width, (3, 3), strides=self.stride, padding=((1, 1), (1, 1)), use_bias=False,
                    kernel_init=conv_init, dtype=dtype, name="conv1")(x)
        y = nn.relu(ChannelAffine(dtype=dtype, name="bn1")(y))
        y = nn.Conv(self.width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, kernel_init=conv_init,
                    dtype=dtype, name="conv2")(y)
        # Zero scale: the block starts as identity, which keeps an unnormalised trunk stable from scratch.
        y = ChannelAffine(scale_init=nn.initializers.zeros, dtype=dtype, name="bn2")(y)
        if self.stride != 1 or x.shape[-1] != self.width:
            x = nn.Conv(self.width, (1, 1), strides=self.stride, padding="VALID", use_bias=False,
                        kernel_init=conv_init, dtype=dtype, name="downsample_conv")(x)
            x = ChannelAffine(dtype=dtype, name="downsample_bn")(x)
        return nn.relu(x.astype(dtype) + y)


class ResNetTrunk(nn.Module):
    """Stem and four residual stages.

    Attributes:
      stem_width: channels of the 7×7 stride-2 stem.
      widths: channels of the four stages.
      blocks: basic blocks per stage.
      dtype: compute dtype.

    Call with normalised images (N, H, W, 3), H and W multiples of 32. Returns the four stage outputs
    (N, H/4, W/4, widths[0]), (N, H/8, W/8, widths[1]), (N, H/16, W/16, widths[2]), (N, H/32, W/32, widths[3]).
    """

    stem_width: int
    widths: tuple[int, int, int, int]
    blocks: tuple[int, int, int, int]
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, images_NHWC: jax.Array) -> tuple[jax.Array, ...]:
        x = nn.Conv(self.stem_width, (7, 7), strides=2, padding=((3, 3), (3, 3)), use_bias=False,
                    kernel_init=conv_init, dtype=self.dtype, name="conv1")(images_NHWC)
        x = nn.relu(ChannelAffine(dtype=self.dtype, name="bn1")(x))
        # Max pooling pads with −inf, as PyTorch's MaxPool2d(3, 2, padding=1) does.
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        stages = []
        for stage, (width, count) in enumerate(zip(self.widths, self.blocks), start=1):
            for index in range(count):
                stride = 2 if (stage > 1 and index == 0) else 1
                x = BasicBlock(width, stride, self.dtype, name=f"layer{stage}_{index}")(x)
            stages.append(x)
        return tuple(stages)


def trunk_input_from_images(images_NHWC: jax.Array) -> jax.Array:
    """ImageNet mean/std normalisation of images in [0, 1] (the statistics torchvision's weights expect)."""
    mean = jnp.asarray([0.485, 0.456, 0.406], jnp.float32)
    std = jnp.asarray([0.229, 0.224, 0.225], jnp.float32)
    return (images_NHWC - mean) / std
