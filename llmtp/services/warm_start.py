"""Warm start: a repeat `llmtp serve ... --foreground` starts llama-server before the CLI has loaded.

Loading typer, pydantic and the planner costs ~0.35 s before `serve` could spawn anything. When the
same command line (same arguments, working directory and LLMTP_* environment) reached READY before,
its resolved llama-server command is on record: the entry point takes the port's lock, checks the
port and the recorded files (binary, model) are unchanged, and spawns that command at once. The
normal path then runs in full (settings, build, plan on the hardware of now) and `handover` adopts
the warm process only when the full path arrives at exactly the same command, log and lock; else
it stops the warm process (and its group) and launches what the full path decided. A warm start
therefore changes when llama-server starts, never what runs. A detached `serve` whose foreground
child has a record starts that child at once the same way (the child then warm-starts in turn).

Stdlib only: this module runs before anything heavy is imported (a test checks it).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from llmtp import __version__
from llmtp.adapters.flock import Flock
from llmtp.adapters.ports import port_free
from llmtp.adapters.spawn import (
    LOG_KEEP,
    LOG_MAX_BYTES,
    open_private,
    private_dir,
    rotate,
    spawn_detached,
    spawn_logged,
)
from llmtp.core.passthrough import refused_passthrough  # pure, stdlib only

ENV_PREFIX = "LLMTP_"


class Warm:
    """A warm llama-server: the process, what it runs, and the port lock taken for it."""

    def __init__(self, proc, argv: list[str], log_path: str, log_offset: int, lock: Flock,  # noqa: ANN001
                 started_at: float):
        self.proc, self.argv, self.log_path, self.log_offset = proc, argv, log_path, log_offset
        self.lock, self.started_at = lock, started_at  # started_at: time.monotonic() at spawn


_key: str | None = None  # this invocation's key, when it is a serve --foreground
_warm: Warm | None = None
_child = None  # a detached serve's foreground child, started before the CLI loaded (subprocess.Popen)
_child_out: str | None = None  # where that child writes its output


def records_dir(env: Mapping[str, str]) -> Path:
    """Where warm records live, from the environment alone (settings are not loaded yet): the state
    dir, which a systemd unit keeps writable (ReadWritePaths=), unlike the cache dir."""
    if env.get(ENV_PREFIX + "STATE_DIR"):
        base = Path(env[ENV_PREFIX + "STATE_DIR"])
    elif env.get(ENV_PREFIX + "HOME"):
        base = Path(env[ENV_PREFIX + "HOME"]) / "state"
    else:
        import platformdirs

        base = Path(platformdirs.user_state_dir("llmtp", appauthor=False))
    return base.expanduser().resolve() / "warm-start"


def foreground_args(args: Sequence[str]) -> list[str]:
    """`serve ...` as the detached child runs it: `--foreground` added (before `--`), `--json` dropped."""
    own = [a for a in args if a not in ("--json", "--foreground")]
    if "--" in own:
        i = own.index("--")
        return [*own[:i], "--foreground", *own[i:]]
    return [*own, "--foreground"]


def _detached_serve(args: Sequence[str]) -> bool:
    own = list(args[:args.index("--")]) if "--" in args else list(args)
    return bool(own) and own[0] == "serve" and "--foreground" not in own \
        and not any(a in ("--dry-run", "--help") for a in own)


def invocation_key(args: Sequence[str], cwd: str, env: Mapping[str, str]) -> str | None:
    """The key of a `serve ... --foreground` command line, or None for any other command."""
    own = list(args[:args.index("--")]) if "--" in args else list(args)
    if not own or own[0] != "serve" or "--foreground" not in own:
        return None
    if any(a in ("--dry-run", "--help") for a in own):
        return None
    if "--" in args and refused_passthrough(args[args.index("--") + 1:]) is not None:
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


def _read_record(key: str, env: Mapping[str, str]) -> dict | None:
    """The record for `key` when the files it was planned from are unchanged, else None."""
    try:
        record = json.loads((records_dir(env) / f"{key}.json").read_text(encoding="utf-8"))
        if any(_stamp(s[0]) != s for s in record["stamps"]):
            return None  # the binary or the model changed since: the full path decides afresh
        return record
    except Exception:  # noqa: BLE001 - missing, old or corrupt: start cold
        return None


def maybe_start(args: Sequence[str], env: Mapping[str, str] | None = None) -> Warm | None:
    """At the entry point: spawn the recorded llama-server for this command line, if any. A
    detached `serve` with a record for its foreground child spawns that child at once instead.
    Never raises: any doubt means no warm start, and the normal path does everything as usual."""
    global _key, _warm, _child, _child_out
    env = os.environ if env is None else env
    _key = None
    try:
        if _detached_serve(args):
            fg = foreground_args(args)
            record = _read_record(invocation_key(fg, os.getcwd(), env) or "", env)
            if record is not None and record.get("detach_out"):
                _child = spawn_detached([sys.executable, "-m", "llmtp", *fg], Path(record["detach_out"]), env)
                _child_out = record["detach_out"]
                _arm_exit()
            return None
        _key = invocation_key(args, os.getcwd(), env)
        if _key is None:
            return None
        record = _read_record(_key, env)
        if record is None:
            return None
        argv, log_path = [str(a) for a in record["argv"]], Path(record["log_path"])
        lock = Flock(record["lock_path"])
        if not lock.acquire():
            return None  # another serve holds the port: the full path says who
    except Exception:  # noqa: BLE001 - an unreadable record or lock: start cold
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
    _warm = Warm(proc, argv, str(log_path), offset, lock, time.monotonic())
    _arm_exit()
    return _warm


def _arm_exit() -> None:
    """Whatever was started early is stopped if this process ends before taking it over. Until the
    supervisor installs its own handlers, SIGTERM must unwind through atexit too (its default
    action would leave the early process behind)."""
    atexit.register(discard)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_interrupt)


def take_child(argv: Sequence[str], out_path: Path):
    """The detached child started early, when it runs `argv` writing to `out_path` (what detach
    would start); else None (and a child that runs something else is stopped)."""
    global _child
    child, _child = _child, None
    if child is None:
        return None
    if list(child.args) == list(argv) and _child_out == str(out_path) and child.poll() is None:
        return child
    _stop_pid(child)
    return None


def _raise_interrupt(signum, frame):  # noqa: ANN001 - signal handler signature
    raise KeyboardInterrupt


def running_pid() -> int | None:
    """The warm llama-server's pid while one runs un-adopted (planning adds its memory back)."""
    if _warm is None or _warm.proc.poll() is not None:  # type: ignore[attr-defined]
        return None
    return _warm.proc.pid  # type: ignore[attr-defined]


