"""Serve use-cases: resolve model, build and plan into a launch; start, detach, stop and report servers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmtp.adapters import files
from llmtp.core.argv import build_server_argv
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec, alias_problem, default_alias
from llmtp.errors import ServeError
from llmtp.services.supervisor import Supervisor, log, read_api_key

if TYPE_CHECKING:  # imported where used: it pulls in httpx, which a --dry-run never needs
    from llmtp.adapters.server_process import ServerProcess


@contextmanager
def launched(server: Path, caps: Capabilities, spec: LaunchSpec, *, log_path: Path,
             ready_timeout: float = 120) -> Iterator[ServerProcess]:
    """Start llama-server for `spec`, wait until /health is 200, yield it; stop it on exit, always.

    Raises ServeError (with the meaningful log lines) when it exits or hangs while loading.
    """
    from llmtp.adapters.server_process import ServerProcess

    argv = build_server_argv(str(server), caps, spec)
    proc = ServerProcess(argv, log_path=log_path, host=spec.host, port=spec.port,
                         api_key=read_api_key(spec.api_key_file))
    try:
        proc.start()
        proc.wait_ready(ready_timeout)
        yield proc
    finally:
        proc.stop()


# --- stop and status of detached serves -----------------------------------------------------------

def stop_served(state_dir: Path, port: int, timeout: float = 30.0,
                on_note: Callable[[str], None] | None = None) -> bool:
    """Stop what serves `port`: SIGTERM to its llmtp (which stops llama-server's whole group), and
    wait for it. A process is signalled only once proven to be the one recorded (pid, start time,
    command line). An llmtp that died is cleaned up after: its llama-server stopped when proven
    (True: the port is free again), its stale record dropped. False when nothing was stopped."""
    from llmtp.adapters import proctree
    from llmtp.services import state as st

    note = on_note or (lambda _line: None)
    swept = st.sweep(state_dir, port)
    for line in swept:
        note(line)
    orphan_stopped = any(line.startswith("stopped ") for line in swept)
    record = st.load_record(state_dir, port)
    if record is None:
        return orphan_stopped
    supervisor = st.supervisor_of(record)
    if supervisor is None:  # its lock is held, yet the writer is not proven: a start in progress, an older llmtp
        note(f"port {port}: the record names llmtp pid {record.llmtp_pid}, which llmtp cannot prove is the "
             f"process that wrote it (an older llmtp, or one starting right now); nothing was signalled")
        return orphan_stopped
    if not proctree.terminate_and_wait(supervisor, timeout):
        raise ServeError(f"llmtp (pid {record.llmtp_pid}) did not stop within {timeout:.0f} s",
                         f"Kill it by hand: kill {record.llmtp_pid}.") from None
    if record.server_proc is not None:  # belt and braces: never leave the server behind
        proctree.terminate_proven(record.server_proc.identity(), group=True)
    return True


# --- from `llmtp serve MODEL` to a launch -----------------------------------------------------------

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Prepared:
    server: Path
    caps: Capabilities
    spec: LaunchSpec
    build_id: str | None
    ready_timeout_s: float
    notes: list[str] = field(default_factory=list)
    reasons: list[dict] = field(default_factory=list)  # {what, value, reason}: the plan, explained
    warnings: list[str] = field(default_factory=list)
    planned: Planned | None = None
    devices: list[dict] = field(default_factory=list)  # with --rpc: every device of the split, RPC first


@dataclass
class Planned:
    """The plan's launch for one model, and what calibration needs after the launch."""

    spec: LaunchSpec
    plan: object | None = None  # core.plan.Plan; None when the caller planned by other means
    calibration_key: str | None = None
    corrections: dict[str, float] = field(default_factory=dict)


PlanFn = Callable[..., Planned]  # (settings, model_ref, host=, port=, request=, caps=) -> Planned


def plan_launch(settings, model_ref: str, *, host: str, port: int, request, caps: Capabilities,
                hardware=None, not_counting: frozenset[int] = frozenset()) -> Planned:
    """Resolve MODEL (alias, path, hf:org/repo:quant), plan it for this machine and this build.
    `not_counting`: pids whose memory the plan may use (a warm-started llama-server)."""
    from llmtp.services import models
    from llmtp.services.plan import hardware_for_build, plan_resolved

    resolved = models.resolve_model(model_ref, settings)
    if resolved.path is None and resolved.entry is not None:
        # not the default quant: any quant pulled earlier will do (the plan then fits that file)
        local = models.local_quants(settings, resolved.entry)
        if local:
            resolved = models.resolve_model(model_ref, settings, quant=local[0])
    if resolved.path is None:
        from llmtp.errors import ModelNotDownloadedError

        raise ModelNotDownloadedError(f"{model_ref} is not downloaded yet",
                         f"Run `llmtp models pull {model_ref}` first (or pass the path to a .gguf file).")
    result = plan_resolved(resolved, settings, request, hardware or hardware_for_build(caps, not_counting=not_counting))
    spec = result.plan.to_launch_spec(str(resolved.path), host=host, port=port)
    spec.alias = default_alias(str(resolved.path), resolved.alias or (resolved.entry.alias if resolved.entry else None))
    return Planned(spec=spec, plan=result.plan, calibration_key=result.calibration_key,
                   corrections=result.corrections)


def cached_capabilities(server: Path, cache_dir: Path | None) -> Capabilities:
    """Capabilities of a --server binary, probed once per (path, size, mtime): probing runs the
    binary three times, which `llmtp serve` must not pay on every start."""
    import hashlib

    from llmtp.adapters.files import executable_file, read_json_cache

    server = executable_file(Path(server), option="--server")  # a clear error, not an OSError from exec
    cache = None
    try:
        st = files.stat(server.resolve())
        ident = f"{server.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        cache = Path(cache_dir) / "capabilities" / (hashlib.sha256(ident.encode()).hexdigest()[:24] + ".json")
    except (OSError, TypeError):  # TypeError: no cache dir
        pass
    else:
        cached = read_json_cache(cache, Capabilities)
        if cached is not None:
            return cached
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.builds import probe_binary

    caps = probe_binary(server.parent, SubprocessRunner(), server)
    if cache is not None and caps.flags:  # a failed probe (no flags) is never cached
        try:
            from llmtp.adapters.files import write_text_atomic

            write_text_atomic(cache, caps.model_dump_json())  # serves read it concurrently
        except OSError:
            pass
    return caps


_VERBOSITY_FLAGS = ("-lv", "--verbosity", "--log-verbosity", "-v", "--verbose", "--log-verbose")


def _calibration_args(caps: Capabilities, extra: list[str]) -> list[str]:
    """`-lv 4`: llama-server prints its buffer sizes (the calibration ground truth) only at
    verbosity 4: they are libllama INFO lines, which common/log.cpp maps to TRACE (4), above the
    default threshold 3 (b11434). Measured on the test bed: ~5.7 kB (51 lines) per request at -lv 4
    against ~0.9 kB (8 lines) at -lv 3; either grows without end, so the supervisor rotates the log
    live (adapters.spawn.LiveRotation). Never overrides the user's choice."""
    flag = caps.first_of("-lv", "--verbosity", "--log-verbosity")
    if flag is None or any(a in _VERBOSITY_FLAGS for a in extra):
        return []
    return [flag, "4"]


def prepare_launch(settings, model_ref: str, *, host: str | None = None, port: int | None = None,
                   ctx: int | None = None, no_mtp: bool = False, parallel: int | None = None,
                   api_key_file: str | None = None, extra: list[str] | None = None,
                   server: Path | None = None, alias: str | None = None, plan: PlanFn = plan_launch,
                   probe: Callable[[Path], Capabilities] | None = None,
                   current_build: Callable | None = None,
                   tuned: Callable[[Path], object] | None = None, hardware=None,
                   not_counting: frozenset[int] = frozenset(), ui: bool = True,
                   rpc: str | None = None) -> Prepared:
    """Resolve build, model and plan into one LaunchSpec, and check it is safe to run.
    `not_counting`: pids whose memory the plan may use (the entry point's warm-started llama-server).
    `ui` False turns llama-server's web UI off."""
    from llmtp.core.passthrough import check_passthrough
    from llmtp.core.plan_types import PlanRequest
    from llmtp.core.supervisor import load_budget_s
    from llmtp.errors import UsageError
    from llmtp.services.rpc import rpc_split

    check_passthrough(extra or [])  # before anything is probed or planned; argv below checks the rest
    if alias is not None and (why := alias_problem(alias)) is not None:
        raise UsageError(f"--alias {alias!r} cannot name the model: {why}",
                         "Pass one name without commas, e.g. `--alias my-model`.")
    host = host or settings.host
    port = port or settings.port
    notes: list[str] = []
    if host not in LOOPBACK and api_key_file is None:
        raise UsageError(f"Binding to {host} exposes the server to the network without an API key",
                         "Pass --api-key-file FILE (one key per line), or bind to 127.0.0.1.")
    if api_key_file is not None:
        key_path = Path(api_key_file).expanduser().resolve()
        if not key_path.is_file() or read_api_key(str(key_path)) is None:
            raise UsageError(f"The API key file {key_path} is missing or holds no key",
                             "Write one key per line into it (chmod 600).")
        if files.stat(key_path).st_mode & 0o077:
            notes.append(f"{key_path} is readable by other users; chmod 600 it")
        api_key_file = str(key_path)

    if server is not None:
        if probe is None:
            def probe(p: Path) -> Capabilities:
                return cached_capabilities(p, settings.cache_dir)
        server, caps, build_id = Path(server), probe(Path(server)), None
    else:
        if current_build is None:
            from llmtp.services.builds import current_build
        build = current_build(settings)
        if build is None:
            raise ServeError("No llama.cpp build is installed yet",
                             "Run `llmtp build` first, or pass --server PATH to an existing llama-server.")
        server, caps, build_id = build.server, build.manifest.capabilities, build.id

    request = PlanRequest(ctx=ctx, no_mtp=no_mtp, parallel=parallel or 1)
    kwargs = {"hardware": hardware} if hardware is not None else {}
    if not_counting:
        kwargs["not_counting"] = not_counting
    planned = plan(settings, model_ref, host=host, port=port, request=request, caps=caps, **kwargs)
    spec = planned.spec
    reasons = [d.model_dump() for d in getattr(planned.plan, "decisions", [])]
    warnings = list(getattr(planned.plan, "warnings", []))
    model_path = Path(spec.model)
    if no_mtp:
        spec.mtp = spec.mtp.model_copy(update={"enabled": False})
    elif spec.mtp.enabled:
        if tuned is None:
            from llmtp.services import model_settings

            def tuned(p: Path):
                return model_settings.load(settings, model_settings.model_key(p))
        chosen = tuned(model_path)
        if chosen is not None:  # `llmtp tune` measured this file on this machine: it wins over defaults
            if chosen.draft_model is None and spec.mtp.draft_model is not None:
                chosen = chosen.model_copy(update={"draft_model": spec.mtp.draft_model})
            spec.mtp = chosen
            value = f"draft-mtp, n-max {chosen.n_max}" if chosen.enabled else "off"
            reasons = [r for r in reasons if r["what"] != "MTP"]
            reasons.append({"what": "MTP", "value": value, "reason": "measured by `llmtp tune` on this machine"})
            notes.append(f"MTP settings from `llmtp tune`: enabled={chosen.enabled}, n-max {chosen.n_max}")
    if ctx is not None:
        spec.ctx_size = ctx
    if parallel is not None and not spec.mtp.enabled:
        spec.parallel = parallel
    spec.api_key_file, spec.ui = api_key_file, ui
    spec.alias = alias or spec.alias or default_alias(spec.model, None)
    spec.extra_args = _calibration_args(caps, list(extra or [])) + list(extra or [])
    devices = rpc_split(settings, server, spec, rpc, reasons) if rpc else []  # names a dead worker first
    build_server_argv(str(server), caps, spec)  # refuses pass-through flags llmtp owns (core/passthrough)
    size = files.file_size(model_path) if model_path.is_file() else None
    return Prepared(server=server, caps=caps, spec=spec, build_id=build_id,
                    ready_timeout_s=load_budget_s(size), notes=notes, reasons=reasons, warnings=warnings,
                    planned=planned, devices=devices)


def calibration_hook(settings, prepared: Prepared) -> Callable[[Supervisor], None] | None:
    """What serve_foreground calls once per ready launch: record predicted vs actual memory."""
    planned = prepared.planned
    if planned is None or planned.plan is None or planned.calibration_key is None:
        return None

    def on_ready(sup: Supervisor) -> None:
        from llmtp.services.calibration import record_launch

        if sup.proc is None or sup.spec.model != planned.spec.model:
            return
        if sup.spec.ctx_size != planned.plan.ctx:  # --ctx or an OOM re-plan: not what was predicted
            return
        try:
            rec = record_launch(settings, model_key=planned.calibration_key, build=prepared.build_id,
                                plan=planned.plan, corrections=planned.corrections, log_text=sup.proc.log_tail())
        except OSError as exc:
            log.warning("calibration not recorded: %s", exc)
            return
        if rec is not None:
            log.info("calibration: predicted %s, actual %s", rec.predicted, rec.actual)

    return on_ready


def notify_ready(then: Callable[[Supervisor], None] | None, notifier=None) -> Callable[[Supervisor], None]:
    """on_ready for serve_foreground: tell systemd (Type=notify, a no-op elsewhere) that the
    server answers /health with 200, then run `then` (the calibration hook)."""
    if notifier is None:
        from llmtp.adapters.sd_notify import ReadyNotifier

        notifier = ReadyNotifier()

    def on_ready(sup: Supervisor) -> None:
        notifier.ready(f"serving {sup.spec.model} at {sup.spec.host}:{sup.spec.port}")
        if then is not None:
            then(sup)

    return on_ready


def detach(state_dir: Path, port: int, argv: list[str], ready_timeout_s: float, *, child=None):
    """Run `argv` (llmtp serve ... --foreground) in its own session and wait until it is ready.
    `child`: that very process, already started by the entry point (WarmStart.take_child, services/warm_start.py)."""
    from llmtp.adapters.spawn import spawn_detached
    from llmtp.services import state as st

    out_path = st.detach_out_path(state_dir, port)
    if child is None:
        child = spawn_detached(argv, out_path)
    # The child's own readiness budget governs; ours only adds slack for its start-up.
    deadline = time.monotonic() + ready_timeout_s + 30
    while time.monotonic() < deadline:
        record = st.read_state(state_dir, port)
        if record is not None and record.llmtp_pid == child.pid and record.state == "ready":
            return record
        if child.poll() is not None:
            text = files.read_text(out_path, errors="replace")
            error = [ln for ln in text.splitlines() if ln.startswith(("error:", "  "))]
            raise ServeError(f"llmtp serve exited with code {child.returncode} before the server was ready",
                             f"Full output: {out_path}.", details=error[-12:])
        time.sleep(0.1)
    child.terminate()
    raise ServeError(f"The server was not ready within {ready_timeout_s + 30:.0f} s",
                     "See `llmtp logs`.")
