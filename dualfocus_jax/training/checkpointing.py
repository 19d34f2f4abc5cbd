"""Checkpoints: an orbax CheckpointManager holding the training state and the input iterator's position.

Layout: `<workdir>/checkpoints/<step>/{state,data_iter}`. Saves are asynchronous and atomic (orbax writes a
temporary folder and renames it when complete), so a process killed mid-save leaves the previous checkpoints
readable and the next start resumes from the latest complete one. Preservation: the latest `keep_latest`
checkpoints, plus the `keep_best` best by a validation metric when checkpoints carry metrics.

The iterator position is stored as JSON captured at the moment of the save (`get_state()` is called before
the asynchronous write starts, so later steps cannot leak into it). It is the same on every process (each
process consumes one local batch per step), so one copy serves all.

Faults end in one message (a `CheckpointError`), never in an orbax traceback:
- A damaged checkpoint (a truncated or missing file, an unreadable iterator position, or a state whose
  parameters are not finite or exploded): `Checkpoints.restore_latest` falls back to the newest intact one,
  warns naming the damaged step and moves the damaged folder to `<workdir>/damaged_checkpoints/<step>` (kept
  for inspection; the run would otherwise save that step again). With no intact one left it stops and names
  the folders to move away.
- A checkpoint of another model or optimizer: `CheckpointMismatchError` listing the arrays that differ.
- A full disk or a file-size limit (`ulimit -f`): checked before each save against the size of the latest
  checkpoint, and a failed asynchronous write is noticed at the next step: `CheckpointWriteError` names the
  path, the space needed and the intact earlier checkpoints; the partial folder is removed.

Checkpoints written before `TrainState.params` held the parameter tree itself (it held the model's variables
`{'params': ...}`, and the optimizer's moments were nested the same way) are recognised by that one 'params'
key and migrated at restore (`legacy_state_layout`): old workdirs resume, evaluate and export as before.
"""

from __future__ import annotations

import errno
import os
import resource
import shutil
from collections.abc import Mapping

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as preservation
from orbax.checkpoint.checkpoint_managers import save_decision_policy as save_decision

from dualfocus_jax.inference.checkpoint_io import quiet_orbax, restore_on_first_device
from dualfocus_jax.training.train_state import state_guard_values, unhealthy_state_reason

