"""Serve use-cases around a LaunchPlan (services/serve/launch_plan.py resolves it): start, detach, stop servers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from llmtp.adapters import files
from llmtp.adapters.sd_notify import ReadyNotifier
from llmtp.adapters.spawn import spawn_detached
from llmtp.core.launch_plan import LaunchPlan, LaunchRequest
from llmtp.errors import ModelNotDownloadedError, ServeError
from llmtp.services.models.autopull import ensure_model
from llmtp.services.rpc.cluster import rpc_supervision
from llmtp.services.serve.foreground import ServeHooks, serve_foreground
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch
from llmtp.services.serve.supervisor import Supervisor, SupervisorConfig, log, read_api_key
from llmtp.services.stores.calibration import record_launch
from llmtp.services.verify.live_check import live_check_hook
from llmtp.services.verify.mtp_guard import guard_hook

if TYPE_CHECKING:  # imported where used: it pulls in httpx, which a --dry-run never needs
    from llmtp.adapters.server_process import ServerProcess


@contextmanager
def launched(plan: LaunchPlan, *, log_path: Path, ready_timeout: float = 120) -> Iterator[ServerProcess]:
    """Start the plan's llama-server (its argv as is), wait until /health is 200, yield it; stop it on
    exit, always. Raises ServeError (with the meaningful log lines) when it exits or hangs while loading.
    """
    from llmtp.adapters.server_process import ServerProcess

    spec = plan.spec
    proc = ServerProcess(
        plan.argv_list, log_path=log_path, host=spec.host, port=spec.port, api_key=read_api_key(spec.api_key_file)
    )
    try:
        proc.start()
        proc.wait_ready(ready_timeout)
        yield proc
    finally:
        proc.stop()


# --- stop and status of detached serves -----------------------------------------------------------


def stop_served(
    state_dir: Path, port: int, timeout: float = 30.0, on_note: Callable[[str], None] | None = None
) -> bool:
    """Stop what serves `port`: SIGTERM to its llmtp (which stops llama-server's whole group), and
    wait for it. A process is signalled only once proven to be the one recorded (pid, start time,
    command line). An llmtp that died is cleaned up after: its llama-server stopped when proven
    (True: the port is free again), its stale record dropped. False when nothing was stopped."""
    from llmtp.adapters import proctree
    from llmtp.services.stores import serve_records as st

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
        note(
            f"port {port}: the record names llmtp pid {record.llmtp_pid}, which llmtp cannot prove is the "
            f"process that wrote it (an older llmtp, or one starting right now); nothing was signalled"
        )
        return orphan_stopped
    if not proctree.terminate_and_wait(supervisor, timeout):
        raise ServeError(
            f"llmtp (pid {record.llmtp_pid}) did not stop within {timeout:.0f} s",
            f"Kill it by hand: kill {record.llmtp_pid}.",
        ) from None
    if record.server_proc is not None:  # belt and braces: never leave the server behind
        proctree.terminate_proven(record.server_proc.identity(), group=True)
    return True


# --- what `llmtp serve` runs (the plan itself: services/serve/launch_plan.py) --------------------------------


def calibration_hook(settings, plan: LaunchPlan) -> Callable[[Supervisor], None] | None:
    """What serve_foreground calls once per ready launch: record predicted vs actual memory."""
    predicted = plan.model_plan
    if predicted is None or plan.calibration_key is None:
        return None

    def on_ready(sup: Supervisor) -> None:
        if sup.proc is None or sup.spec.model != plan.spec.model:
            return
        if sup.spec.ctx_size != predicted.ctx:  # --ctx or an OOM re-plan: not what was predicted
            return
        try:
            rec = record_launch(
                settings,
                model_key=plan.calibration_key,
                build=plan.build_id,
                plan=predicted,
                corrections=plan.corrections,
                log_text=sup.proc.log_tail(),
            )
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
        notifier = ReadyNotifier()

    def on_ready(sup: Supervisor) -> None:
        what = getattr(sup.spec, "model", None) or getattr(sup.spec, "program", "")  # a server's model, a worker
        notifier.ready(f"serving {what} at {sup.spec.host}:{sup.spec.port}")
        if then is not None:
            then(sup)

    return on_ready


def detach(state_dir: Path, port: int, argv: list[str], ready_timeout_s: float, *, child=None):
    """Run `argv` (llmtp serve ... --foreground) in its own session and wait until it is ready.
    `child`: that very process, already started by the entry point (WarmStart.take_child,
    services/serve/warm_start.py)."""
    from llmtp.services.stores import serve_records as st

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
            raise ServeError(
                f"llmtp serve exited with code {child.returncode} before the server was ready",
                f"Full output: {out_path}.",
                details=error[-12:],
            )
        time.sleep(0.1)
    child.terminate()
    raise ServeError(f"The server was not ready within {ready_timeout_s + 30:.0f} s", "See `llmtp logs`.")


# --- `llmtp serve`: the plan (pulled first when allowed), in the foreground or detached -------------


def plan_for_serve(
    settings,
    request: LaunchRequest,
    *,
    warm=None,
    pull: bool | None = True,  # noqa: ANN001
    say: Callable[[str], None] = lambda _m: None,
) -> LaunchPlan:
    """The launch plan for `llmtp serve`; a model that is not on disk is downloaded first when `pull` and
    the setting pull_missing allow (autopull says what, how big, and refuses offline, without the space,
    or when not allowed); `pull` None (a dry run) names the missing model at once. `warm`: the entry point's
    WarmStart, whose llama-server's memory the plan may count as free."""

    early = warm.running_pid() if warm is not None else None
    deps = LaunchDeps(not_counting=frozenset([early]) if early else frozenset())
    try:
        return resolve_launch(settings, request, deps)
    except ModelNotDownloadedError:
        if pull is None:
            raise
        ensure_model(settings, request.model, allow=pull and settings.pull_missing, say=say)
        return resolve_launch(settings, request, deps)


def foreground(
    settings,
    plan: LaunchPlan,
    *,
    warm=None,
    command: list[str] | None = None,  # noqa: ANN001
    on_event: Callable[[Supervisor, str], None] | None = None,
) -> Supervisor:
    """Supervise the plan here until stopped: systemd readiness, calibration, the live MTP check, and
    the RPC workers' watch wired around services/serve/foreground.py's serve_foreground. `command`: this
    llmtp's command line, recorded so that `verify --restart` can start it again."""
    from llmtp.services.stores.serve_records import log_path

    server_log = log_path(settings.state_dir, plan.spec.port)
    guard_on = settings.mtp_guard if plan.request.mtp_guard is None else plan.request.mtp_guard
    # the live check, then the guard that steps to a safer MTP setting when served acceptance stays low
    on_tick = guard_hook(
        settings,
        plan.spec.model,
        server_log,
        state_dir=settings.state_dir,
        port=plan.spec.port,
        enabled=guard_on,
        then=live_check_hook(settings, plan.spec.model, server_log),
    )
    hooks = ServeHooks(
        on_event=on_event,
        on_ready=notify_ready(calibration_hook(settings, plan)),
        warm_start=warm,
        on_tick=on_tick,
        command=tuple(command or ()),
        **rpc_supervision(plan.spec),
    )
    return serve_foreground(
        plan, state_dir=settings.state_dir, config=SupervisorConfig(ready_timeout_s=plan.ready_timeout_s), hooks=hooks
    )
