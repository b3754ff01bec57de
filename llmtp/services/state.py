"""The serve state file: one JSON per port under state_dir, guarded by a lock held while serving.

The lock (a POSIX flock, llmtp.adapters.flock) is what makes two `llmtp serve` on one port refuse
cleanly: the second cannot take it. The JSON is what `status`, `stop` and `logs` read; a stale file
(its llmtp pid is gone) is ignored and replaced.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

from llmtp.adapters.files import write_text_atomic
from llmtp.adapters.flock import Flock
from llmtp.errors import ServeError


class ServeState(BaseModel):
    llmtp_pid: int  # the supervising llmtp process (what `llmtp stop` signals)
    server_pid: int | None = None  # the current llama-server
    state: str = "starting"
    host: str
    port: int
    model: str
    build: str | None = None
    argv: list[str] = Field(default_factory=list)
    log_path: str
    started_at: float = Field(default_factory=time.time)  # wall clock, for uptime
    restarts: int = 0
    last_error: list[str] = Field(default_factory=list)
    api_key_file: str | None = None


def state_path(state_dir: Path, port: int) -> Path:
    return state_dir / f"serve-{port}.json"


def lock_path(state_dir: Path, port: int) -> Path:
    return state_dir / f"serve-{port}.lock"


def log_path(state_dir: Path, port: int) -> Path:
    return state_dir / "logs" / f"server-{port}.log"


def supervisor_log_path(state_dir: Path, port: int) -> Path:
    return state_dir / "logs" / f"llmtp-serve-{port}.log"


def detach_out_path(state_dir: Path, port: int) -> Path:
    """stdout/stderr of a detached `llmtp serve ... --foreground` (what `detach` reads on failure)."""
    return supervisor_log_path(state_dir, port).with_suffix(".out")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PortClaim:
    """Holds the port's lock for as long as this process serves it."""

    def __init__(self, state_dir: Path, port: int, *, held: Flock | None = None):
        """`held`: the same lock, already taken by this process (a warm start takes it before the
        CLI has parsed anything); it is adopted instead of taken a second time."""
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir, self.port = state_dir, port
        path = lock_path(state_dir, port)
        self._lock = held if held is not None and held.held and held.path == path else Flock(path)

    def acquire(self) -> PortClaim:
        if not self._lock.acquire():
            other = read_state(self.state_dir, self.port)
            who = f"pid {other.llmtp_pid}, serving {other.model}" if other else "another process"
            raise ServeError(f"Port {self.port} is already served by llmtp ({who})",
                             f"Stop it with `llmtp stop --port {self.port}`, or pick another --port.") from None
        return self

    def write(self, state: ServeState) -> None:
        write_text_atomic(state_path(self.state_dir, self.port), state.model_dump_json(indent=2))

    def release(self) -> None:
        state_path(self.state_dir, self.port).unlink(missing_ok=True)
        self._lock.release()

    def __enter__(self) -> PortClaim:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_state(state_dir: Path, port: int) -> ServeState | None:
    """The live state for `port`, or None (no file, unreadable, or its llmtp is gone)."""
    path = state_path(state_dir, port)
    try:
        state = ServeState.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
    return state if _pid_alive(state.llmtp_pid) else None


def all_states(state_dir: Path) -> list[ServeState]:
    out = []
    for path in sorted(state_dir.glob("serve-*.json")):
        try:
            port = int(path.stem.removeprefix("serve-"))
        except ValueError:
            continue
        if (st := read_state(state_dir, port)) is not None:
            out.append(st)
    return out