STATE = "state"
DATA_ITER = "data_iter"
BEST_MODES = ("min", "max")
DAMAGED = "damaged_checkpoints"
_DISK_ERRNOS = {errno.ENOSPC: "no space left on the disk", errno.EFBIG: "a file exceeds the file size limit",
                errno.EDQUOT: "the disk quota is exceeded"}


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written, read or resumed; the message names the folder and the fix."""


class CheckpointWriteError(CheckpointError):
    """A save failed (full disk, file-size limit, ...); earlier checkpoints are intact."""


class CheckpointMismatchError(CheckpointError):
    """The checkpoints of a workdir belong to another model or optimizer than the config builds."""



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


class Checkpoints:
    """The checkpoints of one training run: restore with fallback, save with disk checks, one message per fault.

        with Checkpoints(workdir, config.checkpoint) as checkpoints:
            state, step = checkpoints.restore_latest(state_template, data_iterator)
            ...
            checkpoints.check_pending()        # every step: a failed asynchronous save stops the run at once
            checkpoints.save(step, state, data_iterator, metrics=validation, force=is_last)

    Leaving the block waits for the last save (and raises CheckpointWriteError if it failed, unless another
    exception is already on its way).
    """

    def __init__(self, workdir: str, checkpoint_config):
        self.workdir = os.path.abspath(workdir)
        self.directory = checkpoint_dir(workdir)
        self.manager = checkpoint_manager(workdir, checkpoint_config)
        self._pending: int | None = None  # step of an asynchronous save not yet known to be complete
        self._state_bytes = 0

    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        try:
            self.finish()
        except CheckpointWriteError:
            if exc_type is None:
                raise
        finally:
            try:
                self.manager.close()
            except Exception:  # noqa: BLE001 - a failed save re-raises here; it was reported already
                pass

    # ------------------------------------------------------------------ restore
    def restore_latest(self, state_template, data_iterator, *, quarantine: bool = True, warn=print):
        """(state, step) from the newest intact checkpoint, the iterator moved to its saved position; or
        (state_template, None) when there is none. The template's shardings place the restored arrays.

        Damaged checkpoints newer than it are reported through `warn` and, with `quarantine` (training),
        moved to `<workdir>/damaged_checkpoints/`. Raises CheckpointMismatchError when the latest checkpoint
        holds another model or optimizer, CheckpointError when no checkpoint is intact.
        """
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return state_template, None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state_template)
        damaged: list[tuple[int, str]] = []
        restored = None
        for step in steps:
            try:
                with quiet_orbax():  # it warns that the manager-level metadata file is not in the item folder
                    metadata = ocp.StandardCheckpointer().metadata(self._step_path(step, STATE)).item_metadata
            except Exception as error:  # noqa: BLE001 - orbax and tensorstore raise many types
                damaged.append((step, _short(error)))
                continue
            legacy = in_legacy_layout(metadata)
            target = legacy_state_layout(abstract) if legacy else abstract
            differences = tree_differences(metadata, target)
            if differences:
                raise CheckpointMismatchError(
                    f"the checkpoint at step {step} in {self.directory} holds another model or optimizer than this "
                    f"config builds ({len(differences)} arrays differ; checkpoint vs this config):\n  "
                    + "\n  ".join(differences[:8]) + ("\n  ..." if len(differences) > 8 else "")
                    + "\nResume it with the config it was trained with, or pass a new --workdir.")
            try:
                restored = self.manager.restore(step, args=ocp.args.Composite(**{
                    STATE: ocp.args.StandardRestore(target), DATA_ITER: ocp.args.JsonRestore()}))
                state = from_legacy_state_layout(restored[STATE], abstract) if legacy else restored[STATE]
                guard = {name: float(value) for name, value in jax.device_get(state_guard_values(state)).items()}
                reason = unhealthy_state_reason(guard["param_abs_max"], guard["opt_state_nonfinite"])
                if reason is None:
                    data_iterator.set_state(restored[DATA_ITER])
            except Exception as error:  # noqa: BLE001
                reason = _short(error)
            if reason is None:
                break
            damaged.append((step, reason))
            restored = None
        if damaged:
            self._report_damaged(damaged, None if restored is None else step, quarantine=quarantine, warn=warn)
        return state, step

    def _report_damaged(self, damaged, good_step, *, quarantine: bool, warn) -> None:
        folders = [self._step_path(step) for step, _ in damaged]
        listing = "; ".join(f"step {step} ({reason})" for step, reason in damaged)
        if good_step is None:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: {listing}. Move these folders away to start the run "
                f"again from step 0: {' '.join(folders)} (or pass a new --workdir).")
        moved = []
        if quarantine and jax.process_count() == 1:
            for step, _ in damaged:
                moved.append(self._quarantine(step))
            self.manager.reload()
            where = f"moved to {os.path.dirname(moved[0])}"
        else:
            where = f"left in place ({' '.join(folders)}; move them away before the run saves those steps again)"
        warn(f"warning: damaged checkpoint{'s' if len(damaged) > 1 else ''} in {self.directory}: {listing}; "
             f"{where}; resuming from the newest intact checkpoint, step {good_step}.")

    def _quarantine(self, step: int) -> str:
        root = os.path.join(self.workdir, DAMAGED)
        os.makedirs(root, exist_ok=True)
        target, copy = os.path.join(root, str(step)), 1
        while os.path.exists(target):
            target, copy = os.path.join(root, f"{step}-{copy}"), copy + 1
        os.rename(self._step_path(step), target)
        return target

    def _step_path(self, step: int, item: str = "") -> str:
        return os.path.join(self.directory, str(step), item) if item else os.path.join(self.directory, str(step))

    # ------------------------------------------------------------------ save
    def will_save(self, step: int, *, force: bool = False) -> bool:
        """Whether `save(step, ..., force=force)` would write a checkpoint (so its state is checked first)."""
        return force or self.manager.should_save(step)

    def save(self, step: int, state, data_iterator, *, metrics: dict | None = None, force: bool = False) -> bool:
        """Saves state and iterator position at `step` if the save policy (or `force`) says so; returns whether.

        Raises CheckpointWriteError (before writing anything when the free space or the file-size limit is
        known to be too small, or when this or the previous save failed)."""
        if not force and not self.manager.should_save(step):
            return False
        self.finish()  # the previous save must be complete (orbax waits for it anyway)
        self._state_bytes = sum(int(np.prod(leaf.shape)) * leaf.dtype.itemsize for leaf in jax.tree.leaves(state))
        self._check_space(step)
        args = ocp.args.Composite(**{STATE: ocp.args.StandardSave(state),
                                     DATA_ITER: ocp.args.JsonSave(data_iterator.get_state())})
        try:
            saved = self.manager.save(step, args=args, metrics=metrics, force=force)
        except Exception as error:  # noqa: BLE001
            raise self._write_error(step, error) from None
        if saved:
            self._pending = step
        return saved

    def check_pending(self) -> None:
        """Raises CheckpointWriteError if the last asynchronous save has ended in failure (cheap; call it every
        step, so a full disk stops the run at once instead of at the next save)."""
        if self._pending is not None and not self.manager.is_saving_in_progress():
            self.finish()

    def finish(self) -> None:
        """Waits for the last save; CheckpointWriteError if it failed."""
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            self.manager.wait_until_finished()
        except Exception as error:  # noqa: BLE001
            raise self._write_error(step, error) from None

    def _complete_steps(self) -> list[int]:
        return saved_steps(self.workdir)

    def _checkpoint_sizes(self) -> tuple[int, int]:
        """(total bytes, largest file) of the latest complete checkpoint, (0, 0) without one."""
        steps = self._complete_steps()
        if not steps:
            return 0, 0
        sizes = [os.path.getsize(os.path.join(root, name))
                 for root, _, names in os.walk(self._step_path(steps[-1])) for name in names]
        return sum(sizes), max(sizes, default=0)

    def _needed_bytes(self) -> int:
        return self._checkpoint_sizes()[0] or self._state_bytes

    def _check_space(self, step: int) -> None:
        if jax.process_count() > 1:  # every process must take the same decision; the write errors still apply
            return
        total, largest = self._checkpoint_sizes()
        needed = total or self._state_bytes
        free = shutil.disk_usage(self.directory).free
        limit = _file_size_limit()
        if free < needed:
            raise self._write_error(step, None, reason=f"{_mb(free)} free on that disk, {_mb(needed)} needed")
        if limit is not None and largest > limit:
            raise self._write_error(step, None, reason=f"the largest file of the last checkpoint ({_mb(largest)}) "
                                                       f"exceeds the file size limit (ulimit -f) of {_mb(limit)}")

    def _write_error(self, step: int, error: BaseException | None, *, reason: str = "") -> CheckpointWriteError:
        """The one message of a failed save; removes the partial folder of `step`."""
        if jax.process_index() == 0 and os.path.isdir(self.directory):
            for name in os.listdir(self.directory):
                if name.startswith(f"{step}.orbax-checkpoint-tmp"):
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        reason = reason or _disk_error_reason(error)
        needed = self._needed_bytes()
        free = shutil.disk_usage(self.directory).free if os.path.isdir(self.directory) else 0
        limit = _file_size_limit()
        intact = self._complete_steps()
        plural = "s" if len(intact) > 1 else ""
        kept = (f"the checkpoint{plural} of step{plural} {', '.join(map(str, intact))} in {self.directory} "
                f"{'are' if plural else 'is'} intact and rerunning the same command resumes from step {intact[-1]}"
                if intact else
                f"no earlier checkpoint exists in {self.directory}")
        return CheckpointWriteError(
            f"could not write the checkpoint of step {step} to {self._step_path(step)}: {reason}. A checkpoint of "
            f"this run needs about {_mb(needed)} ({_mb(free)} free on that disk"
            + (f", file size limit {_mb(limit)}" if limit is not None else "") + f"). Training stopped; {kept}. "
            "Free some space (or raise the limit) and rerun.")


def in_legacy_layout(saved_state) -> bool:
    """Whether a saved state (its restored tree or its orbax metadata) is in `legacy_state_layout`: its
    `params` hold one key, 'params' (the model's own top-level parameters are its submodules: encoder, ...)."""
    try:
        params = saved_state["params"]
    except (KeyError, TypeError, IndexError):
        return False
    return isinstance(params, Mapping) and set(params) == {"params"}


def legacy_state_layout(state):
    """`state` (a TrainState, or its abstract shapes) in the layout of the checkpoints written before
    `TrainState.params` held the parameter tree itself: every subtree shaped like `state.params` (the
    parameters, and the optimizer's moments mu and nu) nested under one key, 'params'."""
    params_def = jax.tree.structure(state.params)

    def shaped_like_params(node) -> bool:
        return jax.tree.structure(node) == params_def

    # tree.map calls the function on every leaf too (the step, the optimizer's counts): those stay as they are.
    return jax.tree.map(lambda node: {"params": node} if shaped_like_params(node) else node, state,
                        is_leaf=shaped_like_params)


def from_legacy_state_layout(restored, state_template):
    """A state restored in `legacy_state_layout(state_template)` in the template's (current) layout. Nesting
    under a single key keeps the order of the leaves, so they are the template's leaves, in order."""
    leaves = jax.tree.leaves(restored)
    layout = jax.tree.structure(state_template)
    if len(leaves) != layout.num_leaves:
        raise ValueError(f"a legacy-layout state of {len(leaves)} arrays cannot fill {layout.num_leaves}.")
    return jax.tree.unflatten(layout, leaves)


def tree_differences(saved_metadata, abstract_state) -> list[str]:
    """'path: checkpoint … vs this config …' for each array whose presence, shape or dtype differs between a
    checkpoint's metadata tree and the abstract state a config builds (empty when they match)."""
    saved = _shapes_by_path(saved_metadata)
    expected = _shapes_by_path(abstract_state)
    differences = []
    for path in sorted(set(saved) | set(expected), key=lambda path: (not path.startswith("params"), path)):
        if saved.get(path) != expected.get(path):
            differences.append(f"{path}: {saved.get(path, 'absent')} vs {expected.get(path, 'absent')}")
    return differences


def _shapes_by_path(tree) -> dict[str, str]:
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = []
        for key in path:
            for attribute in ("name", "key", "idx"):
                if hasattr(key, attribute):
                    names.append(str(getattr(key, attribute)))
                    break
        shape = getattr(leaf, "shape", None)
        dtype = getattr(leaf, "dtype", None)
        text = str(tuple(shape)) if shape is not None else "?"
        shapes["/".join(names)] = f"{text} {np.dtype(dtype).name}" if dtype is not None else text
    return shapes


def _file_size_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _short(error: BaseException) -> str:
    """The error in a few words: its type and the start of its first line, without tensorstore's spec dump."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = text.split(" See full TensorStore details")[0].split(" index: (")[0]
    return f"{type(error).__name__}: {text[:120]}"


def _disk_error_reason(error: BaseException | None) -> str:
    """What went wrong in words: the disk condition of an OSError anywhere in the chain or named in the text
    (tensorstore reports 'OS error 28' inside its own message), else the first line of the error."""
    seen, current = [], error
    while current is not None and current not in seen:
        seen.append(current)
        if isinstance(current, OSError) and current.errno in _DISK_ERRNOS:
            return _DISK_ERRNOS[current.errno]
        current = current.__cause__ or current.__context__
    text = " ".join(str(item) for item in seen)
    for number, words in _DISK_ERRNOS.items():
        if os.strerror(number) in text or f"error {number}:" in text.lower() or f"errno {number}" in text.lower():
            return words
    return _short(error) if error is not None else "unknown error"


def saved_steps(workdir: str) -> list[int]:
    """The steps of the complete checkpoints in `workdir`, ascending (reads the folder names, loads nothing:
    orbax names a step's folder by its number only once the save is complete)."""
    folder = checkpoint_dir(workdir)
    if not os.path.isdir(folder):
        return []
    return sorted(int(name) for name in os.listdir(folder) if name.isdigit())


def latest_saved_step(workdir: str) -> int | None:
    """The step of the latest complete checkpoint in `workdir`, or None."""
    steps = saved_steps(workdir)
    return steps[-1] if steps else None


def restore_params(workdir: str, step: int | None = None):
    """The model's variables ({'params': ...}, NumPy) of checkpoint `step` (default: the latest) of a workdir,
    for evaluation or comparison without a model or optimizer at hand; works whatever mesh or number of
    processes wrote the checkpoint (every array is restored whole onto this process's first device), and for
    both layouts of the state (`params` the parameter tree, or the variables in checkpoints written before)."""
    step = latest_saved_step(workdir) if step is None else step
    if step is None:
        raise ValueError(f"no checkpoint in {checkpoint_dir(workdir)}; train first (--mode=train).")
    path = os.path.join(checkpoint_dir(workdir), str(step), STATE)
    try:
        restored = restore_on_first_device(path)
    except Exception as error:  # noqa: BLE001 - orbax and tensorstore raise many types
        raise CheckpointError(f"cannot read the checkpoint at step {step} in {checkpoint_dir(workdir)} "
                              f"({_short(error)}); it is damaged. Move {os.path.dirname(path)} away (training "
                              "then resumes from the newest intact one) or pass another step.") from None
    params = restored["params"]
    return jax.tree.map(np.asarray, params if in_legacy_layout(restored) else {"params": params}), step
