"""The data-parallel update step (jit over a Mesh, donated state) and the guard against non-finite losses."""

from __future__ import annotations

import math

import jax
import optax
from jax.sharding import Mesh

from dualfocus_jax.model import FAST_COMPILE_OPTIONS, DualFocusConfig, DualFocusNet, dualfocus_loss
from dualfocus_jax.training.mesh import batch_sharding, replicated_sharding
from dualfocus_jax.training.train_state import TrainState


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or Inf; the state that produced it was not saved."""


def make_train_step(model_config: DualFocusConfig, optimizer: optax.GradientTransformation,
                    schedule: optax.Schedule, mesh: Mesh, *, fast_compile: bool = False):
    """A jitted `step(state, batch) -> (state, metrics)`.

    batch: dict of global arrays sharded over the mesh's "data" axis: stack (B, S, H, W, 3) float32 in [0, 1],
      focus (B, S), depth (B, H, W) in the unit of focus, valid (B, H, W) bool.
    metrics: replicated scalars: loss_total, loss_depth, loss_focal (and loss_spatial), grad_norm (before
      clipping), lr (the rate used for this update). The losses are means over the *global* batch (XLA
      all-reduces the per-device sums), so they are the same numbers on every device and process.
    The input state is donated: its buffers are reused for the output, so do not use it after the call.
    fast_compile: compile without XLA's expensive CPU optimisations (`FAST_COMPILE_OPTIONS`): seconds instead
      of a minute to compile, slower steps; for smoke runs and tests, where compiling dominates.
    """
    model = DualFocusNet(model_config)

    def loss_and_components(params, batch):
        outputs = model.apply(params, batch["stack"], batch["focus"], train=True)
        return dualfocus_loss(outputs, batch["depth"], batch["valid"], model_config)

    def step(state: TrainState, batch: dict):
        (_, components), grads = jax.value_and_grad(loss_and_components, has_aux=True)(state.params, batch)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {f"loss_{name}": value for name, value in components.items()}
        metrics["grad_norm"] = optax.global_norm(grads)
        metrics["lr"] = schedule(state.step)
        return TrainState(step=state.step + 1, params=params, opt_state=opt_state), metrics

    replicated = replicated_sharding(mesh)
    return jax.jit(step, in_shardings=(replicated, batch_sharding(mesh)), out_shardings=(replicated, replicated),
                   donate_argnums=(0,), compiler_options=FAST_COMPILE_OPTIONS if fast_compile else None)


def raise_if_not_finite(metrics: dict[str, float], step: int, last_checkpoint_step: int | None,
                        checkpoint_dir: str) -> None:
    """Raises NonFiniteLossError when a metric of the finished update `step` is NaN or Inf.

    Called before that state is saved, so the checkpoints on disk stay the last good ones; the message says
    where they are and what usually helps.
    """
    bad = {name: value for name, value in metrics.items() if not math.isfinite(float(value))}
    if bad:
        kept = (f"the last good checkpoint (step {last_checkpoint_step}) in {checkpoint_dir} is intact and a "
                "restart resumes from it" if last_checkpoint_step is not None else
                f"no checkpoint was written yet to {checkpoint_dir}")
        raise NonFiniteLossError(
            f"non-finite training metrics at step {step}: {bad}; stopped without saving this state, {kept}. "
            "Lower optimizer.lr, set optimizer.grad_clip_norm > 0, or check the data (ground truth and focus "
            "positions must be finite).")
