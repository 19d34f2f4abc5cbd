"""The training and evaluation loop: one linear function, read top to bottom (big_vision style).

    train_and_evaluate(config, workdir, mode="train_and_eval")

It checks the run and takes the workdir's lock (one training run per workdir), then `_train_and_evaluate` runs.
Sections: setup → mesh → input → model and optimizer → state and resume → update step → loop (guard, log,
validate, checkpoint) → evaluations. Everything it calls lives in its own module of this package; the
launcher (`experiments/train.py`) only parses flags and calls this.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable

import jax
from jax.experimental.compilation_cache import compilation_cache

from dualfocus_jax.evaluation.evaluate import prediction_function
from dualfocus_jax.evaluation.evaluators import build_evaluators, evaluate_entry, run_evaluators
from dualfocus_jax.evaluation.reports import write_evaluation_report
from dualfocus_jax.folder_lock import FolderBusy, FolderLock
from dualfocus_jax.inference.checkpoint_io import load_exported_checkpoint
from dualfocus_jax.model import DualFocusConfig, load_torchvision_resnet18, parameter_count
from dualfocus_jax.prepared_splits import disparity_focus_conflict
from dualfocus_jax.progress_log import say, warn
from dualfocus_jax.training import checkpointing
from dualfocus_jax.training import mesh as mesh_lib
from dualfocus_jax.training.device_prefetch import DevicePrefetcher
from dualfocus_jax.training.input_pipeline import training_iterator
from dualfocus_jax.training.metric_log import MetricLog
from dualfocus_jax.training.train_state import (
    PARAM_ABS_LIMIT,
    initial_train_state,
    optimizer_and_schedule,
    train_state_from_params,
)
from dualfocus_jax.training.train_step import make_train_step, raise_if_not_finite

MODES = ("train", "eval", "train_and_eval")
# Written into the workdir when training starts: the resolved experiment config and the full model config.
# A resume compares them with the new config (model and optimizer must match; see `check_resume_matches`).
RUN_CONFIG = "config.json"
RUN_MODEL = "model.json"
RESUME_MUST_MATCH = ("model", "optimizer")
WORKDIR_LOCK = ".dualfocus_train.lock"  # held while a run trains in the workdir (see `training_lock`)
# Model fields a resume may change (with a warning): none of them changes an array of the saved state or what
# the parameters mean (loss weights and tolerances, the solver's method and iterations, padding, the 3D
# convolution's implementation, the inference projection). Every other field must match.
RESUME_TUNABLE_MODEL = ("lambda_sv", "lambda_fv", "tau_rel", "level_weights", "smooth_l1_beta",
                        "gt_min_valid_fraction", "solver", "cg_iters", "pad_mode", "conv3d_impl", "dtype",
                        "project_unimodal_at_inference")


def model_config_from(model_block) -> DualFocusConfig:
    """The `DualFocusConfig` of a config's `model` block (`configs.common.model_block`): size and variant pick
    `model_config(size, variant)`, every other field that is set (not None) overrides it. Lists (a config read
    back from JSON) become tuples; a key that is no field of DualFocusConfig raises ValueError naming it.
    dtype "auto" becomes this backend's compute dtype (`backend_dtype`)."""
    values = {key: value for key, value in model_block.to_dict().items() if value is not None}
    if values.get("dtype") == "auto":
        values["dtype"] = backend_dtype()
    return DualFocusConfig.from_config_dict(values)


def backend_dtype(platform: str | None = None) -> str:
    """The compute dtype of config.model.dtype="auto" on `platform` (default: JAX's backend): float32 on a
    CPU, where XLA's bfloat16 convolutions and matrix multiplies are no faster, bfloat16 on GPUs and TPUs,
    whose matrix units run bfloat16 at several times their float32 rate (`benchmarks/bench_precision.py`
    measures both speed and the accuracy change; the README gives the figures)."""
    return "float32" if (platform or jax.default_backend()) == "cpu" else "bfloat16"


def _config_json(config) -> dict:
    return json.loads(config.to_json_best_effort())


