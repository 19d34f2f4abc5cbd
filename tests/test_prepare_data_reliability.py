"""Dataset preparation that loses nothing (issue 13, item 4): a rebuild is made beside the finished dataset
and swapped in at the end, so an interrupted or failed `--overwrite` (an exception, Ctrl-C, SIGKILL, a
file-size limit) leaves the previous copy readable with the same examples; concurrent preparations of one
dataset take turns on a lock file (the second waits, says so, and reuses the result); a killed preparation's
lock never blocks the next one; the entry point speaks in one `error:` line.

The dataset is fod500 shrunk to 5 scenes of 12 x 16 pixels (tests/test_dataset_fod500.py's fake files), and
for the training path synthetic_focal with its renderer replaced by a cheap stand-in, so each preparation
takes well under a second once the modules are imported.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from unittest import mock

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from datasets.common import safe_replace  # noqa: E402
from datasets.common.prepare import LOCK_NAME, PreparationInterrupted, prepare_dataset  # noqa: E402
from datasets.fod500 import fod500_dataset_builder as fod  # noqa: E402
from test_dataset_fod500 import write_scene  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"train": range(0, 3), "test": range(400, 402)}

# Runs experiments/prepare_data.py on the shrunken fod500; PREP_DELAY_S slows every example, PREP_MARKER is
# touched when the first example is read (so a test knows the build, and its lock, have started) and the
# examples wait until the file PREP_RELEASE exists (when it is set).
FOD_DRIVER = """
import os, sys, time
from absl import app
from datasets.fod500 import fod500_dataset_builder as fod
from experiments import prepare_data
fod.Builder.SPLIT_INDICES = {"train": range(0, 3), "test": range(400, 402)}
real, delay, marker = fod.fod500_example, float(os.environ.get("PREP_DELAY_S", "0")), os.environ.get("PREP_MARKER")
release = os.environ.get("PREP_RELEASE")
def slow(folder, index):
    if marker:
        open(marker, "a").close()
    while release and not os.path.exists(release):
        time.sleep(0.05)
    time.sleep(delay)
    return real(folder, index)
fod.fod500_example = slow
sys.argv = ["prepare_data", *sys.argv[1:]]
app.run(prepare_data.main)
"""

# What experiments/train.py does with the demo config (input.prepare_if_missing: the automatic preparation of
# embedded datasets by the entry point), then opens synthetic_focal/train through the training input pipeline;
# with a cheap renderer and the same delay, marker and release.
TRAINING_DRIVER = """
import os, sys, time
import numpy as np
from configs import demo
from datasets.synthetic_focal import synthetic_focal_dataset_builder as synthetic
from dualfocus_jax.prepared_splits import open_split
from experiments.data_setup import prepare_missing_embedded
synthetic.Builder.SPLIT_SIZES = {"train": 2, "test": 1}
delay, marker = float(os.environ.get("PREP_DELAY_S", "0")), os.environ.get("PREP_MARKER")
release = os.environ.get("PREP_RELEASE")
def stacks(images, depths, focus, camera, **_):
    if marker:
        open(marker, "a").close()
    while release and not os.path.exists(release):
        time.sleep(0.05)
    time.sleep(delay)
    return np.broadcast_to((images[:, None] * 255).astype(np.uint8), (*focus.shape, *images.shape[1:])).copy()
def stack(image, depth, focus, camera, **_):
    return stacks(image[None], depth[None], focus[None], camera)[0]
