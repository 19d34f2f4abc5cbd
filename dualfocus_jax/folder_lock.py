"""An advisory lock one process holds on a folder while it writes there (a training run's workdir, a prediction's
--out folder), so a second process is refused instead of interleaving its files with the first one's.

The lock is an exclusive `fcntl.flock` on a small file inside the folder, holding the holder's pid, host and start
time for the refusal message. The operating system drops it when the holding process ends, however it ends (a
kill, a crash), so a dead run never blocks the next one; the file itself stays and is harmless. Where there is no
`fcntl` (not POSIX) or the filesystem refuses locks, the folder is used without one.
"""

from __future__ import annotations

import errno
import os
import socket
import time

try:  # POSIX only
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

# Errors of a filesystem that cannot lock at all (as opposed to a lock another process holds).
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


class FolderBusy(Exception):
    """Another live process holds the lock; `holder` says which ("pid N on HOST since TIME")."""

    def __init__(self, holder: str):
        super().__init__(holder)
        self.holder = holder


class FolderLock:
    """Holds the lock file `lock_path` while entered (or between `acquire` and `release`); raises FolderBusy when
    another process holds it. The folder the file lies in must exist."""

    def __init__(self, lock_path: str):
        self.lock_path = lock_path
        self._fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self._fd is not None:
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o664)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = read_holder(fd) or "another process"
            os.close(fd)
            raise FolderBusy(holder) from None
        except OSError as error:
            os.close(fd)
            if error.errno in _NO_LOCKS:
                return  # a filesystem without locks: work unlocked rather than not at all
            raise
        self._fd = fd
        write_holder(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the lock
            self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


def lock_holder(lock_path: str) -> str | None:
    """Who holds `lock_path` (its text), or None when nobody does; takes nothing."""
    if fcntl is None or not os.path.isfile(lock_path):
        return None
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(fd) or "another process"
    except OSError:
        return None
    finally:
        os.close(fd)  # also drops the shared lock taken to look
    return None


def read_holder(fd: int) -> str:
    """The text a holder wrote into the lock file open as `fd` ("" if unreadable)."""
    try:
        return os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        return ""


def write_holder(fd: int) -> None:
    """Writes who holds the lock ("pid N on HOST since TIME") into the lock file open as `fd`."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                      f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    except OSError:
        pass  # the text only informs the refusal message
