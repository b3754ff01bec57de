"""Serve use-cases: launch one llama-server for a LaunchSpec and always stop it on the way out."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmtp.core.argv import build_server_argv
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec
from llmtp.core.logscan import classify
from llmtp.core.restart import RestartHistory, RestartPolicy, record_crash
from llmtp.core.supervisor import Event, State, next_state, shrink_for_oom
from llmtp.errors import NetworkError, ServeError

if TYPE_CHECKING:  # imported where used: it pulls in httpx, which a --dry-run never needs
    from llmtp.adapters.server_process import ServerProcess


def read_api_key(path: str | None) -> str | None:
    """First key in an --api-key-file (llama-server's format: one per line, `#` comments)."""
    if path is None:
        return None
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            return line
    return None


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


# --- supervision ----------------------------------------------------------------------------------

Launch = Callable[[LaunchSpec], "ServerProcess"]  # start (not wait) a server for a spec
Replan = Callable[[LaunchSpec, int, list[str]], "LaunchSpec | None"]  # spec, attempt, failure lines
OnEvent = Callable[["Supervisor", str], None]

log = logging.getLogger("llmtp.serve")


@dataclass
class SupervisorConfig:
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    ready_timeout_s: float = 300.0  # load budget; see core.supervisor.load_budget_s
    tick_s: float = 0.1  # how fast an exit is noticed
    health_every_s: float = 2.0
    health_failures_to_restart: int = 3
    probe_every_s: float = 180.0  # one-token generation: catches a server whose /health lies
    probe_timeout_s: float = 60.0
    max_replans: int = 2  # out-of-memory re-plans at load, each reported
    stop_grace_s: float = 5.0


def default_replan(spec: LaunchSpec, attempt: int, lines: list[str]) -> LaunchSpec | None:
    return shrink_for_oom(spec, attempt)


class _Stopping(Exception):
    pass


class Supervisor:
    """Keeps one llama-server alive for `spec`. Side effects are injected: `launch` starts a process,
    `replan` shrinks the spec after an out-of-memory, `on_event` records every transition."""

    def __init__(self, spec: LaunchSpec, launch: Launch, *, config: SupervisorConfig | None = None,
                 replan: Replan | None = default_replan, on_event: OnEvent | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.spec, self._launch, self.config = spec, launch, config or SupervisorConfig()
        self._replan, self._on_event, self._clock = replan, on_event, clock
        self.state = State.STOPPED
        self.proc: ServerProcess | None = None
        self.restarts = 0
        self.replans = 0
        self.history = RestartHistory()
        self.last_error: list[str] = []
        self.ready_at: float | None = None
        self._stop = threading.Event()
        self._probe: threading.Thread | None = None
        self._probe_result: str | None = None  # "ok", "wedged", None (running / not started)

    # -- events --------------------------------------------------------------------------------
    def _fire(self, event: Event, message: str) -> None:
        self.state = next_state(self.state, event)
        log.info("%s -> %s: %s", event.value, self.state.value, message)
        if self._on_event is not None:
            self._on_event(self, message)

    def request_stop(self) -> None:
        """Thread- and signal-safe: the loop notices within one tick."""
        self._stop.set()

    # -- main loop -----------------------------------------------------------------------------
    def run(self) -> None:
        """Serve until request_stop() (returns) or until the policy gives up (raises ServeError)."""
        try:
            while not self._stop.is_set():
                if self._start_once():
                    self._watch()
        except _Stopping:
            pass
        finally:
            if self.proc is not None:
                self.proc.stop(self.config.stop_grace_s)
            if self.state is not State.FAILED:
                self._fire(Event.STOP, "stopped")

    def _start_once(self) -> bool:
        self._fire(Event.START, f"starting llama-server on {self.spec.host}:{self.spec.port}")
        self.proc = self._launch(self.spec)

        def on_poll(_status: int | None) -> None:
            if self._stop.is_set():
                raise _Stopping

        try:
            self.proc.wait_ready(self.config.ready_timeout_s, on_poll=on_poll)
        except ServeError as exc:
            self._crashed(exc.message, uptime=None)
            return False
        self.ready_at = self._clock()
        self._fire(Event.READY, f"ready (pid {self.proc.pid})")
        return True

    def _crashed(self, reason: str, uptime: float | None) -> None:
        assert self.proc is not None
        self.proc.stop(self.config.stop_grace_s)
        text = self.proc.log_tail()
        lines = self.proc.failure_lines()
        self.last_error = lines
        if (uptime is None and classify(text) == "oom" and self._replan is not None
                and self.replans < self.config.max_replans):
            new = self._replan(self.spec, self.replans + 1, lines)
            if new is not None:
                self.replans += 1
                old, self.spec = self.spec, new
                self._fire(Event.CRASH, f"out of memory at load; re-plan {self.replans}/"
                           f"{self.config.max_replans}: -ngl {old.n_gpu_layers} -> {new.n_gpu_layers}, "
                           f"-c {old.ctx_size} -> {new.ctx_size}")
                return
        self.history, decision = record_crash(self.config.policy, self.history, self._clock(), uptime)
        if decision.action == "give_up":
            self._fire(Event.GIVE_UP, f"{reason}; giving up: {decision.reason}")
            raise ServeError(f"llama-server keeps failing ({decision.reason}); last failure: {reason}",
                             f"Full log: {self.proc.log_path}.", details=lines)
        self.restarts += 1
        self._fire(Event.CRASH, f"{reason}; {decision.reason}")
        if self._stop.wait(decision.delay_s):
            raise _Stopping

    def _watch(self) -> None:
        assert self.proc is not None
        cfg, proc = self.config, self.proc
        last_health = last_probe = self._clock()
        failures = 0
        self._probe_result = None
        with proc.client(timeout=cfg.probe_timeout_s) as client:
            while not self._stop.wait(cfg.tick_s):
                now = self._clock()
                uptime = now - (self.ready_at or now)
                if not proc.alive():
                    self._crashed(f"llama-server exited with code {proc.returncode}", uptime)
                    return
                if now - last_health >= cfg.health_every_s:
                    last_health = now
                    if client.health(timeout=2.0) == 200:
                        failures = 0
                        if self.state is State.UNHEALTHY:
                            self._fire(Event.HEALTH_OK, "/health ok again")
                    else:
                        failures += 1
                        self._fire(Event.HEALTH_FAIL, f"/health failed ({failures}/{cfg.health_failures_to_restart})")
                        if failures >= cfg.health_failures_to_restart:
                            self._crashed(f"/health failed {failures} times in a row", uptime)
                            return
                if self._probe_result == "wedged":
                    self._probe_result = None
                    self._crashed(f"a one-token generation did not finish in {cfg.probe_timeout_s:.0f} s", uptime)
                    return
                if now - last_probe >= cfg.probe_every_s and (self._probe is None or not self._probe.is_alive()):
                    last_probe = now
                    self._probe = threading.Thread(target=self._run_probe, args=(client, proc), daemon=True)
                    self._probe.start()

    def _run_probe(self, client, proc: ServerProcess) -> None:
        """One-token generation. A timeout is 'wedged' only if no token was produced meanwhile
        (a long user request can hold the only slot; that is busy, not stuck)."""
        before = _tokens_predicted(client)
        try:
            client.completion("ping", n_predict=1, temperature=0.0)
            result = "ok"
        except NetworkError:
            after = _tokens_predicted(client)
            busy = before is not None and after is not None and after > before
            result = "ok" if busy else "wedged"
        if self.proc is proc:  # a probe of a server already replaced says nothing about the new one
            self._probe_result = result


def _tokens_predicted(client) -> float | None:
    try:
        return client.metrics().get("llamacpp:tokens_predicted_total")
    except NetworkError:
        return None


def make_launcher(server: Path, caps: Capabilities, *, log_path: Path, api_key: str | None = None,
                  max_log_bytes: int = 20 * 2**20, keep: int = 3) -> Launch:
    """The real Launch: argv for this dialect, log rotated before each start, process started."""
    def launch(spec: LaunchSpec) -> ServerProcess:
        from llmtp.adapters.server_process import ServerProcess

        argv = build_server_argv(str(server), caps, spec)
        rotate(log_path, max_log_bytes, keep)
        proc = ServerProcess(argv, log_path=log_path, host=spec.host, port=spec.port, api_key=api_key)
        return proc.start()
    return launch


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


# --- serve in the foreground, stop, status --------------------------------------------------------

def check_port_free(host: str, port: int) -> None:
    from llmtp.adapters import ports, proctree

    if not ports.port_free(host, port):
        holder = proctree.port_holder(port)
        who = holder.describe() if holder else "another process"
        raise ServeError(f"Port {port} on {host} is already in use by {who}",
                         "Stop that process, or choose another port with --port.")


def serve_foreground(server: Path, caps: Capabilities, spec: LaunchSpec, *, state_dir: Path,
                     build_id: str | None = None, config: SupervisorConfig | None = None,
                     replan: Replan | None = default_replan, install_signals: bool = True,
                     on_event: OnEvent | None = None,
                     on_ready: Callable[[Supervisor], None] | None = None) -> Supervisor:
    """Claim the port, supervise until stopped (returns) or until the policy gives up (raises).

    SIGTERM and SIGINT stop the whole llama-server group before returning: no orphan survives.
    """
    import logging.handlers
    import os
    import signal

    from llmtp.services import state as st

    claim = st.PortClaim(state_dir, spec.port).acquire()  # a second serve on this port stops here
    handler = None
    try:
        check_port_free(spec.host, spec.port)
        sup_log = st.supervisor_log_path(state_dir, spec.port)
        sup_log.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(sup_log, maxBytes=2**20, backupCount=3)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        server_log = st.log_path(state_dir, spec.port)
        launch = make_launcher(server, caps, log_path=server_log, api_key=read_api_key(spec.api_key_file))
        record = st.ServeState(llmtp_pid=os.getpid(), host=spec.host, port=spec.port, model=spec.model,
                               build=build_id, log_path=str(server_log), api_key_file=spec.api_key_file)

        seen_ready: set[int] = set()

        def on_change(sup: Supervisor, message: str) -> None:
            record.state = sup.state.value
            record.server_pid = sup.proc.pid if sup.proc is not None else None
            record.argv = sup.proc.argv if sup.proc is not None else []
            record.restarts = sup.restarts
            record.last_error = sup.last_error
            claim.write(record)
            if on_ready is not None and sup.state is State.READY and sup.proc is not None \
                    and sup.proc.pid not in seen_ready:
                seen_ready.add(sup.proc.pid)  # once per launch, not after every /health recovery
                on_ready(sup)
            if on_event is not None:
                on_event(sup, message)

        sup = Supervisor(spec, launch, config=config, replan=replan, on_event=on_change)
        previous = {}
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, lambda *_: sup.request_stop())
        try:
            sup.run()
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
        return sup
    finally:
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        claim.release()


def stop_served(state_dir: Path, port: int, timeout: float = 30.0) -> bool:
    """Ask the llmtp serving `port` to stop (SIGTERM) and wait for it; False when none runs."""
    import os
    import signal

    from llmtp.adapters import proctree
    from llmtp.services import state as st

    record = st.read_state(state_dir, port)
    if record is None:
        return False
    os.kill(record.llmtp_pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proctree.pid_alive(record.llmtp_pid):
        time.sleep(0.1)
    if proctree.pid_alive(record.llmtp_pid):
        raise ServeError(f"llmtp (pid {record.llmtp_pid}) did not stop within {timeout:.0f} s",
                         f"Kill it by hand: kill {record.llmtp_pid}.")
    if record.server_pid is not None and proctree.pid_alive(record.server_pid):
        proctree.terminate_group(record.server_pid)  # belt and braces: never leave the server behind
    return True


def status_report(state_dir: Path) -> list[dict]:
    """One entry per live serve: the state file plus what the server says right now."""
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.core.metrics import server_metrics
    from llmtp.services import state as st

    out = []
    for record in st.all_states(state_dir):
        entry = record.model_dump()
        entry["uptime_s"] = round(time.time() - record.started_at, 1)
        entry["base_url"] = base_url_for(record.host, record.port)
        entry["tokens_per_second"] = entry["mtp_acceptance"] = None
        try:
            with LlamaClient(entry["base_url"], read_api_key(record.api_key_file), timeout=2) as c:
                m = server_metrics(c.metrics())
            entry["tokens_per_second"] = m.predicted_tokens_per_second
            entry["mtp_acceptance"] = m.mtp_acceptance
        except (NetworkError, OSError):
            pass  # not ready, or --metrics off: unknown stays None
        out.append(entry)
    return out


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


@dataclass
class Planned:
    """The plan's launch for one model, and what calibration needs after the launch."""

    spec: LaunchSpec
    plan: object | None = None  # core.plan.Plan; None when the caller planned by other means
    calibration_key: str | None = None
    corrections: dict[str, float] = field(default_factory=dict)


PlanFn = Callable[..., Planned]  # (settings, model_ref, host=, port=, request=, caps=) -> Planned


def plan_launch(settings, model_ref: str, *, host: str, port: int, request, caps: Capabilities,
                hardware=None) -> Planned:
    """Resolve MODEL (alias, path, hf:org/repo:quant), plan it for this machine and this build."""
    from llmtp.errors import UsageError
    from llmtp.services import models
    from llmtp.services.plan import hardware_for_build, plan_resolved

    resolved = models.resolve_model(model_ref, settings)
    if resolved.path is None and resolved.entry is not None:
        # not the default quant: any quant pulled earlier will do (the plan then fits that file)
        local = [q.name for q in resolved.entry.quants if models.pulled(settings, resolved.entry.alias, q.name)]
        if local:
            resolved = models.resolve_model(model_ref, settings, quant=local[0])
    if resolved.path is None:
        raise UsageError(f"{model_ref} is not downloaded yet",
                         f"Run `llmtp models pull {model_ref}` first (or pass the path to a .gguf file).")
    result = plan_resolved(resolved, settings, request, hardware or hardware_for_build(caps))
    spec = result.plan.to_launch_spec(str(resolved.path), host=host, port=port)
    return Planned(spec=spec, plan=result.plan, calibration_key=result.calibration_key,
                   corrections=result.corrections)


def cached_capabilities(server: Path, cache_dir: Path | None) -> Capabilities:
    """Capabilities of a --server binary, probed once per (path, size, mtime): probing runs the
    binary three times, which `llmtp serve` must not pay on every start."""
    import hashlib

    server = Path(server)
    cache = None
    try:
        st = server.resolve().stat()
        ident = f"{server.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        cache = Path(cache_dir) / "capabilities" / (hashlib.sha256(ident.encode()).hexdigest()[:24] + ".json")
        return Capabilities.model_validate_json(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        pass
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.build import probe_binary

    caps = probe_binary(server.parent, SubprocessRunner())
    if cache is not None and caps.flags:  # a failed probe (no flags) is never cached
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(caps.model_dump_json(), encoding="utf-8")
        except OSError:
            pass
    return caps


_VERBOSITY_FLAGS = ("-lv", "--verbosity", "--log-verbosity", "-v", "--verbose", "--log-verbose")


def _calibration_args(caps: Capabilities, extra: list[str]) -> list[str]:
    """`-lv 4`: llama-server prints its buffer sizes (the calibration ground truth) only at
    verbosity 4 ("trace", b11434; ~26 lines per request). Never overrides the user's choice."""
    flag = caps.first_of("-lv", "--verbosity", "--log-verbosity")
    if flag is None or any(a in _VERBOSITY_FLAGS for a in extra):
        return []
    return [flag, "4"]


def prepare_launch(settings, model_ref: str, *, host: str | None = None, port: int | None = None,
                   ctx: int | None = None, no_mtp: bool = False, parallel: int | None = None,
                   api_key_file: str | None = None, extra: list[str] | None = None,
                   server: Path | None = None, plan: PlanFn = plan_launch,
                   probe: Callable[[Path], Capabilities] | None = None,
                   current_build: Callable | None = None,
                   tuned: Callable[[Path], object] | None = None, hardware=None) -> Prepared:
    """Resolve build, model and plan into one LaunchSpec, and check it is safe to run."""
    from llmtp.core.argv import check_extra_args
    from llmtp.core.plan import PlanRequest
    from llmtp.core.supervisor import load_budget_s
    from llmtp.errors import UsageError

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
        if key_path.stat().st_mode & 0o077:
            notes.append(f"{key_path} is readable by other users; chmod 600 it")
        api_key_file = str(key_path)

    if server is not None:
        if probe is None:
            def probe(p: Path) -> Capabilities:
                return cached_capabilities(p, settings.cache_dir)
        server, caps, build_id = Path(server), probe(Path(server)), None
    else:
        if current_build is None:
            from llmtp.services.build import current_build
        build = current_build(settings)
        if build is None:
            raise ServeError("No llama.cpp build is installed yet",
                             "Run `llmtp build` first, or pass --server PATH to an existing llama-server.")
        server, caps, build_id = build.server, build.manifest.capabilities, build.id

    request = PlanRequest(ctx=ctx, no_mtp=no_mtp, parallel=parallel or 1)
    kwargs = {"hardware": hardware} if hardware is not None else {}
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
    spec.api_key_file = api_key_file
    spec.extra_args = _calibration_args(caps, list(extra or [])) + list(extra or [])
    check_extra_args(spec)
    size = model_path.stat().st_size if model_path.is_file() else None
    return Prepared(server=server, caps=caps, spec=spec, build_id=build_id,
                    ready_timeout_s=load_budget_s(size), notes=notes, reasons=reasons, warnings=warnings,
                    planned=planned)


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


def detach(state_dir: Path, port: int, argv: list[str], ready_timeout_s: float):
    """Run `argv` (llmtp serve ... --foreground) in its own session and wait until it is ready."""
    import subprocess

    from llmtp.services import state as st

    out_path = st.supervisor_log_path(state_dir, port).with_suffix(".out")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with open(out_path, "wb") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)
    # The child's own readiness budget governs; ours only adds slack for its start-up.
    deadline = time.monotonic() + ready_timeout_s + 30
    while time.monotonic() < deadline:
        record = st.read_state(state_dir, port)
        if record is not None and record.llmtp_pid == child.pid and record.state == "ready":
            return record
        if child.poll() is not None:
            text = out_path.read_text(encoding="utf-8", errors="replace")
            error = [ln for ln in text.splitlines() if ln.startswith("error:") or ln.startswith("  ")]
            raise ServeError(f"llmtp serve exited with code {child.returncode} before the server was ready",
                             f"Full output: {out_path}.", details=error[-12:])
        time.sleep(0.1)
    child.terminate()
    raise ServeError(f"The server was not ready within {ready_timeout_s + 30:.0f} s",
                     "See `llmtp logs`.")