def _differences(stored, current, prefix: str) -> list[str]:
    """'prefix.key: stored → current' for each leaf value that differs between two JSON trees."""
    if isinstance(stored, dict) and isinstance(current, dict):
        found = []
        for key in sorted(set(stored) | set(current)):
            found += _differences(stored.get(key, "(absent)"), current.get(key, "(absent)"), f"{prefix}.{key}")
        return found
    unset = (None, "(absent)")  # a field a recorded config predates and one left unset are the same
    if stored == current or (stored in unset and current in unset):
        return []
    return [f"{prefix}: {stored!r} in the checkpoints, {current!r} now"]


def _model_field_defaults() -> dict:
    return json.loads(json.dumps({f.name: f.default for f in dataclasses.fields(DualFocusConfig)}))


def check_resume_matches(workdir: str, config, model_config: DualFocusConfig) -> None:
    """Before any heavy work: when `workdir` holds checkpoints and the config its run recorded, compares the
    model and optimizer blocks (and the full model config they resolve to) with the new config.

    Another model size, variant or architecture, another optimizer, or gradient clipping switched on or off
    (each changes the arrays of the saved state) raise one CheckpointMismatchError listing every difference.
    A changed setting that keeps the state's arrays (a lower learning rate after a divergence, a loss weight)
    is allowed, with a warning naming it. Workdirs from before these records are checked array by array at
    restore instead.
    """
    path = os.path.join(workdir, RUN_CONFIG)
    if not os.path.isfile(path) or checkpointing.latest_saved_step(workdir) is None:
        return
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    except (OSError, ValueError) as error:
        warn(f"warning: cannot read {path} ({type(error).__name__}); the restore will compare the arrays instead.")
        return
    current = _config_json(config)
    changed = {block: _differences(stored.get(block, {}), current.get(block, {}), block)
               for block in RESUME_MUST_MATCH}
    model_path = os.path.join(workdir, RUN_MODEL)
    if os.path.isfile(model_path):
        try:
            with open(model_path, encoding="utf-8") as handle:
                stored_model = json.load(handle)["model_config"]
            # A field added to DualFocusConfig after the run was recorded takes its default, which is how the
            # code of that time behaved (e.g. `expectation`): the same model, not a mismatch.
            stored_model = {**_model_field_defaults(), **stored_model}
            # The model is compared as what it resolves to (an unset field and its size/variant default are the
            # same model); the config block only for the size and variant it asked for.
            picked = ("model.size", "model.variant")
            resolved = _differences(stored_model, json.loads(json.dumps(model_config.to_dict())), "model")
            changed["model"] = ([line for line in changed["model"] if line.split(":")[0] in picked]
                                + [line for line in resolved if line.split(":")[0] not in picked])
        except (OSError, ValueError, KeyError) as error:
            warn(f"warning: cannot read {model_path} ({type(error).__name__}); not compared.")
    tunable = {f"model.{key}" for key in RESUME_TUNABLE_MODEL}
    tunable |= {f"optimizer.{key}" for key in current["optimizer"]} - {"optimizer.name"}
    blocking = [line for lines in changed.values() for line in lines if line.split(":")[0] not in tunable]
    clip_before = float(stored.get("optimizer", {}).get("grad_clip_norm", 0) or 0) > 0
    if clip_before != (float(config.optimizer.grad_clip_norm) > 0):
        blocking.append(f"optimizer.grad_clip_norm: clipping {'on' if clip_before else 'off'} in the checkpoints, "
                        f"{'off' if clip_before else 'on'} now (its state is part of the checkpoint)")
    allowed = [line for lines in changed.values() for line in lines if line not in blocking]
    if blocking:
        raise checkpointing.CheckpointMismatchError(
            f"{workdir} holds checkpoints (latest step {checkpointing.latest_saved_step(workdir)}) of a run with "
            f"another model or optimizer; {len(blocking + allowed)} difference(s):\n  "
            + "\n  ".join(blocking + allowed)
            + f"\nResume with the settings it was trained with (recorded in {path}), or pass a new --workdir "
            "for a new run.")
    if allowed:
        warn("warning: resuming with changed settings: " + "; ".join(allowed))


