"""The serve state file: one JSON per port under state_dir, guarded by a lock held while serving.

The lock (a POSIX flock, llmtp.adapters.flock) is what makes two `llmtp serve` on one port refuse
cleanly: the second cannot take it. The JSON is what `status`, `stop` and `logs` read. It records
who the supervisor and its llama-server are (pid, start time, command line): pids are reused after
a crash or a reboot, so nothing is ever signalled on the strength of a pid alone (`proctree.matches`).
A record whose lock nobody holds was left by an llmtp that died: `sweep` stops its llama-server
when that is proven to be the one recorded (an orphan), and drops the record and the lock file.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, Field

from llmtp.adapters import files, proctree
from llmtp.adapters.files import read_json_store, write_text_atomic
from llmtp.adapters.flock import Flock
from llmtp.adapters.spawn import private_dir
from llmtp.errors import ServeError


class ProcRecord(BaseModel):
    """A process as seen when it was recorded: what `proctree.matches` proves it still is."""

    pid: int
    create_time: float
    cmdline: list[str]

    @classmethod
    def of(cls, ident: proctree.Identity | None) -> ProcRecord | None:
        return None if ident is None else cls(pid=ident.pid, create_time=ident.create_time, cmdline=list(ident.cmdline))

    def identity(self) -> proctree.Identity:
        return proctree.Identity(self.pid, self.create_time, tuple(self.cmdline))


class ServeState(BaseModel):
    llmtp_pid: int  # the supervising llmtp process (what `llmtp stop` signals)
    server_pid: int | None = None  # the current llama-server
    state: str = "starting"
    host: str
    port: int
    model: str
    alias: str | None = None  # the name /v1/models shows (llama-server --alias)
    build: str | None = None
    argv: list[str] = Field(default_factory=list)
    log_path: str
    started_at: float = Field(default_factory=time.time)  # wall clock, for uptime
    restarts: int = 0
    last_error: list[str] = Field(default_factory=list)
    api_key_file: str | None = None
    llmtp_proc: ProcRecord | None = None  # filled in by PortClaim.write: the writer itself
    server_proc: ProcRecord | None = None  # filled in by PortClaim.write: its llama-server child
    kind: str = "server"  # "server" (llama-server), "router" (several models) or "worker" (`llmtp worker`)
    models: list[dict] = Field(default_factory=list)  # a router's models: {name, model, mtp} (status, stop, logs)
    rpc: list[str] = Field(default_factory=list)  # a server's RPC workers, HOST:PORT
    command: list[str] = Field(default_factory=list)  # the llmtp command line supervising it (verify --restart)
    plan: list[dict] = Field(default_factory=list)  # the launch plan's decisions {what, value, reason} (status)
    log_offset: int = 0  # where the current llama-server's lines start in log_path (status reads this instance only)


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


class PortClaim:
    """Holds the port's lock for as long as this process serves it."""

    def __init__(self, state_dir: Path, port: int, *, held: Flock | None = None):
        """`held`: the same lock, already taken by this process (a warm start takes it before the
        CLI has parsed anything); it is adopted instead of taken a second time."""
        private_dir(state_dir)
        self.state_dir, self.port = state_dir, port
        path = lock_path(state_dir, port)
        self._lock = held if held is not None and held.held and held.path == path else Flock(path)
        self.notes: list[str] = []  # what acquire() cleaned up (orphans, stale records and locks)

    def acquire(self) -> PortClaim:
        if not self._lock.acquire():
            other = read_state(self.state_dir, self.port)
            who = f"pid {other.llmtp_pid}, serving {other.model}" if other else "another process"
            raise ServeError(
                f"Port {self.port} is already served by llmtp ({who})",
                f"Stop it with `llmtp stop --port {self.port}`, or pick another --port.",
            ) from None
        # we hold this port's lock: a record left here is from an llmtp that died
        self.notes = _clear_dead(self.state_dir, self.port) + sweep(self.state_dir)
        return self

    def write(self, state: ServeState) -> None:
        """Store `state`, with who its writer and llama-server are: the proof `stop` needs later.
        Only our own live child is recorded as the server (a crashed one's pid may be reused)."""
        me = os.getpid()
        if state.llmtp_pid == me and (state.llmtp_proc is None or state.llmtp_proc.pid != me):
            state.llmtp_proc = ProcRecord.of(proctree.identity(me))
        if state.server_pid is None:
            state.server_proc = None
        elif state.server_proc is None or state.server_proc.pid != state.server_pid:
            state.server_proc = ProcRecord.of(proctree.identity(state.server_pid, child_of=me))
        write_text_atomic(state_path(self.state_dir, self.port), state.model_dump_json(indent=2))

    def release(self) -> None:
        files.remove(state_path(self.state_dir, self.port))
        self._lock.release(remove=True)

    def __enter__(self) -> PortClaim:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def load_record(state_dir: Path, port: int) -> ServeState | None:
    """The record for `port` as stored, live or not; None when there is none. A damaged record is a
    ConfigError naming it, moved aside first (the shared store reader): nothing is signalled on its word."""
    return read_json_store(
        state_path(state_dir, port),
        ServeState,
        what="serve record",
        hint="Nothing was signalled. Run the command again; `llmtp status` shows what is served.",
    )


