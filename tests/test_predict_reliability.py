"""Predictions that are killed, fail, or run at the same time into one --out (issue 13, item 3).

Invariant checked after every fault: each visible output file loads completely; a folder with metadata.json
holds exactly the files it lists, all of the run it describes; a folder without it holds no earlier run's
file. Real processes (`python -m dualfocus_jax.predict`, the classical method) are killed with SIGKILL.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import OpenEXR
import pytest
from PIL import Image

from dualfocus_jax.inference.output_files import (
    LOCK_FILE,
    METADATA_FILE,
    OUTPUT_FILES,
    PARTIAL_MARK,
    PREVIOUS_DIR,
    OutputFolder,
)
from dualfocus_jax.predict import main
from test_predict_outputs import WORK, write_stack

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Focus values of run A and run B: depth stays inside the focus range, so the two cannot be confused.
FOCUS = {"A": "1,2,3,4", "B": "100,200,300,400", "C": "10,20,30,40"}
RANGE = {"A": (1, 4), "B": (100, 400), "C": (10, 40)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return write_stack(tmp_path_factory.mktemp("stack") / "photos")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A compilation cache shared by this module's processes (after the first, none compiles)."""
    return tmp_path_factory.mktemp("xla_cache")


def command(stack, out, run, cache):
    return [sys.executable, "-m", "dualfocus_jax.predict", "--stack", str(stack), "--out", str(out), *WORK,
            "--method", "classical", "--focus_distances", FOCUS[run], "--compilation_cache_dir", str(cache)]


def predict_in_process(stack, out, run):
    return main(["--stack", str(stack), "--out", str(out), *WORK, "--method", "classical", "--focus_distances",
                 FOCUS[run], "--nocompilation_cache"])


def visible(out):
    return sorted(n for n in os.listdir(out) if not n.startswith("."))


def load_completely(path):
    name = os.path.basename(path)
    if name.endswith(".npy"):
        return np.load(path)
    if name.endswith(".exr"):
        with OpenEXR.File(path) as handle:
            return np.array(handle.channels()["Y"].pixels)
    if name.endswith(".json"):
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    if name.endswith(".ply"):
        return open(path, "rb").read()
    with Image.open(path) as image:
        image.load()
        return np.asarray(image)


def run_of(depth):
    """Which run a depth map belongs to, by its range."""
    matches = [run for run, (low, high) in RANGE.items()
               if np.all((depth >= low - 1e-4) & (depth <= high + 1e-4))]
    assert len(matches) == 1, (depth.min(), depth.max())
    return matches[0]


def check_consistent(out, forbidden_runs=()):
    """The invariant of the module docstring; returns the run the folder holds (None if no complete run)."""
    names = visible(out)
    assert set(names) <= set(OUTPUT_FILES), names
    for name in names:
        load_completely(os.path.join(out, name))  # raises for a truncated file
    owners = {run_of(np.load(os.path.join(out, n))) for n in ("depth.npy",) if n in names}
    if "metadata.json" in names:
        metadata = load_completely(os.path.join(out, "metadata.json"))
        assert names == sorted(metadata["files"])
        values = ",".join(f"{p['value']:g}" for p in metadata["focus_positions"]["near_to_far"])
        run = next(r for r, v in FOCUS.items() if v == values)
        assert owners <= {run}
        assert run not in forbidden_runs
        return run
    assert not owners & set(forbidden_runs), (owners, names)
    return None


def test_a_failed_run_leaves_the_earlier_outputs_as_they_were(stack, tmp_path, monkeypatch, capsys):
    import dualfocus_jax.inference.pipeline as pipeline

    out = tmp_path / "out"
    assert predict_in_process(stack, out, "A") == 0
    before = {n: (out / n).read_bytes() for n in visible(out)}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "predict_depth", interrupted)
    assert predict_in_process(stack, out, "B") == 130
    assert "interrupted: no partial file was left in --out" in capsys.readouterr().err
    assert {n: (out / n).read_bytes() for n in visible(out)} == before
    assert not (out / PREVIOUS_DIR).exists()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "predict_depth", disk_full)
    with pytest.raises(OSError):
        predict_in_process(stack, out, "B")
    assert {n: (out / n).read_bytes() for n in visible(out)} == before
    assert check_consistent(out) == "A"

    # A write that fails in a worker thread (the EXR encoder, here): the same, and no temporary file is left.
    import dualfocus_jax.inference.output_files as output_files

    monkeypatch.undo()
    monkeypatch.setattr(output_files, "write_exr", disk_full)
    with pytest.raises(OSError, match="No space left"):
        predict_in_process(stack, out, "B")
    assert {n: (out / n).read_bytes() for n in visible(out)} == before
    assert not [n for n in os.listdir(out) if PARTIAL_MARK in n] and not (out / PREVIOUS_DIR).exists()


