"""An advisory lock on a file (POSIX flock), stdlib only: the port claim of `llmtp serve`.

filelock would do the same, but costs ~25 ms of imports on the path to a warm start; the lock is
taken by one process and held until it exits or releases it (the kernel drops it with the fd).
Lock files may be removed, but only by a holder (`release(remove=True)`): a taker that locked a
file just removed sees that the path now names another inode and retries, so two processes never
both believe they hold the lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from llmtp.adapters.spawn import private_dir

_RETRIES = 20  # each retry means a holder removed the file meanwhile: a handful at most in practice


class Flock:
    """A non-blocking exclusive lock; `acquire()` says whether this process now holds it."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> bool:
        if self._fd is not None:
            return True

        private_dir(self.path.parent)
        for _ in range(_RETRIES):
            # 0600 at creation: nobody else has any business opening (or locking) our lock files
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                return False
            if _same_file(fd, self.path):
                self._fd = fd
                return True
            os.close(fd)  # locked a file its holder removed meanwhile: lock the one there now
        return False

    def release(self, *, remove: bool = False) -> None:
        """Drop the lock; `remove`: delete the lock file first (a clean stop leaves nothing behind)."""
        if self._fd is None:
            return
        try:
            if remove and _same_file(self._fd, self.path):
                self.path.unlink(missing_ok=True)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (st.st_dev, st.st_ino)
