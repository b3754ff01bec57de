"""An advisory lock on a file (POSIX flock), stdlib only: the port claim of `llmtp serve`.

filelock would do the same, but costs ~25 ms of imports on the path to a warm start; the lock is
taken by one process and held until it exits or releases it (the kernel drops it with the fd).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None
