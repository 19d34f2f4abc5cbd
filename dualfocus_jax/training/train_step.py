"""The data-parallel update step (jit over a Mesh, donated state) and the guard against a diverged run."""

from __future__ import annotations

import math

import jax
import optax
from jax.sharding import Mesh

from dualfocus_jax.model import FAST_COMPILE_OPTIONS, DualFocusConfig, DualFocusNet, dualfocus_loss
from dualfocus_jax.training.device_prefetch import stack_as_float
from dualfocus_jax.training.mesh import batch_sharding, replicated_sharding
from dualfocus_jax.training.train_state import PARAM_ABS_LIMIT, TrainState, state_guard_values, unhealthy_state_reason

# Guard values the step returns beside the losses (see `state_guard_values`); checked, not all of them logged.
GUARD_METRICS = ("param_abs_max", "opt_state_nonfinite")


class NonFiniteLossError(FloatingPointError):
    """Training diverged (a NaN or Inf metric, or a non-finite or exploding state); that state was not saved."""


def make_train_step(model_config: DualFocusConfig, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, mesh: Mesh, *, fast_compile: bool = False):
    """A jitted `step(state, batch) -> (state, metrics)`.

    batch: dict of global arrays sharded over the mesh's "data" axis: stack (B, S, H, W, 3) float32 in [0, 1]
      or uint8 (input.stack_dtype; converted on the device),
      focus (B, S), depth (B, H, W) in the unit of focus, valid (B, H, W) bool.
    metrics: replicated scalars: loss_total, loss_depth, loss_focal (and loss_spatial), grad_norm (before
      clipping), lr (the rate used for this update), and the guard values of the *updated* state
      (`param_abs_max`, `opt_state_nonfinite`: see `state_guard_values`). The losses are means over the
      *global* batch (XLA all-reduces the per-device sums), so they are the same numbers on every device and process.
    The input state is donated: its buffers are reused for the output, so do not use it after the call.
    fast_compile: compile without XLA's expensive CPU optimisations (`FAST_COMPILE_OPTIONS`): much shorter
      compiles, slower steps; for smoke runs and tests, where compiling dominates.
    """
    model = DualFocusNet(model_config)

    def loss_and_components(params, batch):
        outputs = model.apply({"params": params}, stack_as_float(batch["stack"]), batch["focus"], train=True)
        return dualfocus_loss(outputs, batch["depth"], batch["valid"], model_config)

    def step(state: TrainState, batch: dict):
        (_, components), grads = jax.value_and_grad(loss_and_components, has_aux=True)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {f"loss_{name}": value for name, value in components.items()}
        metrics["grad_norm"] = optax.global_norm(grads)
        metrics["lr"] = schedule(state.step)
        new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state)
        metrics.update(state_guard_values(new_state))
        return new_state, metrics

    replicated = replicated_sharding(mesh)
    return jax.jit(step, in_shardings=(replicated, batch_sharding(mesh)), out_shardings=(replicated, replicated),
                   donate_argnums=(0,), compiler_options=FAST_COMPILE_OPTIONS if fast_compile else None)


def raise_if_not_finite(metrics: dict[str, float], step: int, last_checkpoint_step: int | None,
                        checkpoint_dir: str, *, param_abs_limit: float = PARAM_ABS_LIMIT) -> None:
    """Raises NonFiniteLossError when update `step` diverged: a metric is NaN or Inf, or the state it produced
    has non-finite or exploding parameters (`param_abs_max` > param_abs_limit) or a non-finite optimizer state.

    Called after every update, before that state can be saved, so a checkpoint on disk is one whose state
    passed this check: the message names it as the last good one and says what usually helps.
    """
    bad = {name: value for name, value in metrics.items() if not math.isfinite(float(value))}
    reason = unhealthy_state_reason(float(metrics.get("param_abs_max", 0.0)),
                                    float(metrics.get("opt_state_nonfinite", 0.0)), param_abs_limit)
    if bad or reason:
        kept = (f"the last good checkpoint (step {last_checkpoint_step}) in {checkpoint_dir} is intact and a "
                "restart resumes from it" if last_checkpoint_step is not None else
                f"no checkpoint was written yet to {checkpoint_dir}")
        what = (f"non-finite training metrics at step {step}: {bad}" if bad else
                f"training diverged at step {step}: {reason}")
        raise NonFiniteLossError(
            f"{what}; stopped without saving this state, {kept}. "
            "Lower optimizer.lr, set optimizer.grad_clip_norm > 0, or check the data (ground truth and focus "
            "positions must be finite).")
