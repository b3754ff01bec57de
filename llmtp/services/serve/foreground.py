"""Foreground supervision of one process (a plan's llama-server, an RPC worker): port claim, state record,
supervisor log, live log rotation and stop signals around services/serve/supervisor.py's Supervisor."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from llmtp.adapters.signals import on_stop_signals
from llmtp.adapters.spawn import LiveRotation, private_log_handler
from llmtp.core.launch_plan import LaunchPlan
from llmtp.core.supervisor import State
from llmtp.errors import ServeError
from llmtp.services.serve.supervisor import (
    Launch,
    OnEvent,
    Replan,
    Supervisor,
    SupervisorConfig,
    default_replan,
    log,
    make_launcher,
    read_api_key,
)
from llmtp.services.serve.warm_start import Handover
from llmtp.services.stores import failed_servers

if TYPE_CHECKING:
    from llmtp.services.serve.warm_start import WarmStart


# --- serve in the foreground: port claim, state file, supervisor log, signals -----------------


def check_port_free(host: str, port: int) -> None:
    from llmtp.adapters import ports, proctree

    if not ports.port_free(host, port):
        holder = proctree.port_holder(port)
        who = holder.describe() if holder else "another process"
        raise ServeError(
            f"Port {port} on {host} is already in use by {who}",
            "Stop that process, or choose another port with --port.",
        )


@dataclass
class ServeHooks:
    """What a foreground supervision calls besides keeping the process alive (every one optional).
    `on_tick`: advisory watchers (the live MTP check); `watch`/`before_start`: see Supervisor (a server's
    RPC workers); `warm_start`: the entry point's (services/serve/warm_start.py): its llama-server is adopted
    when it runs what was planned now, and this launch is recorded for the next identical command line."""

    on_event: OnEvent | None = None
    on_ready: Callable[[Supervisor], None] | None = None
    on_tick: Callable[[Supervisor], None] | None = None
    watch: Callable[[], str | None] | None = None
    before_start: Callable[[threading.Event], None] | None = None
    warm_start: WarmStart | None = None
    replan: Replan | None = default_replan
    install_signals: bool = True
    command: tuple[str, ...] = ()  # this llmtp's own command line, recorded to start it again (verify --restart)


@dataclass(frozen=True)
class Supervised:
    """What one foreground supervision keeps alive: a llama-server of a plan, or an RPC worker
    (services/rpc/worker.py). `first` is what the Supervisor launches first (a server's spec, a worker's target)."""

    kind: str  # "server", "router" or "worker": the state record's kind
    first: object  # LaunchSpec or worker.WorkerTarget: host, port
    launch: Launch
    model: str  # what the state record names
    build_id: str | None = None
    alias: str | None = None
    api_key_file: str | None = None
    rpc: tuple[str, ...] = ()
    argv: tuple[str, ...] = ()  # a server's planned argv (the warm start compares it)
    files: tuple[str, ...] = ()  # what a warm start checks unchanged
    plan: tuple[dict, ...] = ()  # a server's launch plan decisions, recorded for `llmtp status`
    models: tuple[dict, ...] = ()  # a router's models (services/serve/router.py)


def serve_foreground(
    plan: LaunchPlan, *, state_dir: Path, config: SupervisorConfig | None = None, hooks: ServeHooks | None = None
) -> Supervisor:
    """Claim the port, supervise the plan's llama-server until stopped (returns) or until the policy gives
    up (raises). SIGTERM and SIGINT stop the whole llama-server group before returning: no orphan survives."""
    from llmtp.services.stores import serve_records as st

    hooks = hooks or ServeHooks()
    spec = plan.spec
    server_log = st.log_path(state_dir, spec.port)
    # a warm start already holds the port's lock and runs llama-server: adopted only when it runs
    # exactly what was planned now, else stopped here (before the port check it would fail)
    warm, held, warm_note = (
        hooks.warm_start.handover(plan.argv_list, server_log, st.lock_path(state_dir, spec.port))
        if hooks.warm_start is not None
        else Handover(None, None, None)
    )
    launch = make_launcher(plan, log_path=server_log, api_key=read_api_key(spec.api_key_file), warm=warm)
    target = Supervised(
        kind="server",
        first=spec,
        launch=launch,
        model=spec.model,
        build_id=plan.build_id,
        alias=spec.alias,
        api_key_file=spec.api_key_file,
        rpc=tuple(spec.rpc),
        argv=plan.argv or (),
        files=(str(plan.server), spec.model),
        plan=plan.reasons,
    )
    return supervise(target, state_dir=state_dir, config=config, hooks=hooks, handover=(warm, held, warm_note))


def supervise(
    target: Supervised,
    *,
    state_dir: Path,
    config: SupervisorConfig | None,
    hooks: ServeHooks,
    handover: tuple = (None, None, None),
) -> Supervisor:
    """The port claim, state record, supervisor log, live log rotation and stop signals every supervised
    process shares (a llama-server, an RPC worker)."""

    from llmtp.services.stores import serve_records as st

    host, port = target.first.host, target.first.port  # type: ignore[attr-defined]
    server_log = st.log_path(state_dir, port)
    lock_file = st.lock_path(state_dir, port)
    warm, held, warm_note = handover
    argv = list(target.argv)
    claim = st.PortClaim(state_dir, port, held=held).acquire()  # a second serve on this port stops here
    failed_servers.clear(state_dir, [port])  # an earlier failure here is history now
    handler = rotation = None
    try:
        if warm is None:
            check_port_free(host, port)
        sup_log = st.supervisor_log_path(state_dir, port)
        handler = private_log_handler(sup_log)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        for note in [warm_note, *claim.notes]:
            if note:
                log.info("%s", note)
        rotation = LiveRotation(server_log).start()  # -lv 4 logs every request: bounded while serving
        record = st.ServeState(
            llmtp_pid=os.getpid(),
            host=host,
            port=port,
            model=target.model,
            alias=target.alias,
            build=target.build_id,
            log_path=str(server_log),
            api_key_file=target.api_key_file,
            kind=target.kind,
            rpc=list(target.rpc),
            command=list(hooks.command),
            plan=list(target.plan),
            models=list(target.models),
        )

        seen_ready: set[int] = set()
        remembered: list[int] = []
        warm_start = hooks.warm_start

        def failed(reason: str, details: list[str], sup: Supervisor) -> failed_servers.FailedServe:
            return failed_servers.FailedServe(
                port=port,
                host=host,
                model=target.model,
                alias=target.alias,
                reason=reason,
                details=details,
                log_path=str(server_log),
                restarts=sup.restarts,
            )

        def on_change(sup: Supervisor, message: str) -> None:
            if sup.state is State.FAILED:  # the reason is on disk before the record says "failed"
                failed_servers.record_failure(state_dir, failed(message, list(sup.last_error), sup))
            record.state = sup.state.value
            record.server_pid = sup.proc.pid if sup.proc is not None else None
            record.argv = sup.proc.argv if sup.proc is not None else []
            record.log_offset = getattr(sup.proc, "log_offset", 0) if sup.proc is not None else 0
            record.restarts = sup.restarts
            record.last_error = sup.last_error
            claim.write(record)
            if (
                hooks.on_ready is not None
                and sup.state is State.READY
                and sup.proc is not None
                and sup.proc.pid not in seen_ready
            ):
                seen_ready.add(sup.proc.pid)  # once per launch, not after every /health recovery
                hooks.on_ready(sup)
            # not with RPC workers: a warm start would hold them (one client each) while this serve's
            # own checks list their devices, and would skip the check that names a dead one
            if (
                warm_start is not None
                and sup.state is State.READY
                and sup.proc is not None
                and argv
                and sup.proc.argv == argv
                and not remembered
                and not target.rpc
            ):
                remembered.append(sup.proc.pid)  # what the next identical `serve` may start warm
                warm_start.remember(
                    argv=argv,
                    log_path=server_log,
                    lock_path=lock_file,
                    host=host,
                    port=port,
                    files=list(target.files),
                    state_dir=state_dir,
                    detach_out=st.detach_out_path(state_dir, port),
                )
            if hooks.on_event is not None:
                hooks.on_event(sup, message)

        sup = Supervisor(
            target.first,
            target.launch,
            config=config,
            replan=hooks.replan,  # type: ignore[arg-type]
            on_event=on_change,
            on_tick=hooks.on_tick,
            watch=hooks.watch,
            before_start=hooks.before_start,
        )
        with on_stop_signals(sup.request_stop, install=hooks.install_signals):
            try:
                sup.run()
            except ServeError as exc:  # it gave up: `status` shows why until `llmtp stop` clears it
                failed_servers.record_failure(state_dir, failed(exc.message, list(exc.details or sup.last_error), sup))
                raise
        return sup
    finally:
        if rotation is not None:
            rotation.stop()
        if handler is not None:
            log.removeHandler(handler)
            handler.close()
        claim.release()
