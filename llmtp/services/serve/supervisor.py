"""Supervision: keep one llama-server alive (start, watchdog, restart, OOM re-plan) in the foreground."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from llmtp.adapters import files
from llmtp.adapters.spawn import LOG_KEEP, LOG_MAX_BYTES, rotate
from llmtp.core.apikey import parse_api_keys, unsendable
from llmtp.core.launch import LaunchSpec
from llmtp.core.launch_plan import LaunchPlan
from llmtp.core.logscan import classify, exit_description
from llmtp.core.restart import RestartHistory, RestartPolicy, record_crash
from llmtp.core.supervisor import Event, State, next_state, shrink_for_oom
from llmtp.errors import ConfigError, NetworkError, ServeError

if TYPE_CHECKING:  # imported where used: it pulls in httpx, which a --dry-run never needs
    from llmtp.adapters.server_process import ServerProcess


def read_api_key(path: str | None) -> str | None:
    """The key llmtp's own requests send: the first key llama-server reads from this --api-key-file
    (parsed exactly as llama-server does, see core.apikey). None: no file given, or it holds no key.
    A key llama-server would keep but no client can send (a CRLF file) is a ConfigError."""

    if path is None:
        return None
    try:
        data = files.read_bytes(Path(path))
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the API key file {path}: {exc.strerror or exc}",
            "Check that it exists and that this user may read it (chmod 600, owned by you).",
        ) from exc
    keys = parse_api_keys(data)
    for n, key in enumerate(keys, 1):
        why = unsendable(key)
        if why is not None:
            raise ConfigError(
                f"Key {n} in the API key file {path} cannot be used: {why}",
                "No client could authenticate with it. Rewrite the file with Unix line endings "
                "(e.g. `dos2unix FILE` or `sed -i 's/\\r$//' FILE`), one key per line.",
            )
    if not keys:
        return None
    try:
        return keys[0].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"The API key file {path} is not UTF-8 text (byte {exc.start} of its first key)",
            "Write the key as plain text, one key per line.",
        ) from exc


# --- supervision ----------------------------------------------------------------------------------

Launch = Callable[[LaunchSpec], "ServerProcess"]  # start (not wait) a server for a spec
Replan = Callable[[LaunchSpec, int, list[str]], "LaunchSpec | None"]  # spec, attempt, failure lines
OnEvent = Callable[["Supervisor", str], None]

# "llmtp.serve": serve_foreground sends it to the supervisor log; serve.calibration_hook logs here too
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

    def __init__(
        self,
        spec: LaunchSpec,
        launch: Launch,
        *,
        config: SupervisorConfig | None = None,
        replan: Replan | None = default_replan,
        on_event: OnEvent | None = None,
        on_tick: Callable[[Supervisor], None] | None = None,
        watch: Callable[[], str | None] | None = None,
        before_start: Callable[[threading.Event], None] | None = None,
    ):
        """`on_tick`: advisory watchers (the live MTP check), called on health ticks, never a restart.
        `watch`: checked with /health; a reason it returns is a crash (an RPC worker gone).
        `before_start`: waits before each launch until it may run (the RPC workers answer) or stop is set."""
        self.spec, self._launch, self.config = spec, launch, config or SupervisorConfig()
        self._on_tick = on_tick
        self._watch_fn, self._before_start = watch, before_start
        self._replan, self._on_event, self._clock = replan, on_event, time.monotonic
        self.state = State.STOPPED
        self.proc: ServerProcess | None = None
        self.restarts = 0
        self.replans = 0
        self.history = RestartHistory()
        self.last_error: list[str] = []
        self.ready_at: float | None = None
        self._stop = threading.Event()
        self._probe: threading.Thread | None = None
        self._probe_result: str | None = None  # "ok", "wedged", "refused", None (running / not started)
        self.probe_refused: str | None = None  # why llama-server refused our own probe (a config error)
        self._switch_to: tuple[LaunchSpec, str] | None = None
        self.switches = 0

    def relaunch(self, spec: LaunchSpec, reason: str) -> None:
        """Replace the ready server with one for `spec` (an on_tick hook's call, made once it has seen no
        request in flight): stopped and started again right after the hook returns, not counted as a crash."""
        self._switch_to = (spec, reason)

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
        if self._before_start is not None:
            self._before_start(self._stop)
            if self._stop.is_set():
                raise _Stopping
        what = getattr(self.spec, "program", "llama-server")  # a worker target names its own
        self._fire(Event.START, f"starting {what} on {self.spec.host}:{self.spec.port}")
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
        if (
            uptime is None
            and classify(text) == "oom"
            and self._replan is not None
            and self.replans < self.config.max_replans
        ):
            new = self._replan(self.spec, self.replans + 1, lines)
            if new is not None:
                self.replans += 1
                old, self.spec = self.spec, new
                self._fire(
                    Event.CRASH,
                    f"out of memory at load; re-plan {self.replans}/"
                    f"{self.config.max_replans}: -ngl {old.n_gpu_layers} -> {new.n_gpu_layers}, "
                    f"-c {old.ctx_size} -> {new.ctx_size}",
                )
                return
        self.history, decision = record_crash(self.config.policy, self.history, self._clock(), uptime)
        if decision.action == "give_up":
            error = ServeError(
                f"llama-server keeps failing ({decision.reason}); last failure: {reason}",
                f"Full log: {self.proc.log_path}.",
                details=lines,
            )
            self._fire(Event.GIVE_UP, error.message)  # on_event sees the reason `status` will show
            raise error
        self.restarts += 1
        self._fire(Event.CRASH, f"{reason}; {decision.reason}")
        if self._stop.wait(decision.delay_s):
            raise _Stopping

    def _watch(self) -> None:
        assert self.proc is not None
        cfg, proc = self.config, self.proc
        last_health = last_probe = self._clock()
        failures = 0
        self._probe_result = self.probe_refused = None
        with proc.client(timeout=cfg.probe_timeout_s) as client:
            while not self._stop.wait(cfg.tick_s):
                now = self._clock()
                uptime = now - (self.ready_at or now)
                if not proc.alive():
                    self._crashed(f"llama-server exited with {exit_description(proc.returncode)}", uptime)
                    return
                if now - last_health >= cfg.health_every_s:
                    last_health = now
                    gone = self._watch_fn() if self._watch_fn is not None else None
                    if gone is not None:
                        self._crashed(gone, uptime)
                        return
                    if self._on_tick is not None:
                        self._on_tick(self)
                    if self._switch_to is not None:
                        self.spec, reason = self._switch_to
                        self._switch_to = None
                        proc.stop(cfg.stop_grace_s)
                        self.switches += 1
                        self._fire(Event.SWITCH, reason)
                        return
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
                if self._probe_result == "refused":
                    # Our own key was refused: a configuration error, not a wedge. Restarting cannot
                    # fix it, so say it once and stop probing this server (health still watched).
                    self._probe_result = None
                    log.error("generation probe disabled: %s", self.probe_refused)
                if self._probe_result == "wedged":
                    self._probe_result = None
                    self._crashed(f"a one-token generation did not finish in {cfg.probe_timeout_s:.0f} s", uptime)
                    return
                if (
                    now - last_probe >= cfg.probe_every_s
                    and self.probe_refused is None
                    and (self._probe is None or not self._probe.is_alive())
                ):
                    last_probe = now
                    self._probe = threading.Thread(target=self._run_probe, args=(client, proc), daemon=True)
                    self._probe.start()

    def _run_probe(self, client, proc: ServerProcess) -> None:
        """One-token generation. A timeout is 'wedged' only if no token was produced meanwhile
        (a long user request can hold the only slot; that is busy, not stuck)."""
        before = _tokens_predicted(client)
        refused = None
        try:
            client.completion("ping", n_predict=1, temperature=0.0)
            result = "ok"
        except ConfigError as exc:  # 401/403: llama-server refused the key we sent
            refused, result = exc.render(), "refused"
        except NetworkError:
            after = _tokens_predicted(client)
            busy = before is not None and after is not None and after > before
            result = "ok" if busy else "wedged"
        if self.proc is proc:  # a probe of a server already replaced says nothing about the new one
            self.probe_refused = refused or self.probe_refused
            self._probe_result = result


def _tokens_predicted(client) -> float | None:
    try:
        return client.metrics().get("llamacpp:tokens_predicted_total")
    except (NetworkError, ConfigError):
        return None


def make_launcher(plan: LaunchPlan, *, log_path: Path, api_key: str | None = None, warm=None) -> Launch:
    """The real Launch: the plan's argv (an OOM re-plan's spec gets the plan's argv for that spec), log
    rotated before each start, process started. `warm` (warm_start.Warm, already checked to run this very
    argv) is the first launch's process."""
    adopt = [warm] if warm is not None else []

    def launch(spec: LaunchSpec) -> ServerProcess:
        from llmtp.adapters.server_process import ServerProcess

        argv = plan.argv_list if spec == plan.spec else plan.variant(**dict(spec)).argv_list
        proc = ServerProcess(argv, log_path=log_path, host=spec.host, port=spec.port, api_key=api_key)
        if adopt and adopt[0].argv == proc.argv:
            w = adopt.pop()
            log.info("adopted the warm-started llama-server (pid %s)", w.proc.pid)
            return proc.adopt(w.proc, w.log_offset, w.started_at)
        rotate(log_path, LOG_MAX_BYTES, LOG_KEEP)
        return proc.start()

    return launch
