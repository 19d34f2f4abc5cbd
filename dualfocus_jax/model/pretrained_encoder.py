"""Load ImageNet ResNet-18 weights, converted by the user, into the encoder's trunk.

ImageNet weights cannot be downloaded here, so the user converts torchvision's checkpoint once, e.g.

    import numpy as np, torch, torchvision
    sd = torchvision.models.resnet18(weights="IMAGENET1K_V1").state_dict()
    np.savez("resnet18_imagenet.npz", **{k: v.numpy() for k, v in sd.items()})

and passes the .npz to `load_torchvision_resnet18`. Names are torchvision's (`conv1.weight`,
`layer2.0.downsample.1.running_var`, ...). Convolution kernels go from PyTorch's (O, I, kh, kw) to Flax's
(kh, kw, I, O); each BatchNorm becomes the trunk's `ChannelAffine` with its eval-mode statistics folded in:
scale = γ / sqrt(σ² + ε), bias = β − μ · scale (ε = 1e-5, torchvision's). The classifier (`fc.*`) and
`num_batches_tracked` entries are ignored. Only the `paper` size has ResNet-18's shapes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import flax
import jax.numpy as jnp
import numpy as np

BATCHNORM_EPS = 1e-5
_TRUNK_PATH = ("encoder", "trunk")


def _torch_prefix(module_path: tuple[str, ...]) -> str:
    """Trunk module path (e.g. ('layer2_0', 'downsample_bn')) → torchvision prefix ('layer2.0.downsample.1')."""
    parts = []
    for name in module_path:
        block = re.fullmatch(r"layer(\d+)_(\d+)", name)
        if block:
            parts += [f"layer{block.group(1)}", block.group(2)]
        elif name == "downsample_conv":
            parts += ["downsample", "0"]
        elif name == "downsample_bn":
            parts += ["downsample", "1"]
        else:
            parts.append(name)
    return ".".join(parts)


def _converted_leaf(checkpoint: Mapping[str, np.ndarray], module_path: tuple[str, ...], leaf: str,
                    expected_shape: tuple[int, ...]) -> np.ndarray:
    prefix = _torch_prefix(module_path)

    def need(name: str) -> np.ndarray:
        if name not in checkpoint:
            raise ValueError(f"checkpoint has no '{name}' (needed for encoder/trunk/{'/'.join(module_path)}/{leaf}); "
                             "convert a torchvision resnet18 state_dict with the names unchanged.")
        return np.asarray(checkpoint[name], np.float32)

    if leaf == "kernel":
        value = np.transpose(need(f"{prefix}.weight"), (2, 3, 1, 0))
    else:
        gamma, beta = need(f"{prefix}.weight"), need(f"{prefix}.bias")
        mean, var = need(f"{prefix}.running_mean"), need(f"{prefix}.running_var")
        scale = gamma / np.sqrt(var + BATCHNORM_EPS)
        value = scale if leaf == "scale" else beta - mean * scale
    if value.shape != tuple(expected_shape):
        raise ValueError(
            f"checkpoint '{prefix}' gives shape {value.shape} for encoder/trunk/{'/'.join(module_path)}/{leaf}, the "
            f"model expects {tuple(expected_shape)}; a torchvision ResNet-18 fits only model_config(size='paper')."
        )
    return value


def load_torchvision_resnet18(params, checkpoint: str | os.PathLike | Mapping[str, np.ndarray]):
    """Returns a copy of `params` whose encoder trunk holds the converted checkpoint.

    Args:
      params: the model's variables ({'params': {...}}) or their 'params' subtree, from `DualFocusNet.init`.
      checkpoint: path of an .npz with torchvision names, or a mapping of those names to arrays.

    Raises ValueError for a missing name or a shape that does not fit the model's trunk (before replacing
    anything). Everything outside the trunk (FPN, decoder, spatial branch) is left as initialised.
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        if not os.path.exists(checkpoint):
            raise ValueError(f"checkpoint file {os.fspath(checkpoint)!r} does not exist; see this module's "
                             "docstring for how to convert torchvision's resnet18 weights to .npz.")
        with np.load(checkpoint) as archive:
            checkpoint = {name: archive[name] for name in archive.files}

    wrapped = "params" in params
    tree = flax.core.unfreeze(params["params"] if wrapped else params)
    flat = flax.traverse_util.flatten_dict(tree)
    converted = {}
    for path, value in flat.items():
        if path[: len(_TRUNK_PATH)] != _TRUNK_PATH:
            continue
        module_path, leaf = path[len(_TRUNK_PATH):-1], path[-1]
        converted[path] = jnp.asarray(_converted_leaf(checkpoint, module_path, leaf, tuple(np.shape(value))))
    if not converted:
        raise ValueError("params have no encoder/trunk; pass the variables returned by DualFocusNet.init.")
    flat.update(converted)
    tree = flax.traverse_util.unflatten_dict(flat)
    return {**params, "params": tree} if wrapped else tree
