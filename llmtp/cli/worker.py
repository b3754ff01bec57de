"""`llmtp worker start|stop|status|logs|install|uninstall`: a ggml-rpc-server (llama.cpp's RPC worker)
under serve's supervisor, or as a systemd unit."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from llmtp.core import limits

# the worker's launch options, declared once for `worker start` and `worker install` (what the unit starts)
Host = Annotated[str, typer.Option("--host", "-H", help="Bind address (loopback unless --trusted-network).")]
Port = Annotated[
    int, typer.Option("--port", "-p", help="Port (ggml-rpc-server's default 50052).", **limits.option(limits.Port))
]
Cache = Annotated[
    bool,
    typer.Option(
        "--cache",
        "-c",
        help="Keep received tensors in a local file cache "
        "(LLAMA_CACHE, under llmtp's cache dir for a unit): faster reloads.",
    ),
]
Threads = Annotated[
    Optional[int], typer.Option("--threads", "-t", help="CPU threads of a CPU worker.", **limits.option(limits.Threads))
]
Trusted = Annotated[
    bool, typer.Option("--trusted-network", help="Allow a non-loopback bind (the RPC protocol has no authentication).")
]
Server = Annotated[
    Optional[str],
    typer.Option(
        "--server", help="Run this ggml-rpc-server instead of the current build's (a system unit runs its staged copy)."
    ),
]

worker_app = typer.Typer(
    help="Run this machine as an RPC worker for `llmtp serve MODEL --rpc HOST:PORT`.", no_args_is_help=True
)


def _settings():
    from llmtp.settings import load_settings

    return load_settings().settings


def _note(line: str) -> None:
    typer.echo(f"note: {line}", err=True)


@worker_app.command("start")
def start(
    host: Host = "127.0.0.1",
    port: Port = 50052,
    mem: Optional[int] = typer.Option(
        None,
        "--mem",
        help="MiB offered per device (needs a build whose ggml-rpc-server has -m/--mem; b11434 has not).",
        **limits.option(limits.WorkerMemMiB),
    ),
    cache: Cache = False,
    threads: Threads = None,
    trusted_network: Trusted = False,
    foreground: bool = typer.Option(False, "--foreground", help="Supervise in this process (for services)."),
    server: Server = None,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Start a supervised, detached ggml-rpc-server; prints its address once it accepts connections."""
    import sys
    from pathlib import Path

    from llmtp.cli._out import emit_json
    from llmtp.services.rpc import worker as svc

    settings = _settings()
    prepared = svc.prepare_worker(
        settings,
        svc.WorkerRequest(
            host=host,
            port=port,
            mem=mem,
            cache=cache,
            threads=threads,
            trusted_network=trusted_network,
            server=Path(server).expanduser().resolve() if server else None,
        ),
    )
    if prepared.warning:
        typer.echo(f"warning: {prepared.warning}", err=True)
    if foreground:

        def on_event(sup, message: str) -> None:
            typer.echo(f"[{sup.state.value}] {message}", err=True)

        svc.worker_foreground(prepared, state_dir=settings.state_dir, on_event=on_event)
        return
    from llmtp.services.serve.command_line import foreground_command
    from llmtp.services.serve.launch import detach

    argv = foreground_command(sys.argv[1:])
    record = detach(settings.state_dir, port, argv, 60.0)
    data = {
        "state": record.state,
        "host": record.host,
        "port": record.port,
        "pid": record.llmtp_pid,
        "worker_pid": record.server_pid,
        "build": record.build,
        "address": f"{record.host}:{record.port}",
    }
    if as_json:
        emit_json(data)
    else:
        typer.echo(
            f"RPC worker at {data['address']} (llmtp pid {record.llmtp_pid}, ggml-rpc-server pid "
            f"{record.server_pid}); use it with `llmtp serve MODEL --rpc {data['address']}`"
        )


@worker_app.command("stop")
def stop(
    port: Optional[int] = typer.Option(
        None, "--port", "-p", help="Port of the worker (default: all workers).", **limits.option(limits.Port)
    ),
) -> None:
    """Stop llmtp's RPC worker(s): SIGTERM to its llmtp, which stops ggml-rpc-server's whole group."""
    from llmtp.services.rpc import worker as svc

    stopped = svc.stop_workers(_settings().state_dir, port, on_note=_note)
    typer.echo(f"stopped worker(s) on port(s) {', '.join(map(str, stopped))}" if stopped else "no worker running")


@worker_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Running workers: address, state, pids, restarts, build, and the servers using them."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services.rpc import worker as svc

    entries = svc.worker_status(_settings().state_dir)
    if as_json:
        emit_json(entries)
        return
    if not entries:
        typer.echo("no worker running")
        return
    from rich.table import Table

    table = Table("address", "state", "pid", "worker pid", "uptime", "restarts", "build", "used by")
    for e in entries:
        table.add_row(
            e["address"],
            e["state"],
            str(e["llmtp_pid"]),
            str(e["server_pid"]),
            f"{e['uptime_s']:.0f} s",
            str(e["restarts"]),
            e["build"] or "external",
            ", ".join(f"port {p}" for p in e["used_by"]) or "-",
        )
    console().print(table)


