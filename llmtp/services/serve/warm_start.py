"""Warm start: a repeat `llmtp serve ... --foreground` starts llama-server before the CLI has loaded.

Loading pydantic, pydantic-settings, typer and the planner costs ~0.3 s before `serve` could spawn
anything (docs/serving.md has the measurements: lazy imports cannot remove it). When the same command
line (same arguments, working directory and LLMTP_* environment) reached READY before, its resolved
llama-server command is on record: the entry point takes the port's lock, checks the port and the
recorded files (binary, model) are unchanged, and spawns that command at once. The normal path then
runs in full (settings, build, plan on the hardware of now) and `handover` adopts the warm process only
when the full path arrives at exactly the same command, log and lock; else it stops the warm process
(and its group) and launches what the full path decided. A warm start therefore changes when
llama-server starts, never what runs. A detached `serve` whose foreground child has a record starts
that child at once the same way (the child then warm-starts in turn).

All of it is one `WarmStart` object, made and closed by the entry point (cli/entry.py) and handed to
`serve` through the CLI context: no module state, no exit hook, no signal handler. What it started and
nobody took over is stopped when the entry point closes it; a process killed before that takes its warm
llama-server along through the parent-death signal (adapters/spawn.py; Linux). Records live under the
state dir that llmtp.paths resolves exactly as the settings do (config.toml included).

Stdlib only: this module runs before anything heavy is imported (a test checks it).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from llmtp import __version__, paths
from llmtp.adapters.flock import Flock
from llmtp.adapters.ports import port_free
from llmtp.adapters.spawn import (
    LOG_KEEP,
    LOG_MAX_BYTES,
    private_dir,
    rotate,
    spawn_detached,
    spawn_logged,
)
from llmtp.core.passthrough import refused_passthrough  # pure, stdlib only
from llmtp.services.serve.command_line import foreground_args, foreground_command  # stdlib only

ENV_PREFIX = "LLMTP_"


class Warm:
    """A warm llama-server: the process, what it runs, and the port lock taken for it."""

    def __init__(
        self,
        proc,
        argv: list[str],
        log_path: str,
        log_offset: int,
        lock: Flock,  # noqa: ANN001
        started_at: float,
    ):
        self.proc, self.argv, self.log_path, self.log_offset = proc, argv, log_path, log_offset
        self.lock, self.started_at = lock, started_at  # started_at: time.monotonic() at spawn


def records_dir(state_dir: Path) -> Path:
    """Where warm records live: the state dir, which a systemd unit keeps writable (ReadWritePaths=),
    unlike the cache dir."""
    return Path(state_dir) / "warm-start"


def _detached_serve(args: Sequence[str]) -> bool:
    own = list(args[: args.index("--")]) if "--" in args else list(args)
    return (
        bool(own)
        and own[0] == "serve"
        and "--foreground" not in own
        and not any(a in ("--dry-run", "--help") for a in own)
    )


def invocation_key(args: Sequence[str], cwd: str, env: Mapping[str, str]) -> str | None:
    """The key of a `serve ... --foreground` command line, or None for any other command."""
    own = list(args[: args.index("--")]) if "--" in args else list(args)
    if not own or own[0] != "serve" or "--foreground" not in own:
        return None
    if any(a in ("--dry-run", "--help") for a in own):
        return None
    if "--" in args and refused_passthrough(args[args.index("--") + 1 :]) is not None:
        return None  # serve refuses it: a record made before that check must not start it early
    llmtp_env = sorted((k, v) for k, v in env.items() if k.startswith(ENV_PREFIX))
    blob = json.dumps([__version__, list(args), cwd, llmtp_env])
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _stamp(path: str) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [path, st.st_size, st.st_mtime_ns]


def _read_record(records: Path, key: str) -> dict | None:
    """The record for `key` when the files it was planned from are unchanged, else None.
    Not adapters.files' store reader: this runs before pydantic is imported, and a bad record must
    never stop a command (it only means a cold start; the full path then writes a good one)."""
    try:
        record = json.loads((records / f"{key}.json").read_text(encoding="utf-8"))
        if any(_stamp(s[0]) != s for s in record["stamps"]):
            return None  # the binary or the model changed since: the full path decides afresh
        return record
    except Exception:  # noqa: BLE001 - missing, old or corrupt: start cold
        return None


class Handover(NamedTuple):
    warm: Warm | None  # the warm process, when it runs exactly what the full path planned
    lock: Flock | None  # the port's lock, when it is the one the full path claims
    note: str | None  # why a warm process was not used (for the supervisor log)


class WarmStart:
    """One invocation's warm start. The entry point makes it, `start`s it before the CLI loads, hands
    it to the command (typer's context object) and closes it when the command returns or raises."""

    def __init__(self, args: Sequence[str], env: Mapping[str, str], cwd: str | None = None):
        """`env`: the process environment (the entry point passes os.environ; only LLMTP_* keys count)."""
        self.args = list(args)
        self.env = env
        self.cwd = os.getcwd() if cwd is None else cwd
        self.key = invocation_key(self.args, self.cwd, self.env)  # None: not a serve --foreground
        self.warm: Warm | None = None  # the llama-server started early, until handed over
        self._child = None  # a detached serve's foreground child, started early (subprocess.Popen)
        self._child_out: str | None = None  # where that child writes its output

    def __enter__(self) -> WarmStart:
        self.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.close()

    def _records(self) -> Path:
        return records_dir(paths.state_dir(self.env))

    def start(self) -> Warm | None:
        """Spawn the recorded llama-server for this command line, if any. A detached `serve` with a
        record for its foreground child spawns that child at once instead. Never raises: any doubt
        means no warm start, and the normal path does everything as usual."""
        try:
            if _detached_serve(self.args):
                fg = foreground_args(self.args)
                record = _read_record(self._records(), invocation_key(fg, self.cwd, self.env) or "")
                if record is not None and record.get("detach_out"):
                    self._child = spawn_detached(foreground_command(self.args), Path(record["detach_out"]), self.env)
                    self._child_out = record["detach_out"]
                return None
            if self.key is None:
                return None
            record = _read_record(self._records(), self.key)
            if record is None:
                return None
            argv, log_path = [str(a) for a in record["argv"]], Path(record["log_path"])
            lock = Flock(record["lock_path"])
            if not lock.acquire():
                return None  # another serve holds the port: the full path says who
        except Exception:  # noqa: BLE001 - an unreadable record, state dir or lock: start cold
            return None
        try:
            if not port_free(record["host"], int(record["port"])):
                lock.release()
                return None
            rotate(log_path, LOG_MAX_BYTES, LOG_KEEP)
            proc, offset = spawn_logged(argv, log_path)
        except Exception:  # noqa: BLE001 - an unrunnable binary, an unwritable log: start cold
            lock.release()
            return None
        self.warm = Warm(proc, argv, str(log_path), offset, lock, time.monotonic())
        return self.warm

    def take_child(self, argv: Sequence[str], out_path: Path):  # noqa: ANN201 - subprocess.Popen | None
        """The detached child started early, when it runs `argv` writing to `out_path` (what detach
        would start); else None (and a child that runs something else is stopped)."""
        child, self._child = self._child, None
        if child is None:
            return None
        if list(child.args) == list(argv) and self._child_out == str(out_path) and child.poll() is None:
            return child
        _stop_pid(child)
        return None

    def running_pid(self) -> int | None:
        """The warm llama-server's pid while one runs un-adopted (planning adds its memory back)."""
        if self.warm is None or self.warm.proc.poll() is not None:  # type: ignore[attr-defined]
            return None
        return self.warm.proc.pid  # type: ignore[attr-defined]

    def handover(self, argv: Sequence[str], log_path: Path, lock_path: Path) -> Handover:
        """What the full path gets from a warm start. Whatever does not match is stopped or released."""
        warm, self.warm = self.warm, None
        if warm is None:
            return Handover(None, None, None)
        lock = warm.lock if str(warm.lock.path) == str(lock_path) else None
        if lock is None:
            warm.lock.release()
        same = warm.argv == [str(a) for a in argv] and warm.log_path == str(log_path)
        exited = warm.proc.poll() is not None  # type: ignore[attr-defined]
        if same and not exited and lock is not None:
            return Handover(warm, lock, None)
        why = "it exited" if exited else "the plan of now differs" if not same else "the port's lock moved"
        _stop_pid(warm.proc)
        return Handover(None, lock, f"warm-started llama-server (pid {warm.proc.pid}) not used: {why}")  # type: ignore[attr-defined]

    def close(self) -> None:
        """Stop what was started early and never taken over (the command failed, or was interrupted)."""
        warm, self.warm = self.warm, None
        if warm is not None:
            _stop_pid(warm.proc)
            warm.lock.release()
        child, self._child = self._child, None
        if child is not None:
            _stop_pid(child)

    def remember(
        self,
        *,
        argv: Sequence[str],
        log_path: Path,
        lock_path: Path,
        host: str,
        port: int,
        files: Sequence[str],
        state_dir: Path,
        detach_out: Path | None = None,
    ) -> Path | None:
        """After READY: record this command line's llama-server command for the next start, under
        `state_dir` (the settings' own). `files` (binary, model) are stamped by size and mtime: a
        change means no warm start. `detach_out`: where a detached parent sends this process's output."""
        if self.key is None:
            return None
        stamps = [s for s in (_stamp(str(f)) for f in files) if s is not None]
        record = {
            "argv": [str(a) for a in argv],
            "log_path": str(log_path),
            "lock_path": str(lock_path),
            "host": host,
            "port": port,
            "stamps": stamps,
            "detach_out": None if detach_out is None else str(detach_out),
        }
        path = records_dir(state_dir) / f"{self.key}.json"
        from llmtp.adapters.files import write_json_atomic  # the full path has loaded pydantic already

        try:
            private_dir(path.parent)
            write_json_atomic(path, record)  # created 0600 (mkstemp): it holds the whole llama-server command
        except OSError:
            return None
        return path


def _stop_pid(proc) -> None:  # noqa: ANN001 - a subprocess.Popen
    """SIGTERM to the process's group (a detached child stops its own llama-server), then reap."""
    from llmtp.adapters.proctree import stop_child_group

    stop_child_group(proc, grace=10)
    try:
        proc.wait(timeout=5)
    except Exception:  # noqa: BLE001 - already reaped, or SIGKILLed by terminate_group
        pass