synthetic.rendered_stacks_u8, synthetic.rendered_stack_u8 = stacks, stack
config = demo.get_config()
config.input.data_dir = sys.argv[1]
prepare_missing_embedded(config)
source = open_split("synthetic_focal", "train", data_dir=sys.argv[1])
print("records:", len(source), [source[i]["id"].decode() for i in range(len(source))])
"""


def child_env(**extra):
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONUNBUFFERED="1", **{k: str(v) for k, v in extra.items()})
    env.pop("XLA_FLAGS", None)
    return env


def start(args, driver=FOD_DRIVER, **env):
    """The child, its stdout and stderr going to files (so a test can watch stderr while it runs)."""
    logs = tempfile.mkdtemp(prefix="prepare_child_")
    process = subprocess.Popen([sys.executable, "-c", driver, *map(str, args)], cwd=REPO, env=child_env(**env),
                               stdout=open(os.path.join(logs, "stdout"), "w"),
                               stderr=open(os.path.join(logs, "stderr"), "w"), text=True)
    process.logs = logs
    return process


def stderr_of(process):
    with open(os.path.join(process.logs, "stderr")) as handle:
        return handle.read()


def finish(process, timeout=240):
    process.wait(timeout=timeout)
    with open(os.path.join(process.logs, "stdout")) as handle:
        stdout = handle.read()
    stderr = stderr_of(process)
    shutil.rmtree(process.logs, ignore_errors=True)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def wait_until_waiting(process, timeout=120):
    """Until the child says it waits for the lock."""
    deadline = time.monotonic() + timeout
    while "waiting for another process" not in stderr_of(process):
        if process.poll() is not None:
            raise AssertionError(f"child ended without waiting: {finish(process).stderr[-3000:]}")
        assert time.monotonic() < deadline, "the child never waited"
        time.sleep(0.05)


def wait_for(path, process, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if process.poll() is not None:
            raise AssertionError(f"child ended before {path}: {finish(process).stderr[-3000:]}")
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def write_manual(folder, seed):
    """The 5 fake scenes of SMALL in `<folder>/fs_6` (a new seed: new pixels, same names)."""
    scenes = folder / "fs_6"
    scenes.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for indices in SMALL.values():
        for index in indices:
            write_scene(scenes, index, rng)
    return folder


def examples(data_dir):
    """{split: {id: stack bytes}} as tfds.data_source reads them."""
    source = tfds.data_source("fod500", data_dir=str(data_dir), download=False)
    return {split: {source[split][i]["id"].decode(): source[split][i]["stack"].tobytes()
                    for i in range(len(source[split]))} for split in source}


def leftovers(data_dir):
    """Temporary folders of builds under data_dir/fod500."""
    folder = data_dir / "fod500"
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(safe_replace.TEMP_PREFIX))


def versions(data_dir):
    return sorted(p.name for p in (data_dir / "fod500").iterdir() if p.is_dir() and p.name[:1].isdigit())


def prepare_small(data_dir, manual, **kwargs):
    with mock.patch.object(fod.Builder, "SPLIT_INDICES", SMALL):
        return prepare_dataset("fod500", data_dir, manual_dir=manual, **kwargs)


@pytest.fixture()
def prepared(tmp_path):
    """(data_dir, manual dir now holding *new* pixels, examples of the finished first preparation)."""
    data_dir = tmp_path / "data"
    manual = write_manual(tmp_path / "manual", seed=0)
    prepare_small(data_dir, manual)
    before = examples(data_dir)
    assert {split: len(ids) for split, ids in before.items()} == {"train": 3, "test": 2}
    write_manual(manual, seed=1)  # a rebuild would now produce other stacks
    return data_dir, manual, before


def assert_clean_exit(result):
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "FileExistsError" not in output, output[-3000:]
    assert "Prepared fod500/1.0.0" in result.stdout, output[-3000:]


def assert_one_message(result, *fragments, status=1):
    output = result.stdout + result.stderr
    assert result.returncode == status, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr[-3000:])


# ---------------------------------------------------------------- an interrupted or failed rebuild


@pytest.mark.parametrize("fault", [RuntimeError("simulated failure"), KeyboardInterrupt()])
def test_a_rebuild_that_fails_midway_leaves_the_old_dataset_readable(prepared, fault):
    data_dir, manual, before = prepared
    real = fod.fod500_example
    calls = []

    def fails_on_the_third_scene(folder, index):
        calls.append(index)
        if len(calls) == 3:
            raise fault
        return real(folder, index)

    expected = PreparationInterrupted if isinstance(fault, KeyboardInterrupt) else RuntimeError
    with mock.patch.object(fod, "fod500_example", fails_on_the_third_scene), pytest.raises(expected) as error:
        prepare_small(data_dir, manual, overwrite=True)
    assert len(calls) == 3  # two new scenes had been written beside the old dataset
    if expected is PreparationInterrupted:
        assert "previous copy" in str(error.value) and "unchanged" in str(error.value)
    assert examples(data_dir) == before
    assert leftovers(data_dir) == [] and versions(data_dir) == ["1.0.0"]


def test_a_successful_overwrite_replaces_the_dataset(prepared):
    data_dir, manual, before = prepared
    builder = prepare_small(data_dir, manual, overwrite=True)
    assert {split: info.num_examples for split, info in builder.info.splits.items()} == {"train": 3, "test": 2}
    after = examples(data_dir)
    assert {split: set(ids) for split, ids in after.items()} == {split: set(ids) for split, ids in before.items()}
    assert all(after[split][key] != before[split][key] for split in after for key in after[split])
    assert leftovers(data_dir) == [] and versions(data_dir) == ["1.0.0"]
    assert os.fspath(builder.data_path) == os.fspath(data_dir / "fod500" / "1.0.0")


def test_without_overwrite_the_finished_dataset_is_reused(prepared):
    data_dir, manual, before = prepared
    with mock.patch.object(fod, "fod500_example", side_effect=AssertionError("must not rebuild")):
        builder = prepare_small(data_dir, manual)
    assert builder.info.splits["train"].num_examples == 3
    assert examples(data_dir) == before


def start_slow_rebuild(data_dir, manual, tmp_path):
    """A `prepare_data --overwrite` child that writes scenes slowly, returned once it has begun generating."""
    marker = tmp_path / "generating"
    child = start(["--dataset=fod500", f"--manual_dir={manual}", f"--data_dir={data_dir}", "--overwrite"],
                  PREP_DELAY_S=0.3, PREP_MARKER=marker)
    wait_for(marker, child)
    return child


def test_sigkill_during_a_rebuild_leaves_the_old_dataset_and_no_lock_that_blocks(prepared, tmp_path):
    data_dir, manual, before = prepared
    child = start_slow_rebuild(data_dir, manual, tmp_path)
    time.sleep(0.5)  # a scene or two written into the temporary folder
    child.send_signal(signal.SIGKILL)
    finish(child)
    assert child.returncode == -signal.SIGKILL
    assert len(leftovers(data_dir)) == 1  # the killed build's temporary folder ...
    assert examples(data_dir) == before  # ... beside the untouched dataset
    # The OS released the dead process's lock: the next preparation neither waits nor fails, and clears up.
    notes = []
    builder = prepare_small(data_dir, manual, overwrite=True, wait_timeout_s=0, notify=notes.append)
    assert not any("waiting" in note for note in notes) and builder.info.splits["test"].num_examples == 2
    assert leftovers(data_dir) == [] and examples(data_dir) != before


def test_sigterm_during_a_rebuild_ends_with_one_message_and_deletes_the_partial_copy(prepared, tmp_path):
    data_dir, manual, before = prepared
    child = start_slow_rebuild(data_dir, manual, tmp_path)
    child.send_signal(signal.SIGTERM)
    assert_one_message(finish(child), "interrupted", "unchanged", status=130)
    assert examples(data_dir) == before and leftovers(data_dir) == []


def test_a_file_size_limit_during_a_rebuild_is_one_message_and_the_old_dataset_stays(prepared):
    data_dir, manual, before = prepared
    # SIGXFSZ ignored and RLIMIT_FSIZE small (both survive exec): writes beyond it fail like on a full disk.
    limited = ("import os, resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
               "resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000)); os.execv(sys.argv[1], sys.argv[1:])")
    command = [sys.executable, "-c", limited, sys.executable, "-c", FOD_DRIVER, "--dataset=fod500",
               f"--manual_dir={manual}", f"--data_dir={data_dir}", "--overwrite"]
    result = subprocess.run(command, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=240)
    assert_one_message(result, "fod500", "unchanged")
    assert examples(data_dir) == before and leftovers(data_dir) == []


# ---------------------------------------------------------------- the fallback swap (no RENAME_EXCHANGE)


def test_fallback_swap_replaces_the_dataset_and_a_failed_second_rename_puts_the_old_one_back(prepared):
    data_dir, manual, before = prepared
    real_rename = safe_replace._rename
    renames = []

    def second_rename_fails(source, target):
        renames.append((os.fspath(source), os.fspath(target)))
        if len(renames) == 2:
            raise OSError(5, "Input/output error (simulated)", os.fspath(source))
        return real_rename(source, target)

    with mock.patch.object(safe_replace, "exchange", return_value=False), \
            mock.patch.object(safe_replace, "_rename", second_rename_fails), pytest.raises(OSError):
        prepare_small(data_dir, manual, overwrite=True)
    assert renames[0][1].endswith(safe_replace.MOVED_ASIDE)  # the old copy was parked, then put back
    assert examples(data_dir) == before and leftovers(data_dir) == []
    with mock.patch.object(safe_replace, "exchange", return_value=False):
        prepare_small(data_dir, manual, overwrite=True)
    assert examples(data_dir) != before and leftovers(data_dir) == []


def test_a_kill_between_the_fallback_renames_is_repaired_by_the_next_preparation(prepared):
    data_dir, manual, before = prepared
    final = data_dir / "fod500" / "1.0.0"
    # The state a SIGKILL between the two renames leaves: the old copy parked in a temporary folder, no 1.0.0.
    temp = safe_replace.new_temp_folder(final.parent)
    os.rename(final, temp / safe_replace.MOVED_ASIDE)
    notes = []
    with mock.patch.object(fod, "fod500_example", side_effect=AssertionError("must not rebuild")):
        prepare_small(data_dir, manual, notify=notes.append)
    assert len(notes) == 1 and "restored" in notes[0] and str(final) in notes[0]
    assert examples(data_dir) == before and leftovers(data_dir) == []


# ---------------------------------------------------------------- concurrent preparations


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_second_preparation_waits_for_the_first_and_reuses_its_result(tmp_path, overwrite):
    data_dir = tmp_path / "data"
    manual = write_manual(tmp_path / "manual", seed=0)
    args = ["--dataset=fod500", f"--manual_dir={manual}", f"--data_dir={data_dir}"] + (["--overwrite"] * overwrite)
    first = start(args, PREP_MARKER=tmp_path / "first", PREP_RELEASE=tmp_path / "release")
    wait_for(tmp_path / "first", first)  # the first holds the lock and is generating
    second = start(args, PREP_MARKER=tmp_path / "second")
    wait_until_waiting(second)
    (tmp_path / "release").touch()
    first, second = finish(first), finish(second)
    assert_clean_exit(first)
    assert_clean_exit(second)
    lock = os.path.join(data_dir, "fod500", LOCK_NAME)
    assert "waiting for another process (pid" in second.stderr and lock in second.stderr, second.stderr[-3000:]
    assert not (tmp_path / "second").exists()  # it built nothing itself
    if overwrite:
        assert "another process rebuilt fod500/1.0.0" in second.stderr
    assert {split: len(ids) for split, ids in examples(data_dir).items()} == {"train": 3, "test": 2}
    assert versions(data_dir) == ["1.0.0"] and leftovers(data_dir) == []


def test_two_preparations_started_together_both_end_cleanly_with_one_dataset(tmp_path):
    data_dir = tmp_path / "data"
    manual = write_manual(tmp_path / "manual", seed=0)
    args = ["--dataset=fod500", f"--manual_dir={manual}", f"--data_dir={data_dir}"]
    children = [start(args, PREP_DELAY_S=0.2) for _ in range(2)]
    results = [finish(child) for child in children]
    for result in results:
        assert_clean_exit(result)
    assert {split: len(ids) for split, ids in examples(data_dir).items()} == {"train": 3, "test": 2}
    assert versions(data_dir) == ["1.0.0"] and leftovers(data_dir) == []


def test_wait_timeout_zero_stops_at_once_with_one_message_naming_the_lock(tmp_path):
    data_dir = tmp_path / "data"
    manual = write_manual(tmp_path / "manual", seed=0)
    lock = data_dir / "fod500" / LOCK_NAME
    lock.parent.mkdir(parents=True)
    held, release = threading.Event(), threading.Event()

    def hold():
        with safe_replace.preparation_lock(lock, "fod500 (held by the test)"):
            held.set()
            release.wait(120)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(10)
        result = finish(start(["--dataset=fod500", f"--manual_dir={manual}", f"--data_dir={data_dir}",
                               "--wait_timeout_s=0"]))
    finally:
        release.set()
        holder.join()
    assert_one_message(result, "another process (pid", str(lock), "run again when it has finished")
    assert versions(data_dir) == [] and leftovers(data_dir) == []


def test_concurrent_automatic_preparations_for_training_share_one_build(tmp_path):
    data_dir = tmp_path / "tfds"
    first = start([data_dir], TRAINING_DRIVER, PREP_MARKER=tmp_path / "first", PREP_RELEASE=tmp_path / "release")
    wait_for(tmp_path / "first", first, timeout=180)
    second = start([data_dir], TRAINING_DRIVER, PREP_MARKER=tmp_path / "second")
    wait_until_waiting(second, timeout=180)
    (tmp_path / "release").touch()
    first, second = finish(first), finish(second)
    for result in (first, second):
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Traceback" not in result.stderr and "records: 2" in result.stdout, result.stderr[-3000:]
    assert LOCK_NAME in second.stderr, second.stderr[-3000:]
    assert not (tmp_path / "second").exists()  # it rendered nothing itself
    folder = data_dir / "synthetic_focal"
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["1.0.0"]


# ---------------------------------------------------------------- messages


def test_a_dataset_that_needs_manual_files_gets_a_complete_command(tmp_path):
    result = finish(start(["--dataset=fod500", f"--data_dir={tmp_path / 'data'}"]))
    assert_one_message(result, "fs_6")
    expected = f"python -m experiments.prepare_data --dataset=fod500 --manual_dir=/path/to/folder " \
               f"--data_dir={tmp_path / 'data'}"
    assert expected in result.stderr
    assert not (tmp_path / "data").exists()


def test_a_rebuilt_config_keeps_its_default_config_record_and_reads_without_a_config_name(tmp_path):
    from datasets.ddff12 import ddff12_dataset_builder as ddff
    from fake_files import write_h5

    manual = tmp_path / "manual"
    manual.mkdir()
    rng = np.random.default_rng(0)
    write_h5(manual / ddff.TRAINVAL_FILE, {
        "stack_train": rng.integers(0, 256, (2, 10, 8, 12, 3), dtype=np.uint8),
        "disp_train": rng.uniform(0.02, 0.28, (2, 8, 12)).astype(np.float32),
        "stack_val": rng.integers(0, 256, (1, 10, 8, 12, 3), dtype=np.uint8),
        "disp_val": rng.uniform(0.02, 0.28, (1, 8, 12)).astype(np.float32)})
    write_h5(manual / ddff.TEST_FILE, {"stack_test": rng.integers(0, 256, (1, 10, 9, 14, 3), dtype=np.uint8)})
    data_dir = tmp_path / "data"
    for overwrite in (False, True):
        builder = prepare_dataset("ddff12", data_dir, manual_dir=manual, config="official", overwrite=overwrite)
        assert os.fspath(builder.data_path) == os.fspath(data_dir / "ddff12" / "official" / "1.0.0")
    assert (data_dir / "ddff12" / ".config" / "metadata.json").is_file()
    assert (data_dir / "ddff12" / "official" / LOCK_NAME).is_file()
    # A fresh process that does not import the builder finds the default config from the files alone.
    code = ("import tensorflow_datasets as tfds; "
            f"source = tfds.data_source('ddff12', data_dir={os.fspath(data_dir)!r}, download=False); "
            "print(sorted((k, len(v)) for k, v in source.items()))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=child_env(), capture_output=True,
                            text=True, timeout=240)
    assert "[('test', 1), ('train', 2), ('validation', 1)]" in result.stdout, result.stderr[-3000:]
    assert not [p for p in (data_dir / "ddff12" / "official").iterdir() if p.name.startswith(safe_replace.TEMP_PREFIX)]


def test_a_filesystem_that_refuses_locks_still_prepares_and_says_so(prepared):
    data_dir, manual, before = prepared
    import errno

    notes = []
    with mock.patch.object(safe_replace.fcntl, "flock", side_effect=OSError(errno.ENOLCK, "No locks available")):
        prepare_small(data_dir, manual, overwrite=True, notify=notes.append)
    assert any("cannot lock" in note and LOCK_NAME in note for note in notes), notes
    assert examples(data_dir) != before and leftovers(data_dir) == []
