"""Starting llama-server as a process: its log file (rotated) and its own session. Stdlib only, so
a warm start (llmtp.services.warm_start) can run it before the CLI has loaded."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

LOG_MAX_BYTES, LOG_KEEP = 20 * 2**20, 3  # llama-server's log: rotated before a start beyond 20 MiB


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


def spawn_logged(argv: Sequence[str], log_path: Path,
                 env: Mapping[str, str] | None = None) -> tuple[subprocess.Popen, int]:
    """Start `argv` in a new session (its group id is its pid) with stdout+stderr appended to
    `log_path`; returns the process and the log offset where this run's output begins.

    Raises FileNotFoundError / PermissionError when the binary cannot be run.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        offset = log.tell()
        full_env = None if env is None else {**os.environ, **env}
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, start_new_session=True)
    return proc, offset


def spawn_detached(argv: Sequence[str], out_path: Path, env: Mapping[str, str] | None = None) -> subprocess.Popen:
    """Start `argv` in its own session, detached from this terminal, its output in `out_path`
    (truncated): a background `llmtp serve ... --foreground`."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as out:
        return subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=None if env is None else dict(env))
