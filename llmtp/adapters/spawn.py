"""Starting llama-server as a process: its log file (private, rotated), its own session, and its
death with its parent. Stdlib only, so a warm start (llmtp.services.serve.warm_start) can run it before
the CLI has loaded."""

from __future__ import annotations

import ctypes
import logging.handlers
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

LOG_MAX_BYTES, LOG_KEEP = 20 * 2**20, 3  # llama-server's log: rotated beyond 20 MiB, at a start and live
# -lv 4 (see services.serve.launch._calibration_args) writes ~5.7 kB per request: 20 MiB is ~3,600 requests,
# so a check every 5 s keeps the log near its bound even under heavy load
LIVE_ROTATE_EVERY_S = 5.0


def private_dir(path: Path) -> Path:
    """`path` and every missing parent created 0700 (state: logs, records and locks are nobody
    else's business); a directory that exists already is left as its owner set it."""
    path = Path(path)
    missing = []
    while not path.is_dir() and path != path.parent:
        missing.append(path)
        path = path.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)  # mkdir(parents=True) would give the parents 0755
    return Path(path if not missing else missing[0])


def open_private(path: Path, mode: str = "ab"):  # noqa: ANN201 - a binary file object
    """Open for writing ("ab" or "wb"), creating the file 0600: never readable by others, not even
    for the moment a chmod after the fact would leave open."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    return open(os.open(path, flags, 0o600), mode)


def rotate(path: Path, max_bytes: int, keep: int) -> None:
    """path -> path.1 -> ... -> path.<keep> when path is larger than max_bytes."""
    try:
        if path.stat().st_size <= max_bytes:
            return
    except FileNotFoundError:
        return
    for i in range(keep - 1, 0, -1):
        src = path.with_name(f"{path.name}.{i}")
        if src.exists():
            src.replace(path.with_name(f"{path.name}.{i + 1}"))
    path.replace(path.with_name(f"{path.name}.1"))


def rotate_live(path: Path, max_bytes: int, keep: int) -> bool:
    """Rotate a log that a running process appends to (O_APPEND): copy it to path.1 (older ones
    shifted up to path.<keep>), then truncate it in place, so the writer's next line lands at the
    start of the now empty file. What is written between the last copied byte and the truncation
    (microseconds) is lost, as with logrotate's copytruncate. True when it rotated."""

    try:
        if path.stat().st_size <= max_bytes:
            return False
    except FileNotFoundError:
        return False
    for i in range(keep - 1, 0, -1):
        src = path.with_name(f"{path.name}.{i}")
        if src.exists():
            src.replace(path.with_name(f"{path.name}.{i + 1}"))
    with open(path, "rb") as src, open_private(path.with_name(f"{path.name}.1"), "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)  # reads to the end, including what arrived meanwhile
        os.truncate(path, 0)
    return True


class LiveRotation:
    """A daemon thread that keeps one log bounded while its writer runs: checked every `every_s`."""

    def __init__(self, path: Path, max_bytes: int | None = None, keep: int | None = None, every_s: float | None = None):

        self.path = Path(path)
        self.max_bytes = LOG_MAX_BYTES if max_bytes is None else max_bytes
        self.keep = LOG_KEEP if keep is None else keep
        self.every_s = LIVE_ROTATE_EVERY_S if every_s is None else every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rotate {self.path.name}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                rotate_live(self.path, self.max_bytes, self.keep)
            except OSError:
                pass  # a full disk or a vanished dir: try again next time, never stop serving over a log

    def start(self) -> LiveRotation:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def private_log_handler(path: Path, max_bytes: int = 2**20, keep: int = 3):  # noqa: ANN201
    """A logging.handlers.RotatingFileHandler whose files are created 0600 (the supervisor's log)."""

    class _Private(logging.handlers.RotatingFileHandler):
        def _open(self):  # noqa: ANN202 - logging's own hook for (re)opening the file
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
            return open(os.open(self.baseFilename, flags, 0o600), "a", encoding=self.encoding or "utf-8")

    private_dir(Path(path).parent)
    return _Private(path, maxBytes=max_bytes, backupCount=keep, encoding="utf-8")


def _die_with_parent(parent: int):  # noqa: ANN202
    """A preexec_fn for Linux: the child gets SIGTERM when the thread that spawned it ends (a
    SIGKILLed supervisor included), so no llama-server outlives llmtp holding its port. Spawn from a
    thread that lives as long as the child should (the main thread, or the supervisor's own)."""
    if not sys.platform.startswith("linux"):
        return None

    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def spawn_logged(
    argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen, int]:
    """Start `argv` in a new session (its group id is its pid) with stdout+stderr appended to
    `log_path`; returns the process and the log offset where this run's output begins. The child
    dies with this process (Linux: parent-death signal).

    Raises FileNotFoundError / PermissionError when the binary cannot be run.
    """
    private_dir(log_path.parent)
    with open_private(log_path, "ab") as log:
        # the wall clock of this start: llama-server stamps its lines relative to it (core/logview.py)
        log.write(f"llmtp: llama-server started at {time.time():.6f}\n".encode())
        log.flush()
        offset = log.seek(0, os.SEEK_END)
        full_env = None if env is None else {**os.environ, **env}
        proc = subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    return proc, offset


def spawn_detached(argv: Sequence[str], out_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start `argv` in its own session, detached from this terminal, its output in `out_path`
    (truncated): a background `llmtp serve ... --foreground`, which outlives us on purpose."""
    private_dir(out_path.parent)
    with open_private(out_path, "wb") as out:
        return subprocess.Popen(
            list(argv),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=None if env is None else dict(env),
        )