def initial_state_from_export(folder: str, model_config: DualFocusConfig, optimizer, template):
    """Step 0 with the parameters of the exported checkpoint `folder` (modules it lacks, such as a refinement the
    config adds, freshly initialised); ValueError naming the fields when a module it has does not fit the one
    this config builds."""
    variables, exported_config = load_exported_checkpoint(folder)
    exported = dict(variables["params"])
    # A module this config adds to the exported architecture (e.g. the full-resolution refinement) starts
    # from its fresh initialisation; every module the export has must fit exactly.
    added = sorted(set(template.params) - set(exported))
    exported.update({name: template.params[name] for name in added})
    shapes = jax.tree.map(lambda leaf: tuple(leaf.shape), exported)
    expected = jax.tree.map(lambda leaf: tuple(leaf.shape), dict(template.params))
    if shapes != expected:
        differences = _differences(exported_config.to_dict(), model_config.to_dict(), "model")
        raise ValueError(f"config.model_init.checkpoint={folder!r} holds another architecture than config.model "
                         f"builds ({'; '.join(differences[:6]) or 'parameter shapes differ'}); set config.model to "
                         "its size and variant or choose another checkpoint.")
    if added:
        say(f"== modules not in {folder}, freshly initialised: {', '.join(added)}")
    return train_state_from_params(exported, optimizer)


def fetch_metrics(pending: list[tuple[int, dict]]) -> list[tuple[int, dict[str, float]]]:
    """The metrics of the updates in `pending` as Python floats, in one transfer from the devices (the loop's
    only device-to-host fetch between validations and saves)."""
    values = jax.device_get([metrics for _, metrics in pending])
    return [(step, {name: float(value) for name, value in step_values.items()})
            for (step, _), step_values in zip(pending, values)]


