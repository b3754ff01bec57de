"""Put a file where a system service can read it: a hard link when possible, else a copy.

A system unit runs as the `llmtp` user with ProtectHome=yes, so a model under /home is invisible
to it. A hard link costs no space and no time, but shares the inode (owner and mode) with the
original: it is used only on the same filesystem and when the file is readable by every user.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Literal

Progress = Callable[[int, int], None]  # (bytes done, bytes total)
How = Literal["linked", "copied", "kept"]

_CHUNK = 8 * 2**20


def _same_content(src: Path, dst: Path) -> bool:
    try:
        if dst.samefile(src):
            return True
        a, b = src.stat(), dst.stat()
    except OSError:
        return False
    return a.st_size == b.st_size and int(a.st_mtime) == int(b.st_mtime)  # a copy keeps the mtime


def link_or_copy(src: Path, dst: Path, on_progress: Progress | None = None) -> How:
    """Make `dst` hold `src`'s bytes, readable by every user; the parent dirs are created 0755.

    A symlink is staged as the file it points at: an adopted build's bin/ is links into its owner's tree (under a
    home directory the service cannot see), and os.link() on Linux hard-links the symlink itself, not its target."""
    src, dst = Path(src).resolve(), Path(dst)
    if _same_content(src, dst):
        return "kept"
    dst.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    tmp.unlink(missing_ok=True)
    mode = src.stat().st_mode
    if mode & 0o004 and (not mode & 0o100 or mode & 0o001):  # readable (and runnable) by others as it is
        try:
            os.link(src, tmp)
            os.replace(tmp, dst)
            return "linked"
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EACCES):
                raise
    total = src.stat().st_size
    done = 0
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                fout.write(chunk)
                done += len(chunk)
                if on_progress is not None:
                    on_progress(done, total)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, tmp)
        os.chmod(tmp, 0o755 if mode & 0o111 else 0o644)
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return "copied"
