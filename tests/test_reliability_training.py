"""Training survives faults without losing or poisoning checkpoints, and the launcher answers user errors with
one message (issue 13: items 1, 5, 6, 7, 8, 10).

Every fault is produced for real through `python -m experiments.train` in a child process, on the tiny
array_record dataset of test_train_data with `configs/demo.py:runlocal` (small model, 32×32 crops, 3 slices,
batch 2, fast compile, no validation): a learning rate of 1e10, a truncated checkpoint file, a file-size
limit (RLIMIT_FSIZE with SIGXFSZ ignored, so writes fail with EFBIG as on a full disk), a resume with another
model and optimizer, and misspelt or impossible command lines. The children share a persistent compilation
cache, so only the first run of each distinct update step compiles.
"""

import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from test_train_data import prepare_tiny_focal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def child_env():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1")
    env.pop("XLA_FLAGS", None)
    return env


def launcher(workdir, data_dir, cache_dir, *extra):
    return [sys.executable, "-m", "experiments.train", "--config=configs/demo.py:runlocal", f"--workdir={workdir}",
            "--mode=train", f"--config.input.data_dir={data_dir}", "--config.input.prepare_if_missing=False",
            "--config.input.sources.synthetic_focal.dataset=tiny_focal",
            "--config.input.sources.synthetic_focal.split=train", "--config.validation.dataset=",
            "--config.train.total_steps=4", "--config.checkpoint.every_steps=2",
            f"--config.compilation_cache_dir={cache_dir}", *extra]


# Runs argv[1:] with SIGXFSZ ignored and RLIMIT_FSIZE at argv[1] bytes (both survive exec): writes beyond the
# limit then fail with EFBIG, as they fail with ENOSPC on a full disk. (A wrapper process rather than
# preexec_fn, which is unsafe in this multithreaded test process.)
LIMITED = ("import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           "limit = int(sys.argv[1]); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
           "os.execv(sys.argv[2], sys.argv[2:])")


def run(command, *, file_size_limit=None, timeout=300):
    if file_size_limit:
        command = [sys.executable, "-c", LIMITED, str(file_size_limit), *command]
    return subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout)


def steps_in(workdir, folder="checkpoints"):
    path = os.path.join(workdir, folder)
    return sorted(int(name.split("-")[0]) for name in os.listdir(path)) if os.path.isdir(path) else []


def assert_one_message(result, *fragments):
    """Exit status 1, no traceback anywhere, exactly one `error:` line on stderr, holding every fragment."""
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-3000:])
    return result.stderr[result.stderr.index("error:"):]


def largest_file(folder):
    files = [os.path.join(root, name) for root, _, names in os.walk(folder) for name in names]
    return max(files, key=os.path.getsize)


def max_abs_param(workdir, step):
    from dualfocus_jax.training.checkpointing import restore_params

    params, restored = restore_params(str(workdir), step)
    assert restored == step
    leaves = [np.asarray(leaf) for leaf in _leaves(params)]
    assert len(leaves) > 10
    return max(float(np.max(np.abs(leaf))) for leaf in leaves)