def test_a_second_prediction_into_a_busy_out_is_refused_before_any_work(stack, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert predict_in_process(stack, out, "A") == 0
    holder = subprocess.Popen([sys.executable, "-c", "import sys\nfrom dualfocus_jax.inference.output_files import "
                               "OutputFolder\nwith OutputFolder(sys.argv[1]):\n    print('held', flush=True)\n"
                               "    sys.stdin.read()\n", str(out)],
                              cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        listing = sorted(os.listdir(out))
        import dualfocus_jax.inference.pipeline as pipeline

        monkeypatch.setattr(pipeline, "load_focal_stack", lambda *a, **k: pytest.fail("loaded the photos"))
        assert predict_in_process(stack, out, "B") == 2
        error = capsys.readouterr().err
        assert f"is being written by another prediction (pid {holder.pid} on " in error and " since " in error
        assert "wait for it to finish or choose another --out" in error
        assert sorted(os.listdir(out)) == listing  # the refused run touched nothing
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    # The holder exited without committing (it raised nothing): like a killed run, A's files stay hidden.
    assert check_consistent(out, forbidden_runs=("A",)) is None


def test_two_predictions_started_together_do_not_mix(stack, tmp_path, cache):
    out = tmp_path / "out"
    runs = {run: subprocess.Popen(command(stack, out, run, cache), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for run in ("A", "B")}
    results = {run: process.communicate(timeout=300) for run, process in runs.items()}
    codes = {run: process.returncode for run, process in runs.items()}
    assert set(codes.values()) <= {0, 2} and 0 in codes.values(), (codes, results)
    for run, code in codes.items():
        if code == 2:  # refused, with the reason; or both ran, one after the other
            assert "is being written by another prediction" in results[run][1], results[run][1]
    winner = check_consistent(out)
    assert codes[winner] == 0
    assert not (out / PREVIOUS_DIR).exists() and not [n for n in os.listdir(out) if PARTIAL_MARK in n]


def _kill_when(process, out, condition, timeout=240):
    started = time.monotonic()
    while process.poll() is None and time.monotonic() - started < timeout:
        if condition():
            process.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    process.wait(timeout=60)
    return process.returncode


@pytest.fixture(scope="module")
def finished_a(stack, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "out"
    assert predict_in_process(stack, out, "A") == 0
    return out


@pytest.mark.parametrize("moment", ["while_predicting", "while_writing"])
def test_a_killed_prediction_leaves_nothing_that_loads_incomplete_or_passes_for_its_output(stack, tmp_path, cache,
                                                                                           finished_a, moment):
    out = tmp_path / "out"
    shutil.copytree(finished_a, out)  # run A's complete outputs
    assert check_consistent(out) == "A"
    process = subprocess.Popen(command(stack, out, "B", cache), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    if moment == "while_predicting":  # the run holds the folder: it has hidden A's files
        # metadata.json is the first file hidden; PREVIOUS_DIR alone exists a moment before any is moved.
        condition = lambda: (out / PREVIOUS_DIR / METADATA_FILE).is_file()  # noqa: E731
    else:  # a file of B half-written
        condition = lambda: any(PARTIAL_MARK in n for n in os.listdir(out))  # noqa: E731
    code = _kill_when(process, out, condition)
    if code == 0:
        pytest.skip("the run finished before the kill landed (machine too fast for this probe)")
    assert code == -signal.SIGKILL
    # Neither A's files (they could be read as B's) nor a partial file of B is visible.
    assert check_consistent(out, forbidden_runs=("A",)) in (None, "B")
    assert "metadata.json" not in visible(out) or check_consistent(out) == "B"
    # The next run cleans up and holds exactly its own files.
    assert predict_in_process(stack, out, "C") == 0
    assert check_consistent(out) == "C"
    assert not (out / PREVIOUS_DIR).exists()
    assert sorted(n for n in os.listdir(out) if n.startswith(".")) == [LOCK_FILE]


def test_the_lock_is_released_when_the_holder_is_killed(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom dualfocus_jax.inference.output_files "
                               "import OutputFolder\nwith OutputFolder(sys.argv[1]):\n    print('held', flush=True)\n"
                               "    time.sleep(600)\n", str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    from dualfocus_jax.inference.output_files import OutputFolderError

    with pytest.raises(OutputFolderError, match="being written by another prediction"):
        OutputFolder(out).__enter__()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with OutputFolder(out):  # free again: the kernel dropped the lock with the process
        pass