def write_run_config(workdir: str, config, model_config: DualFocusConfig) -> None:
    """<workdir>/config.json (the resolved experiment config) and model.json (the full model config), each
    written to a temporary name and renamed, so a crash never leaves half a file."""
    records = {RUN_CONFIG: _config_json(config), RUN_MODEL: {"model_config": model_config.to_dict()}}
    for name, record in records.items():
        path = os.path.join(workdir, name)
        with open(path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(record, handle, indent=2, default=str)
        os.replace(path + ".tmp", path)


def check_run(config, workdir: str, mode: str = "train_and_eval"):
    """The checks `train_and_evaluate` makes before anything heavy (mode, model, optimizer and evaluation
    blocks, a checkpoint for --mode=eval, a resume that matches the run); a ValueError names the problem.
    Returns (model config, optimizer, learning-rate schedule, total steps)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    workdir = os.path.abspath(workdir)
    model_config = model_config_from(config.model)  # validates the model block before anything heavy
    check_training_sources_focus_unit(config.input.sources, model_config.expectation, model_config.slice_prior)
    # Builds the evaluators (and validation's protocol), so a bad kind or protocol is reported before training.
    build_evaluators({"validation": config.validation} if config.validation.dataset else {})
    build_evaluators(config.evals)
    total_steps = int(config.train.total_steps)
    if total_steps < 1:
        raise ValueError(f"train.total_steps must be ≥ 1, got {total_steps}.")
    if mode == "eval" and checkpointing.latest_saved_step(workdir) is None:
        raise ValueError(f"--mode=eval needs a checkpoint in {checkpointing.checkpoint_dir(workdir)}; "
                         "train first (--mode=train or train_and_eval), or point --workdir at a trained run.")
    optimizer, schedule = optimizer_and_schedule(config.optimizer, total_steps)  # validates the optimizer block
    check_resume_matches(workdir, config, model_config)
    return model_config, optimizer, schedule, total_steps


def check_training_sources_focus_unit(sources, expectation: str, slice_prior: str = "none") -> None:
    """ValueError when a model that works in inverse focus distance (an expectation over it, or slice weights
    by it) would train on disparity focus values (validation and evaluation on them work:
    `evaluation.evaluate.evaluate_model`)."""
    for name, source in sources.items():
        conflict = disparity_focus_conflict(source.get("dataset"), expectation, slice_prior)
        if conflict:
            raise ValueError(f"config.input.sources.{name}: {conflict} Or leave that source out.")


class WorkdirBusy(ValueError):
    """Another live process trains in the workdir; the message names it and the fix."""


def training_lock(workdir: str, mode: str):
    """The workdir's lock (held by process 0 of a run that trains): two runs training in one workdir would
    write each other's checkpoints and logs. An evaluation only reads checkpoints and takes none, so a run can
    be evaluated while it trains."""
    if mode == "eval" or jax.process_index() != 0:
        return contextlib.nullcontext()
    os.makedirs(workdir, exist_ok=True)
    lock = FolderLock(os.path.join(workdir, WORKDIR_LOCK))
    try:
        lock.acquire()
    except FolderBusy as busy:
        raise WorkdirBusy(
            f"{workdir} is being trained by another process ({busy.holder}); two runs in one workdir would "
            "overwrite each other's checkpoints. Wait for it to finish (rerunning then resumes from its latest "
            "checkpoint), stop it, or pass another --workdir.") from None
    return lock


def train_and_evaluate(config, workdir: str, mode: str = "train_and_eval", *,
                       prepare_data: Callable[[], object] | None = None) -> dict:
    """Trains (resuming from `workdir` if it holds checkpoints) and/or evaluates; returns
    {"step": final step, "evals": {name: {row: metrics}}}. Reads prepared datasets only: `prepare_data`, called
    after `check_run` and before any dataset is opened, is where an entry point prepares missing embedded
    ones (`experiments.data_setup.prepare_missing_embedded`), so a config mistake is reported before that."""
    model_config, optimizer, schedule, total_steps = check_run(config, workdir, mode)
    workdir = os.path.abspath(workdir)
    with training_lock(workdir, mode):
        if prepare_data is not None:
            prepare_data()
        return _train_and_evaluate(config, workdir, mode, model_config, optimizer, schedule, total_steps)


def _train_and_evaluate(config, workdir: str, mode: str, model_config: DualFocusConfig, optimizer, schedule,
                        total_steps: int) -> dict:
    # ---------------------------------------------------------------- setup
    if config.compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", os.path.abspath(config.compilation_cache_dir))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        compilation_cache.reset_cache()  # takes the new folder even if this process compiled before
    os.makedirs(workdir, exist_ok=True)
    is_writer = jax.process_index() == 0
    if is_writer and mode != "eval":
        write_run_config(workdir, config, model_config)
    metric_log = MetricLog(workdir, enabled=is_writer)
    say(f"== DualFocus {model_config.size}/{model_config.variant} in {workdir} ({mode})")

    # ---------------------------------------------------------------- mesh
    mesh = mesh_lib.data_parallel_mesh()
    mesh_lib.check_global_batch(int(config.input.batch_size), mesh)
    say(f"== mesh: {mesh.devices.size} devices {dict(mesh.shape)} over {jax.process_count()} process(es); "
        f"this is process {jax.process_index()} with {jax.local_device_count()} local device(s) "
        f"({jax.devices()[0].platform})")

    # ---------------------------------------------------------------- input
    data_iterator = DevicePrefetcher(training_iterator(config.input, seed=int(config.seed),
                                                       process_index=jax.process_index(),
                                                       process_count=jax.process_count()),
                                     mesh, depth=int(config.input.get("device_prefetch", 2)))

    # ---------------------------------------------------------------- model and optimizer
    init_rng = jax.random.key(int(config.seed))
    fresh_state = initial_train_state(model_config, optimizer, init_rng)
    init_from = str(config.get("model_init", {}).get("checkpoint", "") or "")
    imagenet_npz = str(config.get("model_init", {}).get("imagenet_npz", "") or "")
    if init_from and imagenet_npz:
        raise ValueError("config.model_init: set checkpoint or imagenet_npz, not both (an exported checkpoint "
                         "already holds its encoder).")
    if init_from and checkpointing.latest_saved_step(workdir) is None:
        fresh_state = initial_state_from_export(init_from, model_config, optimizer, fresh_state)
        say(f"== parameters initialised from {init_from}")
    if imagenet_npz and checkpointing.latest_saved_step(workdir) is None:
        fresh_state = train_state_from_params(load_torchvision_resnet18(fresh_state.params, imagenet_npz), optimizer)
        say(f"== encoder trunk initialised from {imagenet_npz} (ImageNet ResNet-18)")
    say(f"== model: {parameter_count(fresh_state.params):,} parameters; optimizer {config.optimizer.name} "
        f"lr {config.optimizer.lr} ({config.optimizer.schedule}), clip {config.optimizer.grad_clip_norm}")

    # ---------------------------------------------------------------- state and resume
    state = mesh_lib.replicated_on_mesh(fresh_state, mesh)
    del fresh_state
    results: dict = {"evals": {}}
    with checkpointing.Checkpoints(workdir, config.checkpoint) as checkpoints:
        state, restored_step = checkpoints.restore_latest(state, data_iterator, quarantine=mode != "eval",
                                                          warn=warn)
        start_step = int(restored_step or 0)
        say(f"== {'resumed from checkpoint at step ' + str(start_step) if restored_step else 'starting from step 0'}")

        # ------------------------------------------------------------ update step
        fast_compile = bool(config.train.fast_compile)
        train_step = make_train_step(model_config, optimizer, schedule, mesh, fast_compile=fast_compile)
        predict = prediction_function(model_config, mesh=mesh, fast_compile=fast_compile)

        # ------------------------------------------------------------ loop
        last_saved = restored_step
        if mode != "eval" and start_step < total_steps:
            say(f"== training steps {start_step + 1}..{total_steps}, global batch {config.input.batch_size}")
            tick, tick_step = time.perf_counter(), start_step
            # Metrics stay on the device between the steps that need them (log, validation, save), so the host
            # never waits for an update and prepares the next batch while the device computes; `pending` holds
            # the unread metrics of each update since the last check.
            pending: list[tuple[int, dict]] = []
            param_abs_limit = float(config.train.get("max_param_abs", PARAM_ABS_LIMIT))
            for step in range(start_step + 1, total_steps + 1):
                batch = next(data_iterator)
                state, device_metrics = train_step(state, batch)
                pending.append((step, device_metrics))
                is_last = step == total_steps
                is_log = step % int(config.train.log_every_steps) == 0 or is_last
                validates = bool(config.validation.dataset) and (
                    step % int(config.train.validate_every_steps) == 0 or is_last)
                saves = checkpoints.will_save(step, force=is_last)
                if not (is_log or validates or saves):
                    continue
                # Every update since the last check is checked (finite, not exploding) before its state can be
                # validated or saved, so a checkpoint on disk never holds a diverged state.
                metrics = None
                for checked_step, values in fetch_metrics(pending):
                    raise_if_not_finite(values, checked_step, last_saved, checkpointing.checkpoint_dir(workdir),
                                        param_abs_limit=param_abs_limit)
                    metrics = values
                pending.clear()
                del metrics["opt_state_nonfinite"]
                checkpoints.check_pending()  # a failed asynchronous save stops the run here, not later
                if is_log:
                    elapsed = time.perf_counter() - tick
                    metrics["steps_per_second"] = (step - tick_step) / max(elapsed, 1e-9)
                    metrics["examples_per_second"] = metrics["steps_per_second"] * int(config.input.batch_size)
                    tick, tick_step = time.perf_counter(), step
                    metric_log.write("train", step, metrics)
                    say(f"step {step}/{total_steps}: " + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
                validation = None
                if validates:
                    validation = evaluate_entry({"params": state.params}, model_config, config.validation,
                                                config.input.data_dir, predict=predict).metrics
                    metric_log.write("validation", step, validation)
                    say(f"validation at step {step}: " + ", ".join(f"{k}={v:.4g}" for k, v in validation.items()))
                if saves and checkpoints.save(step, state, data_iterator, metrics=validation, force=is_last):
                    last_saved = step
                    say(f"checkpoint at step {step}")
            checkpoints.finish()
        results["step"] = int(jax.device_get(state.step))

        # ------------------------------------------------------------ evaluations
        if mode != "train" and len(config.evals):
            # Built on first use (by an untrained_network evaluator), once.
            untrained_params = functools.cache(lambda: mesh_lib.replicated_on_mesh(
                {"params": initial_train_state(model_config, optimizer, init_rng).params}, mesh))
            reports = run_evaluators(build_evaluators(config.evals), step=results["step"], say=say,
                                     params={"params": state.params}, untrained_params=untrained_params,
                                     model_config=model_config, data_dir=config.input.data_dir, predict=predict)
            for name, report in reports.items():
                results["evals"][name] = report.rows
                if is_writer:
                    write_evaluation_report(os.path.join(workdir, "eval", name), name, report.settings,
                                            report.outcome, report.rows, results["step"], say=say)
                metric_log.write(f"eval_{name}", results["step"], report.outcome.metrics)
    metric_log.close()
    return results
