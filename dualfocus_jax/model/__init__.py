"""The DualFocus network (Flax Linen), its configuration and its losses.

    import jax
    from dualfocus_jax.model import DualFocusNet, dualfocus_loss, initial_params, model_config

    config = model_config(size="small", variant="dualfocus")
    model = DualFocusNet(config)
    params = initial_params(config, jax.random.key(0))
    outputs = model.apply(params, stack_BSHWC, focus_BS, train=True)  # a DualFocusOutput: outputs.depth, ...
    total, components = dualfocus_loss(outputs, depth_gt_BHW, valid_BHW, config)
"""

from dualfocus_jax.model.compile_options import FAST_COMPILE_OPTIONS
from dualfocus_jax.model.config import SIZES, VARIANTS, DualFocusConfig, model_config
from dualfocus_jax.model.dualfocus import (
    DualFocusNet,
    DualFocusOutput,
    abstract_params,
    initial_params,
    parameter_count,
    params_mismatch,
)
from dualfocus_jax.model.losses import (
    depth_loss,
    dualfocus_loss,
    focal_variational_loss,
    in_focus_weights,
    spatial_variational_loss,
)
from dualfocus_jax.model.pretrained_encoder import load_torchvision_resnet18

__all__ = [
    "SIZES",
    "VARIANTS",
    "DualFocusConfig",
    "FAST_COMPILE_OPTIONS",
    "DualFocusNet",
    "DualFocusOutput",
    "abstract_params",
    "depth_loss",
    "dualfocus_loss",
    "focal_variational_loss",
    "in_focus_weights",
    "initial_params",
    "load_torchvision_resnet18",
    "model_config",
    "parameter_count",
    "params_mismatch",
    "spatial_variational_loss",
]