def supervisor_of(record: ServeState):  # -> psutil.Process | None
    """The live llmtp that wrote `record`, proven by its start time and command line; else None."""
    rec = record.llmtp_proc
    if rec is None or rec.pid != record.llmtp_pid:
        return None
    return proctree.matches(rec.identity())


def read_state(state_dir: Path, port: int) -> ServeState | None:
    """The live state for `port`, or None (no file, unreadable, or its llmtp is gone)."""
    state = load_record(state_dir, port)
    return state if state is not None and supervisor_of(state) is not None else None


def recorded_ports(state_dir: Path) -> list[int]:
    """Every port with a record or a lock file, live or stale."""
    ports = set()
    for path in [*files.glob(state_dir, "serve-*.json"), *files.glob(state_dir, "serve-*.lock")]:
        try:
            ports.add(int(path.stem.removeprefix("serve-")))
        except ValueError:
            continue
    return sorted(ports)


def all_states(state_dir: Path) -> list[ServeState]:
    return [st for port in recorded_ports(state_dir) if (st := read_state(state_dir, port)) is not None]


def _clear_dead(state_dir: Path, port: int) -> list[str]:
    """With `port`'s lock held by the caller: the record there is from an llmtp that died. Stop its
    llama-server when it is proven to be the recorded one (an orphan still holding the port), and
    drop the record. Returns one line per thing done."""
    path = state_path(state_dir, port)
    if not path.exists():
        return []
    record = load_record(state_dir, port)
    notes = []
    if (
        record is not None
        and record.server_proc is not None
        and proctree.terminate_proven(record.server_proc.identity(), group=True)
    ):
        notes.append(
            f"stopped llama-server (pid {record.server_proc.pid}) left running on port {port} "
            f"by an llmtp that died (pid {record.llmtp_pid})"
        )
    else:
        named = "" if record is None else f" (llmtp pid {record.llmtp_pid}, llama-server pid {record.server_pid})"
        notes.append(
            f"dropped the stale record for port {port}{named}: those processes are gone or are "
            "no longer the ones recorded; nothing was signalled"
        )
    files.remove(path)
    return notes


def sweep(state_dir: Path, port: int | None = None) -> list[str]:
    """Clean up after llmtps that died, for `port` or every port: their orphaned llama-servers
    (proven), their records, their lock files. Ports whose lock is held are left alone."""
    notes: list[str] = []
    for p in [port] if port is not None else recorded_ports(state_dir):
        lock = Flock(lock_path(state_dir, p))
        if not lock_path(state_dir, p).exists() and not state_path(state_dir, p).exists():
            continue
        if not lock.acquire():
            continue  # someone serves it (or is starting to)
        try:
            notes += _clear_dead(state_dir, p)
        finally:
            lock.release(remove=True)
    return notes
