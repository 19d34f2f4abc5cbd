"""The two pieces that make a dataset preparation safe to interrupt and to run twice at once.

* `preparation_lock`: an exclusive `fcntl.flock` on a lock file beside the dataset. A second preparation of
  the same dataset waits for the first (saying so, with the lock file's path and the holder's pid) and then
  finds the finished dataset. The operating system drops the lock when its process ends, however it ends, so
  a killed preparation never leaves a lock that blocks the next one; the file itself stays and is harmless.
* `swap_into_place`: puts a folder built beside the finished one at its place. Where the filesystem can,
  both are exchanged in one atomic `renameat2(RENAME_EXCHANGE)`; elsewhere the old folder is first renamed
  into the build's temporary folder and the new one renamed into place, and `restore_moved_aside` (run by
  the next preparation, under the lock) puts the old one back if a kill fell between the two renames.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dualfocus_jax.folder_lock import read_holder, write_holder

try:
    import fcntl
except ImportError:  # not POSIX: no locking (documented in datasets/README.md)
    fcntl = None

# A build's temporary folders start with this; TFDS ignores them (not a version name) and a preparation that
# holds the lock deletes those of killed runs.
TEMP_PREFIX = "incomplete.prepare."
# Inside a temporary folder: where the fallback swap parks the previous dataset until the new one is in place.
MOVED_ASIDE = "previous"
INFO_FILE = "dataset_info.json"
_rename = os.rename  # every rename of this module (a test makes one fail)


def notify_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def is_finished(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a finished TFDS dataset version (TFDS writes dataset_info.json last)."""
    return os.path.isfile(os.path.join(folder, INFO_FILE))


class LockWaitTimeout(RuntimeError):
    """Another process held the preparation lock longer than the caller wanted to wait."""


@contextlib.contextmanager
def preparation_lock(lock_path: str | os.PathLike, what: str, *, notify: Callable[[str], None] = notify_stderr,
                     timeout_s: float | None = None, poll_s: float = 0.2) -> Iterator[bool | None]:
    """Holds an exclusive lock on `lock_path` (created if needed); yields whether it had to wait for it.

    Waits for another holder, telling `notify` once which process holds it and which file is the lock;
    after `timeout_s` seconds (None: no limit) raises LockWaitTimeout. Without fcntl (not POSIX) or on a
    filesystem that refuses locks, yields None without locking.
    """
    lock_path = os.fspath(lock_path)
    if fcntl is None:
        yield None
        return
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        waited = _acquire(fd, lock_path, what, notify, timeout_s, poll_s)
        if waited is not None:
            write_holder(fd)
        yield waited
    finally:
        os.close(fd)  # closing drops the lock


def _acquire(fd, lock_path, what, notify, timeout_s, poll_s) -> bool | None:
    """Takes the lock on `fd`; returns whether it waited, or None where the filesystem refuses locks."""
    waited = False
    start = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return waited
        except BlockingIOError:
            pass
        except OSError as error:  # e.g. ENOLCK on a network filesystem without locks
            if error.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                notify(f"note: cannot lock {lock_path} ({error.strerror}); preparing without a lock")
                return None
            raise
        holder = read_holder(fd)
        holder = f" ({holder})" if holder else ""
        if timeout_s is not None and time.monotonic() - start >= timeout_s:
            raise LockWaitTimeout(
                f"another process{holder} is preparing {what}"
                + (f" and still was after {timeout_s:.0f} s" if timeout_s > 0 else "")
                + f" (lock file {lock_path}, released when that process ends); run again when it has finished")
        if not waited:
            notify(f"waiting for another process{holder} that is preparing {what}; "
                   f"lock file {lock_path} (released when that process ends)")
            waited = True
        time.sleep(poll_s)


def new_temp_folder(parent: str | os.PathLike) -> Path:
    """A fresh `incomplete.prepare.<unique>` folder in `parent` (the same filesystem as the dataset)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = parent / f"{TEMP_PREFIX}{os.getpid()}.{os.urandom(4).hex()}"
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary folder in {parent}")


def restore_moved_aside(parent: str | os.PathLike, final: str | os.PathLike,
                        notify: Callable[[str], None] = notify_stderr) -> None:
    """Under the lock: puts back a finished dataset that a killed fallback swap left in a temporary folder
    (only when `final` is not a finished dataset itself), then deletes every temporary folder in `parent`
    (no other preparation can be writing one while the lock is held)."""
    parent, final = Path(parent), Path(final)
    if not parent.is_dir():
        return
    temps = sorted(path for path in parent.iterdir() if path.name.startswith(TEMP_PREFIX) and path.is_dir())
    for temp in temps:
        if put_back(temp, final):
            notify(f"note: restored the dataset at {final}, which an interrupted rebuild had moved aside")
    for temp in temps:
        shutil.rmtree(temp, ignore_errors=True)


def put_back(temp: str | os.PathLike, final: str | os.PathLike) -> bool:
    """Moves the dataset parked in `temp` back to `final` when `final` is not a finished dataset; whether it
    did. (Run before a temporary folder is deleted, so that a failed fallback swap never loses the old copy.)"""
    temp, final = Path(temp), Path(final)
    aside = temp / MOVED_ASIDE
    if is_finished(final) or not is_finished(aside):
        return False
    if final.exists():
        _rename(final, temp / "discarded")
    _rename(aside, final)
    fsync_dir(final.parent)
    return True


def fsync_tree(folder: str | os.PathLike) -> None:
    """Flushes every file under `folder` and the folders themselves to disk (best effort)."""
    for root, _, names in os.walk(folder):
        for name in names:
            with contextlib.suppress(OSError):
                fd = os.open(os.path.join(root, name), os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_dir(root)


def fsync_dir(folder: str | os.PathLike) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def exchange(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Atomically exchanges the paths `a` and `b` (Linux renameat2 RENAME_EXCHANGE); False where the system
    or filesystem cannot (nothing is changed then)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(a), None, os.fspath(b))


def swap_into_place(new: str | os.PathLike, final: str | os.PathLike, temp: str | os.PathLike) -> None:
    """Moves the finished folder `new` to `final`; a folder already at `final` ends up inside `temp` (the
    build's temporary folder, on the same filesystem), for the caller to delete. At every instant `final` is
    either the old folder or the new one, except in the fallback between its two renames, which
    `restore_moved_aside` repairs."""
    new, final, temp = Path(new), Path(final), Path(temp)
    fsync_tree(new)
    if not final.exists() and not final.is_symlink():
        _rename(new, final)
    elif exchange(new, final):
        pass  # the old folder is now at `new`, inside temp
    else:
        _rename(final, temp / MOVED_ASIDE)
        _rename(new, final)
    fsync_dir(final.parent)
