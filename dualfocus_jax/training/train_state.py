"""The training state (step, parameters, optimizer state) and the optax optimizer a config describes."""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dualfocus_jax.model import DualFocusConfig, initial_params

OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "warmup_cosine")


@flax.struct.dataclass
class TrainState:
    """A pytree: `step` (int32 scalar, optimizer updates done), `params` ({'params': ...} of DualFocusNet) and
    `opt_state` (optax state). Saved and restored whole by the checkpoint manager."""

    step: jax.Array
    params: dict
    opt_state: optax.OptState


def learning_rate_schedule(optimizer_config, total_steps: int) -> optax.Schedule:
    """The learning rate per step: constant (DFV's Adam 1e-4), cosine decay, or linear warm-up then cosine."""
    lr = float(optimizer_config.lr)
    name = optimizer_config.schedule
    if name == "constant":
        return optax.constant_schedule(lr)
    decay_steps = max(int(total_steps), 1)
    if name == "cosine":
        return optax.cosine_decay_schedule(lr, decay_steps, alpha=float(optimizer_config.final_lr_fraction))
    if name == "warmup_cosine":
        warmup = int(optimizer_config.warmup_steps)
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(decay_steps, warmup + 1),
                                                  end_value=lr * float(optimizer_config.final_lr_fraction))
    raise ValueError(f"optimizer.schedule must be one of {SCHEDULES}, got {name!r}.")


def make_optimizer(optimizer_config, total_steps: int) -> optax.GradientTransformation:
    """Global-norm gradient clipping (DFV clips at 0.5; 0 disables it) followed by Adam or AdamW."""
    name = optimizer_config.name
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {name!r}.")
    if not float(optimizer_config.lr) > 0:
        raise ValueError(f"optimizer.lr must be > 0, got {optimizer_config.lr}.")
    schedule = learning_rate_schedule(optimizer_config, total_steps)
    b1, b2 = (float(b) for b in optimizer_config.betas)
    if name == "adam":
        core = optax.adam(schedule, b1=b1, b2=b2)
    else:
        core = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=float(optimizer_config.weight_decay))
    clip = float(optimizer_config.grad_clip_norm)
    return optax.chain(optax.clip_by_global_norm(clip), core) if clip > 0 else core


def initial_train_state(model_config: DualFocusConfig, optimizer: optax.GradientTransformation,
                        rng: jax.Array) -> TrainState:
    """Step 0: freshly initialised parameters (from `rng`) and the optimizer's initial state."""
    params = initial_params(model_config, rng)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))
