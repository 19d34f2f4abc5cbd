"""Checkpoints: an orbax CheckpointManager holding the training state and the input iterator's position.

Layout: `<workdir>/checkpoints/<step>/{state,data_iter}`. Saves are asynchronous and atomic (orbax writes a
temporary folder and renames it when complete), so a process killed mid-save leaves the previous checkpoints
readable and the next start resumes from the latest complete one. Preservation: the latest `keep_latest`
checkpoints, plus the `keep_best` best by a validation metric when checkpoints carry metrics.

The iterator position is stored as JSON captured at the moment of the save (`get_state()` is called before
the asynchronous write starts, so later steps cannot leak into it). It is the same on every process (each
process consumes one local batch per step), so one copy serves all.
"""

from __future__ import annotations

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as preservation
from orbax.checkpoint.checkpoint_managers import save_decision_policy as save_decision

STATE = "state"
DATA_ITER = "data_iter"
BEST_MODES = ("min", "max")


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "checkpoints")


def checkpoint_manager(workdir: str, checkpoint_config) -> ocp.CheckpointManager:
    """The manager of `<workdir>/checkpoints` (use it as a context manager so pending saves finish).

    checkpoint_config fields: every_steps (save interval), keep_latest (N newest kept), keep_best (number
    of best kept, 0 = none), best_metric (a key of the metrics passed to `save_checkpoint`, e.g. "rmse"),
    best_mode ("min" or "max"), async_save.
    """
    every = int(checkpoint_config.every_steps)
    if every < 1:
        raise ValueError(f"checkpoint.every_steps must be ≥ 1, got {every}.")
    if int(checkpoint_config.keep_latest) < 1:
        raise ValueError(f"checkpoint.keep_latest must be ≥ 1 (resume needs the latest), got "
                         f"{checkpoint_config.keep_latest}.")
    if checkpoint_config.best_mode not in BEST_MODES:
        raise ValueError(f"checkpoint.best_mode must be one of {BEST_MODES}, got {checkpoint_config.best_mode!r}.")
    policies = [preservation.LatestN(n=int(checkpoint_config.keep_latest))]
    if int(checkpoint_config.keep_best) > 0:
        metric = checkpoint_config.best_metric
        # BestN keeps the last n after sorting; reverse=True sorts descending so the smallest values stay.
        policies.append(preservation.BestN(get_metric_fn=lambda metrics: float(metrics[metric]),
                                           reverse=checkpoint_config.best_mode == "min",
                                           n=int(checkpoint_config.keep_best),
                                           keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=save_decision.FixedIntervalPolicy(every),
        preservation_policy=preservation.AnyPreservationPolicy(policies),
        enable_async_checkpointing=bool(checkpoint_config.async_save),
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=(STATE, DATA_ITER))


def latest_saved_step(workdir: str) -> int | None:
    """The step of the latest complete checkpoint in `workdir`, or None (reads the folder, loads nothing)."""
    if not os.path.isdir(checkpoint_dir(workdir)):
        return None
    with ocp.CheckpointManager(checkpoint_dir(workdir), item_names=(STATE, DATA_ITER),
                               options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
        return manager.latest_step()


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state, data_iterator, *,
                    metrics: dict | None = None, force: bool = False) -> bool:
    """Saves state and iterator position at `step` if the save policy (or `force`) says so; returns whether."""
    if not force and not manager.should_save(step):
        return False
    args = ocp.args.Composite(**{STATE: ocp.args.StandardSave(state),
                                 DATA_ITER: ocp.args.JsonSave(data_iterator.get_state())})
    return manager.save(step, args=args, metrics=metrics, force=force)


def restore_latest(manager: ocp.CheckpointManager, state_template, data_iterator):
    """(state, step) from the latest complete checkpoint, the iterator moved to its saved position; or
    (state_template, None) when there is none. The template's shardings place the restored arrays."""
    step = manager.latest_step()
    if step is None:
        return state_template, None
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
    restored = manager.restore(step, args=ocp.args.Composite(**{STATE: ocp.args.StandardRestore(abstract),
                                                                DATA_ITER: ocp.args.JsonRestore()}))
    data_iterator.set_state(restored[DATA_ITER])
    return restored[STATE], step


def restore_params(workdir: str, step: int | None = None):
    """The parameters ({'params': ...}, NumPy) of checkpoint `step` (default: the latest) of a workdir, for
    evaluation or comparison without a model or optimizer at hand; works whatever mesh or number of
    processes wrote the checkpoint (every array is restored whole onto this process's first device)."""
    with ocp.CheckpointManager(checkpoint_dir(workdir), item_names=(STATE, DATA_ITER),
                               options=ocp.CheckpointManagerOptions(read_only=True)) as manager:
        step = manager.latest_step() if step is None else step
    if step is None:
        raise ValueError(f"no checkpoint in {checkpoint_dir(workdir)}; train first (--mode=train).")
    path = os.path.join(checkpoint_dir(workdir), str(step), STATE)
    checkpointer = ocp.StandardCheckpointer()
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    # A target with this process's device: the saved shardings may name devices that do not exist here.
    target = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=local),
                          checkpointer.metadata(path).item_metadata)
    restored = checkpointer.restore(path, target)
    return jax.tree.map(np.asarray, restored["params"]), step
