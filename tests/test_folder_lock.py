"""The folder lock shared by training workdirs and prediction folders: a second holder is refused with the
first one's pid, a released or killed holder frees the folder, a filesystem without locks works unlocked, and
training takes the lock only when it writes checkpoints."""

import contextlib
import errno
import os
import signal
import subprocess
import sys
from unittest import mock

import pytest

from dualfocus_jax import folder_lock
from dualfocus_jax.folder_lock import FolderBusy, FolderLock, lock_holder
from dualfocus_jax.training import trainer

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = ("import sys\nfrom dualfocus_jax.folder_lock import FolderLock\nlock = FolderLock(sys.argv[1])\n"
        "lock.acquire()\nprint('held', flush=True)\nsys.stdin.read()\n")


def holder_process(path):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], cwd=REPO, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_holder_is_refused_with_the_first_ones_pid_until_it_releases(tmp_path):
    path = str(tmp_path / ".lock")
    first = FolderLock(path)
    first.acquire()
    assert lock_holder(path).startswith(f"pid {os.getpid()} on ")
    with pytest.raises(FolderBusy) as refused:
        FolderLock(path).acquire()  # another open file: flock refuses it even in the same process
    assert refused.value.holder.startswith(f"pid {os.getpid()} on ") and " since " in refused.value.holder
    first.release()
    assert lock_holder(path) is None
    with FolderLock(path):
        assert lock_holder(path) is not None
    assert lock_holder(path) is None


def test_a_killed_holder_frees_the_folder(tmp_path):
    path = str(tmp_path / ".lock")
    process = holder_process(path)
    try:
        assert lock_holder(path).startswith(f"pid {process.pid} on ")
        with pytest.raises(FolderBusy):
            FolderLock(path).acquire()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert lock_holder(path) is None
    with FolderLock(path):
        pass


def test_a_filesystem_without_locks_is_used_unlocked(tmp_path):
    refused = OSError(errno.ENOLCK, "No locks available")
    with mock.patch.object(folder_lock.fcntl, "flock", side_effect=refused):
        with FolderLock(str(tmp_path / ".lock")):
            pass  # no error: the folder is used without a lock
    with mock.patch.object(folder_lock.fcntl, "flock", side_effect=OSError(errno.EIO, "I/O error")):
        with pytest.raises(OSError):  # any other failure is not hidden
            FolderLock(str(tmp_path / ".lock")).acquire()


def test_training_locks_the_workdir_but_evaluation_does_not(tmp_path):
    with trainer.training_lock(str(tmp_path / "run"), "train"):
        assert lock_holder(str(tmp_path / "run" / trainer.WORKDIR_LOCK)).startswith(f"pid {os.getpid()} ")
        with pytest.raises(trainer.WorkdirBusy) as busy:
            trainer.training_lock(str(tmp_path / "run"), "train_and_eval")
        message = str(busy.value)
        assert f"pid {os.getpid()} on " in message and "another --workdir" in message
        assert isinstance(trainer.training_lock(str(tmp_path / "run"), "eval"), contextlib.nullcontext)
    assert lock_holder(str(tmp_path / "run" / trainer.WORKDIR_LOCK)) is None
