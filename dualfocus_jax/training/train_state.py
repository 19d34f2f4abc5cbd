"""The training state (step, parameters, optimizer state) and the optax optimizer a config describes."""

from __future__ import annotations

import math

import flax.struct
import jax
import jax.numpy as jnp
import optax

from dualfocus_jax.model import DualFocusConfig, initial_params

OPTIMIZERS = ("adam", "adamw")
# A parameter beyond this magnitude means the run has diverged (the shipped model's largest is 1.4 after 5000
# updates; a learning rate 1e10 gives 2e8 after two): the trainer saves no state past it.
PARAM_ABS_LIMIT = 1e4
SCHEDULES = ("constant", "cosine", "warmup_cosine")


@flax.struct.dataclass
class TrainState:
    """A pytree: `step` (int32 scalar, optimizer updates done), `params` (DualFocusNet's parameter tree itself;
    apply the model with `{'params': state.params}`) and `opt_state` (optax state, its moments shaped like
    `params`). Saved and restored whole by the checkpoint manager; checkpoints of the earlier layout, whose
    `params` held the variables `{'params': ...}`, are migrated at restore (`checkpointing.py`)."""

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
    return optimizer_and_schedule(optimizer_config, total_steps)[0]


def optimizer_and_schedule(optimizer_config, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """`make_optimizer`'s optimizer and the learning-rate schedule inside it (the train step reports its rate)."""
    name = optimizer_config.name
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer.name must be one of {OPTIMIZERS}, got {name!r}.")
    if not 0 < float(optimizer_config.lr) < math.inf:
        raise ValueError(f"optimizer.lr must be a finite number > 0, got {optimizer_config.lr}.")
    schedule = learning_rate_schedule(optimizer_config, total_steps)
    b1, b2 = (float(b) for b in optimizer_config.betas)
    if name == "adam":
        core = optax.adam(schedule, b1=b1, b2=b2)
    else:
        core = optax.adamw(schedule, b1=b1, b2=b2, weight_decay=float(optimizer_config.weight_decay))
    clip = float(optimizer_config.grad_clip_norm)
    return (optax.chain(optax.clip_by_global_norm(clip), core) if clip > 0 else core), schedule


def initial_train_state(model_config: DualFocusConfig, optimizer: optax.GradientTransformation,
                        rng: jax.Array) -> TrainState:
    """Step 0: freshly initialised parameters (from `rng`) and the optimizer's initial state."""
    params = initial_params(model_config, rng)["params"]
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


def train_state_from_params(params: dict, optimizer: optax.GradientTransformation) -> TrainState:
    """Step 0 from a given parameter tree (an exported checkpoint's `variables['params']`), the optimizer state
    fresh."""
    params = jax.tree.map(jnp.asarray, params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=optimizer.init(params))


def state_guard_values(state: TrainState) -> dict[str, jax.Array]:
    """Two scalars that tell whether `state` is worth saving: `param_abs_max`, the largest |parameter| (NaN or Inf
    when a parameter is), and `opt_state_nonfinite`, how many optimizer-state values are NaN or Inf. Cheap
    reductions; the update step returns them beside the losses."""
    params = [jnp.max(jnp.abs(leaf)) for leaf in jax.tree.leaves(state.params)]
    opt_leaves = [leaf for leaf in jax.tree.leaves(state.opt_state) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    nonfinite = [jnp.sum(~jnp.isfinite(leaf)) for leaf in opt_leaves]
    return {"param_abs_max": jnp.max(jnp.stack(params)).astype(jnp.float32),
            "opt_state_nonfinite": (jnp.sum(jnp.stack(nonfinite)) if nonfinite else jnp.zeros((), jnp.int32)
                                    ).astype(jnp.float32)}


def unhealthy_state_reason(param_abs_max: float, opt_state_nonfinite: float,
                           limit: float = PARAM_ABS_LIMIT) -> str | None:
    """Why a state with these guard values must not be saved (None when it may): non-finite or exploding
    parameters (|w| > limit), or a non-finite optimizer state."""
    if not math.isfinite(param_abs_max):
        return f"its parameters are not finite (largest |w| = {param_abs_max})"
    if param_abs_max > limit:
        return f"its parameters exploded (largest |w| = {param_abs_max:.3g} > {limit:.3g})"
    if opt_state_nonfinite:
        return f"{int(opt_state_nonfinite)} values of its optimizer state are NaN or Inf"
    return None