def _leaves(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    else:
        yield tree


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(root, data_dir, cache, workdir, stdout): a finished 4-step run with checkpoints at steps 2 and 4."""
    root = tmp_path_factory.mktemp("reliability")
    data_dir = prepare_tiny_focal(root / "tfds")
    cache = root / "jax_cache"
    workdir = root / "base"
    result = run(launcher(workdir, data_dir, cache))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert steps_in(workdir) == [2, 4]
    return root, data_dir, cache, workdir, result


def copy_of(trained, name):
    root, _, _, workdir, _ = trained
    target = root / name
    shutil.copytree(workdir, target)
    return target


# ---------------------------------------------------------------- item 10: quiet logs


def test_default_output_is_the_runs_own_progress_lines(trained):
    result = trained[4]
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.startswith("step 4/4:") for line in lines)
    library = [line for line in lines if line[:1] in "IW" and line[1:5].isdigit()]  # absl's I1202 / W1202 prefix
    assert library == [], library[:5]
    assert len(lines) < 20, lines


def test_verbosity_flag_brings_back_the_library_info_lines(trained):
    root, data_dir, cache, _, _ = trained
    result = run(launcher(root / "never_trained", data_dir, cache, "--mode=eval", "--verbosity=0"))
    assert result.returncode == 1
    assert "train.py" in result.stderr and "JAX " in result.stderr  # the launcher's own absl INFO line


# ---------------------------------------------------------------- item 1: the guard checks the saved state


def test_huge_learning_rate_stops_before_a_poisoned_state_is_saved(trained):
    root, data_dir, cache, _, _ = trained
    workdir = root / "diverged"
    # Warm-up from 0: update 1 uses lr 0 (its state is the initial one, saved); update 2 uses 2.5e9 and blows the
    # weights up to ~1e9 while its loss, computed before the update, is still finite.
    result = run(launcher(workdir, data_dir, cache, "--config.optimizer.lr=1e10", "--config.optimizer.warmup_steps=4",
                          "--config.checkpoint.every_steps=1"))
    message = assert_one_message(result, "diverged at step 2", "parameters exploded",
                                 "last good checkpoint (step 1)", "Lower optimizer.lr")
    assert "step 2/4" not in result.stdout  # stopped before logging or saving that state
    assert steps_in(workdir) == [1], message
    assert max_abs_param(workdir, 1) < 10  # the checkpoint it calls good is good


def test_guard_names_nonfinite_and_exploding_states():
    from dualfocus_jax.training.train_step import NonFiniteLossError, raise_if_not_finite

    healthy = {"loss_total": 0.1, "param_abs_max": 1.2, "opt_state_nonfinite": 0.0}
    raise_if_not_finite(healthy, 3, 2, "/w/checkpoints")
    with pytest.raises(NonFiniteLossError, match=r"step 3: its parameters exploded .*2e\+08.*step 2"):
        raise_if_not_finite(dict(healthy, param_abs_max=2e8), 3, 2, "/w/checkpoints")
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        raise_if_not_finite(dict(healthy, param_abs_max=float("nan")), 3, 2, "/w/checkpoints")
    with pytest.raises(NonFiniteLossError, match="7 values of its optimizer state"):
        raise_if_not_finite(dict(healthy, opt_state_nonfinite=7.0), 3, None, "/w/checkpoints")


def test_guard_values_see_nan_inf_and_size():
    import jax.numpy as jnp

    from dualfocus_jax.training.train_state import TrainState, state_guard_values

    def guard(params, mu):
        state = TrainState(step=jnp.zeros((), jnp.int32), params={"w": jnp.asarray(params)},
                           opt_state=({"mu": jnp.asarray(mu)}, jnp.zeros((), jnp.int32)))
        return {name: float(value) for name, value in state_guard_values(state).items()}

    assert guard([1.0, -3.0], [0.0, 1.0]) == {"param_abs_max": 3.0, "opt_state_nonfinite": 0.0}
    assert np.isnan(guard([1.0, np.nan], [0.0, 0.0])["param_abs_max"])
    assert guard([1.0, -np.inf], [0.0, 0.0])["param_abs_max"] == np.inf
    assert guard([1.0, 2.0], [np.inf, np.nan])["opt_state_nonfinite"] == 2.0


# ---------------------------------------------------------------- item 5: damaged checkpoints


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(trained):
    root, data_dir, cache, _, _ = trained
    workdir = copy_of(trained, "damaged")
    with open(largest_file(workdir / "checkpoints" / "4" / "state"), "r+b") as handle:
        handle.truncate(1000)
    result = run(launcher(workdir, data_dir, cache))  # the same 4-step run: its compiled step is cached
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "damaged checkpoint" in warnings[0] and "step 4 (" in warnings[0], result.stderr
    assert "resuming from the newest intact checkpoint, step 2" in warnings[0]
    assert "resumed from checkpoint at step 2" in result.stdout
    assert steps_in(workdir, "damaged_checkpoints") == [4]  # kept for inspection, out of the way
    assert steps_in(workdir) == [2, 4]  # step 4 trained again and saved anew
    assert max_abs_param(workdir, 4) < 10


def test_no_intact_checkpoint_names_the_folders_to_move(trained):
    root, data_dir, cache, _, _ = trained
    workdir = copy_of(trained, "all_damaged")
    for step in (2, 4):
        with open(largest_file(workdir / "checkpoints" / str(step) / "state"), "r+b") as handle:
            handle.truncate(1000)
    result = run(launcher(workdir, data_dir, cache))
    assert_one_message(result, "no intact checkpoint", str(workdir / "checkpoints" / "2"),
                       str(workdir / "checkpoints" / "4"))
    assert steps_in(workdir) == [2, 4]  # nothing moved or deleted


# ---------------------------------------------------------------- item 6: full disk / file-size limit


def test_file_size_limit_during_the_first_save_stops_with_one_message(trained):
    root, data_dir, cache, _, _ = trained
    workdir = root / "limited_fresh"
    result = run(launcher(workdir, data_dir, cache), file_size_limit=200_000)
    assert_one_message(result, f"could not write the checkpoint of step 2 to {workdir / 'checkpoints' / '2'}",
                       "file size limit", "needs about", "MB")
    assert os.listdir(workdir / "checkpoints") == []  # the partial folder is removed
    assert len(result.stdout.splitlines()) + len(result.stderr.splitlines()) < 20


def test_file_size_limit_after_earlier_checkpoints_keeps_them(trained):
    root, data_dir, cache, _, _ = trained
    workdir = copy_of(trained, "limited_resume")
    shutil.rmtree(workdir / "checkpoints" / "4")  # resume at step 2, so the save at step 4 meets the limit
    before = max_abs_param(workdir, 2)
    result = run(launcher(workdir, data_dir, cache), file_size_limit=200_000)
    assert_one_message(result, "could not write the checkpoint of step 4", "exceeds the file size limit",
                       "checkpoint of step 2 in", "is intact", "resumes from step 2")
    assert steps_in(workdir) == [2]
    assert not [name for name in os.listdir(workdir / "checkpoints") if "tmp" in name]
    assert max_abs_param(workdir, 2) == before


def test_write_errors_are_told_in_words():
    import errno

    from dualfocus_jax.training.checkpointing import _disk_error_reason

    assert _disk_error_reason(OSError(errno.ENOSPC, "No space left on device")) == "no space left on the disk"
    wrapped = ValueError('OUT_OF_RANGE: Failed to write 3554539 bytes to file 8: File too large [os_error_code=27]')
    assert _disk_error_reason(wrapped) == "a file exceeds the file size limit"
    chained = RuntimeError("save failed")
    chained.__cause__ = OSError(errno.EDQUOT, "Disk quota exceeded")
    assert _disk_error_reason(chained) == "the disk quota is exceeded"


# ---------------------------------------------------------------- item 7: resume with another model or optimizer


def test_resume_with_another_model_and_optimizer_lists_the_differences(trained):
    root, data_dir, cache, _, _ = trained
    workdir = copy_of(trained, "other_model")
    result = run(launcher(workdir, data_dir, cache, "--config.train.total_steps=6", "--config.model.variant=dfv",
                          "--config.optimizer.name=adam"))
    message = assert_one_message(result, "another model or optimizer",
                                 "model.variant: 'dualfocus' in the checkpoints, 'dfv' now",
                                 "optimizer.name: 'adamw' in the checkpoints, 'adam' now",
                                 str(workdir / "config.json"), "new --workdir")
    assert len(message) < 2000 and len(result.stderr) < 3000  # not a tree dump
    assert steps_in(workdir) == [2, 4]


def test_resume_check_allows_changed_rates_and_refuses_other_architectures(tmp_path, capsys):
    from configs import demo
    from dualfocus_jax.training.checkpointing import CheckpointMismatchError
    from dualfocus_jax.training.trainer import check_resume_matches, model_config_from, write_run_config

    config = demo.get_config("runlocal")
    write_run_config(str(tmp_path), config, model_config_from(config.model))
    check_resume_matches(str(tmp_path), config, model_config_from(config.model))  # no checkpoints: nothing to match
    os.makedirs(tmp_path / "checkpoints" / "4")
    lower = demo.get_config("runlocal")
    lower.optimizer.lr = 1e-5
    check_resume_matches(str(tmp_path), lower, model_config_from(lower.model))
    assert "optimizer.lr: 0.001 in the checkpoints, 1e-05 now" in capsys.readouterr().err
    paper = demo.get_config("runlocal")
    paper.model.size = "paper"
    with pytest.raises(CheckpointMismatchError, match="model.size: 'small' in the checkpoints, 'paper' now"):
        check_resume_matches(str(tmp_path), paper, model_config_from(paper.model))
    unclipped = demo.get_config("runlocal")
    unclipped.optimizer.grad_clip_norm = 0.0
    with pytest.raises(CheckpointMismatchError, match="clipping on in the checkpoints, off now"):
        check_resume_matches(str(tmp_path), unclipped, model_config_from(unclipped.model))


def test_a_second_run_in_a_workdir_being_trained_is_refused_and_touches_nothing(trained):
    from dualfocus_jax.training.trainer import WORKDIR_LOCK
    from test_folder_lock import holder_process

    root, data_dir, cache, _, _ = trained
    workdir = copy_of(trained, "busy")
    before = {name: os.path.getmtime(workdir / name) for name in ("config.json", "model.json")}
    holder = holder_process(workdir / WORKDIR_LOCK)  # stands for a training run that still works there
    try:
        result = run(launcher(workdir, data_dir, cache, "--config.train.total_steps=6"))
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert_one_message(result, f"{workdir} is being trained by another process (pid {holder.pid} on ",
                       "Wait for it to finish", "another --workdir")
    assert steps_in(workdir) == [2, 4]
    assert {name: os.path.getmtime(workdir / name) for name in before} == before


def test_workdir_without_a_recorded_config_is_compared_array_by_array(trained):
    import jax

    from configs import demo
    from dualfocus_jax.training.checkpointing import CheckpointMismatchError, Checkpoints
    from dualfocus_jax.training.train_state import initial_train_state, make_optimizer
    from dualfocus_jax.training.trainer import model_config_from

    workdir = copy_of(trained, "legacy")
    os.remove(workdir / "config.json")
    os.remove(workdir / "model.json")
    config = demo.get_config("runlocal")
    config.model.variant = "dfv"
    state = initial_train_state(model_config_from(config.model), make_optimizer(config.optimizer, 4),
                                jax.random.key(0))
    with Checkpoints(str(workdir), config.checkpoint) as checkpoints:
        with pytest.raises(CheckpointMismatchError, match=r"step 4 .* arrays differ[\s\S]*params/"):
            checkpoints.restore_latest(state, data_iterator=None)
    assert steps_in(workdir) == [2, 4]


# ---------------------------------------------------------------- item 8: user errors of the launcher


@pytest.mark.parametrize("extra, fragments", [
    (["--config.optimizer.lrr=1"], ["names no field", 'Did you mean "lr"']),
    (["--config.optimizer.lr=1e400"], ["optimizer.lr must be a finite number > 0, got inf"]),
    (["--mode=eval"], ["--mode=eval needs a checkpoint in"]),
    (["--config.input.sources.synthetic_focal.dataset=fod500"],
     ["dataset 'fod500' is not prepared under", "--dataset=fod500 --manual_dir=", "datasets/fod500/README.md"]),
])
def test_launcher_user_errors_give_one_message(trained, tmp_path, extra, fragments):
    _, data_dir, cache, _, _ = trained
    result = run(launcher(tmp_path / "w", data_dir, cache, *extra))
    assert result.returncode in (1, 2), result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])


def test_misspelt_config_argument_gives_one_message(tmp_path):
    result = run([sys.executable, "-m", "experiments.train", "--config=configs/demo.py:runlocl",
                  f"--workdir={tmp_path}"])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "unknown config argument 'runlocl'" in errors[0], result.stderr


def test_shutdown_noise_after_the_one_error_message_is_silenced(monkeypatch):
    """What library cleanup raises after fail() told the error, and orbax coroutines abandoned by a failed
    read, stay silent; anything else before an error still reaches the default hook."""
    from experiments import train  # here: it defines absl's global flags, which the launcher tests leave alone

    seen = []
    hook = train.ignore_closed_loop_callbacks(seen.append)
    noise = SimpleNamespace(exc_value=ValueError("read past the end"), object="<coroutine>")
    monkeypatch.setattr(train, "_ERROR_REPORTED", [])
    hook(noise)
    assert seen == [noise]
    monkeypatch.setattr(train, "_ERROR_REPORTED", ["no intact checkpoint"])
    hook(noise)
    hook(SimpleNamespace(exc_value=RuntimeError("Event loop is closed"), object=None))
    assert seen == [noise]
    # An orbax coroutine abandoned by a failed read, collected before any error is told, is silent too.
    monkeypatch.setattr(train, "_ERROR_REPORTED", [])
    orbax_code = compile("pass", "/site-packages/orbax/checkpoint/serialization.py", "exec")
    hook(SimpleNamespace(exc_value=Exception("Encountered error while reading array index"),
                         object=SimpleNamespace(cr_code=orbax_code)))
    assert seen == [noise]