@worker_app.command("logs")
def logs(
    port: int = typer.Option(50052, "--port", "-p", help="Port of the worker.", **limits.option(limits.Port)),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    lines: int = typer.Option(
        50, "-n", "--lines", help="How many lines from the end.", **limits.option(limits.LogLines)
    ),
) -> None:
    """Print ggml-rpc-server's log (under the state dir, rotated like llama-server's)."""
    from llmtp.cli.logs_view import show_log
    from llmtp.errors import UsageError
    from llmtp.services.stores import serve_records as st

    state_dir = _settings().state_dir
    path = st.log_path(state_dir, port)
    if not path.is_file():
        raise UsageError(f"No worker log at {path}", "Start a worker with `llmtp worker start` first.")
    # the same file layout: one reader for both; as written (the digest reads llama-server's lines)
    show_log(state_dir, port, lines=lines, follow=follow, raw=True)


_UNIT_DIR_HELP = "Write the unit here instead of the systemd default (for tests and packaging)."


@worker_app.command("install")
def install(
    system: bool = typer.Option(False, "--system", help="System unit run by a dedicated `llmtp` user."),
    host: Host = "127.0.0.1",
    port: Port = 50052,
    threads: Threads = None,
    cache: Cache = False,
    trusted_network: Trusted = False,
    server: Server = None,
    dry_run: bool = typer.Option(False, "--dry-run", help="Check, print the unit and change nothing."),
    no_start: bool = typer.Option(False, "--no-start", help="Write and reload, but do not enable/start."),
    unit_dir: Optional[str] = typer.Option(None, help=_UNIT_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (with --dry-run: the unit text)."),
) -> None:
    """Install and start `llmtp worker start --foreground` as a systemd unit (llmtp-worker-PORT.service),
    after the checks `llmtp worker start` makes; the hardening of `llmtp service install`."""
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.cli._out import emit_json
    from llmtp.services.rpc import worker as svc
    from llmtp.services.units import serve_unit
    from llmtp.services.units.staging import SYSTEM_ROOT

    settings = _settings()
    req = svc.WorkerInstallRequest(
        host=host, port=port, threads=threads, cache=cache, trusted_network=trusted_network, system=system
    )
    # start's own checks (a reinstall may find its own unit on the port: the port is checked at start)
    prepared = svc.prepare_worker(
        settings,
        svc.WorkerRequest(
            host=host,
            port=port,
            cache=cache,
            threads=threads,
            trusted_network=trusted_network,
            server=Path(server).expanduser().resolve() if server else None,
        ),
        check_port=False,
    )
    if prepared.warning:
        typer.echo(f"warning: {prepared.warning}", err=True)
    plan = svc.plan_worker_install(settings, req, prepared)
    if dry_run:
        if as_json:
            emit_json(
                {
                    "unit_name": plan.unit.unit_name,
                    "unit": plan.text,
                    "stages": [{"source": s.source, "target": s.target} for s in plan.stages],
                }
            )
            return
        for stage in plan.stages:
            typer.echo(f"would link or copy {stage.source} -> {stage.target}", err=True)
        typer.echo(plan.text, nl=False)
        return
    if plan.stages:
        typer.echo(
            f"The system service cannot read your home directory: running the build from "
            f"{SYSTEM_ROOT} (hard links where the filesystem allows, else copies).",
            err=True,
        )
    result = serve_unit.install(
        settings, req, SubprocessRunner(), plan=plan, unit_dir=Path(unit_dir) if unit_dir else None, start=not no_start
    )
    if as_json:
        emit_json(result)
        return
    for action in result.actions:
        typer.echo(action)


@worker_app.command("uninstall")
def uninstall(
    system: bool = typer.Option(False, "--system"),
    port: int = typer.Option(50052, "--port", "-p", help="Port of the installed worker.", **limits.option(limits.Port)),
    unit_dir: Optional[str] = typer.Option(None, help=_UNIT_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Stop, disable and remove the worker's unit (your override.conf stays)."""
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.cli._out import emit_json
    from llmtp.services.rpc.worker import worker_unit_name
    from llmtp.services.units import serve_unit

    actions = serve_unit.uninstall(
        _settings(),
        SubprocessRunner(),
        system=system,
        unit_dir=Path(unit_dir) if unit_dir else None,
        unit=worker_unit_name(port),
        status_command="llmtp worker status",
    )
    if as_json:
        emit_json({"actions": list(actions)})
        return
    for action in actions:
        typer.echo(action)


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")