class Handover(NamedTuple):
    warm: Warm | None  # the warm process, when it runs exactly what the full path planned
    lock: Flock | None  # the port's lock, when it is the one the full path claims
    note: str | None  # why a warm process was not used (for the supervisor log)


def handover(argv: Sequence[str], log_path: Path, lock_path: Path) -> Handover:
    """What the full path gets from a warm start. Whatever does not match is stopped or released."""
    global _warm
    warm, _warm = _warm, None
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


def discard() -> None:
    """Stop what was started early and never taken over (the command failed, or was interrupted)."""
    global _warm, _child
    warm, _warm = _warm, None
    if warm is not None:
        _stop_pid(warm.proc)
        warm.lock.release()
    child, _child = _child, None
    if child is not None:
        _stop_pid(child)


def _stop_pid(proc) -> None:  # noqa: ANN001 - a subprocess.Popen
    """SIGTERM to the process's group (a detached child stops its own llama-server), then reap."""
    from llmtp.adapters.proctree import stop_child_group

    stop_child_group(proc, grace=10)
    try:
        proc.wait(timeout=5)
    except Exception:  # noqa: BLE001 - already reaped, or SIGKILLed by terminate_group
        pass


def remember(*, argv: Sequence[str], log_path: Path, lock_path: Path, host: str, port: int,
             files: Sequence[str], detach_out: Path | None = None,
             env: Mapping[str, str] | None = None) -> Path | None:
    """After READY: record this command line's llama-server command for the next start.
    `files` (binary, model) are stamped by size and mtime: a change means no warm start.
    `detach_out`: where a detached parent sends this process's output."""
    if _key is None:
        return None
    env = os.environ if env is None else env
    stamps = [s for s in (_stamp(str(f)) for f in files) if s is not None]
    record = {"argv": [str(a) for a in argv], "log_path": str(log_path), "lock_path": str(lock_path),
              "host": host, "port": port, "stamps": stamps,
              "detach_out": None if detach_out is None else str(detach_out)}
    path = records_dir(env) / f"{_key}.json"
    try:
        private_dir(path.parent)
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open_private(tmp, "wb") as f:  # 0600: it holds the whole llama-server command line
            f.write(json.dumps(record, indent=1).encode("utf-8"))
        tmp.replace(path)
    except OSError:
        return None
    return path
