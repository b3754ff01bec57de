"""`llmtp worker start|stop|status|logs`: a ggml-rpc-server (llama.cpp's RPC worker) under serve's supervisor."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.core import limits

worker_app = typer.Typer(help="Run this machine as an RPC worker for `llmtp serve MODEL --rpc HOST:PORT`.",
                         no_args_is_help=True)


def _settings():
    from llmtp.settings import load_settings

    return load_settings().settings


def _note(line: str) -> None:
    typer.echo(f"note: {line}", err=True)


@worker_app.command("start")
def start(
    host: str = typer.Option("127.0.0.1", "--host", "-H", help="Bind address (loopback unless --trusted-network)."),
    port: int = typer.Option(50052, "--port", "-p", help="Port (ggml-rpc-server's default 50052).",
                             **limits.option(limits.Port)),
    mem: Optional[int] = typer.Option(None, "--mem", help="MiB offered per device (needs a build whose "
                                      "ggml-rpc-server has -m/--mem; b11434 has not).",
                                      **limits.option(limits.WorkerMemMiB)),
    cache: bool = typer.Option(False, "--cache", "-c", help="Keep received tensors in a local file cache "
                               "(LLAMA_CACHE or ~/.cache/llama.cpp/rpc): faster reloads."),
    threads: Optional[int] = typer.Option(None, "--threads", "-t", help="CPU threads of a CPU worker.",
                                          **limits.option(limits.Threads)),
    trusted_network: bool = typer.Option(False, "--trusted-network",
                                         help="Allow a non-loopback bind (the RPC protocol has no authentication)."),
    foreground: bool = typer.Option(False, "--foreground", help="Supervise in this process (for services)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Start a supervised, detached ggml-rpc-server; prints its address once it accepts connections."""
    import sys

    from llmtp.cli._out import emit_json
    from llmtp.services import worker as svc

    settings = _settings()
    prepared = svc.prepare_worker(settings, host=host, port=port, mem=mem, cache=cache, threads=threads,
                                  trusted_network=trusted_network)
    if prepared.warning:
        typer.echo(f"warning: {prepared.warning}", err=True)
    if foreground:
        def on_event(sup, message: str) -> None:
            typer.echo(f"[{sup.state.value}] {message}", err=True)

        svc.worker_foreground(prepared, state_dir=settings.state_dir, on_event=on_event)
        return
    from llmtp.services.serve import detach
    from llmtp.services.serve_command import foreground_command

    argv = foreground_command(sys.argv[1:])
    record = detach(settings.state_dir, port, argv, 60.0)
    data = {"state": record.state, "host": record.host, "port": record.port, "pid": record.llmtp_pid,
            "worker_pid": record.server_pid, "build": record.build, "address": f"{record.host}:{record.port}"}
    if as_json:
        emit_json(data)
    else:
        typer.echo(f"RPC worker at {data['address']} (llmtp pid {record.llmtp_pid}, ggml-rpc-server pid "
                   f"{record.server_pid}); use it with `llmtp serve MODEL --rpc {data['address']}`")


@worker_app.command("stop")
def stop(port: Optional[int] = typer.Option(None, "--port", "-p", help="Port of the worker (default: all workers).",
                                            **limits.option(limits.Port))) -> None:
    """Stop llmtp's RPC worker(s): SIGTERM to its llmtp, which stops ggml-rpc-server's whole group."""
    from llmtp.services import worker as svc

    stopped = svc.stop_workers(_settings().state_dir, port, on_note=_note)
    typer.echo(f"stopped worker(s) on port(s) {', '.join(map(str, stopped))}" if stopped else "no worker running")


@worker_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Running workers: address, state, pids, restarts, build, and the servers using them."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services import worker as svc

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
        table.add_row(e["address"], e["state"], str(e["llmtp_pid"]), str(e["server_pid"]), f"{e['uptime_s']:.0f} s",
                      str(e["restarts"]), e["build"] or "external",
                      ", ".join(f"port {p}" for p in e["used_by"]) or "-")
    console().print(table)


@worker_app.command("logs")
def logs(port: int = typer.Option(50052, "--port", "-p", help="Port of the worker.", **limits.option(limits.Port)),
         follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
         lines: int = typer.Option(50, "-n", "--lines", help="How many lines from the end.",
                                   **limits.option(limits.LogLines))) -> None:
    """Print ggml-rpc-server's log (under the state dir, rotated like llama-server's)."""
    from llmtp.cli.serve import logs as serve_logs
    from llmtp.errors import UsageError
    from llmtp.services import state as st

    path = st.log_path(_settings().state_dir, port)
    if not path.is_file():
        raise UsageError(f"No worker log at {path}", "Start a worker with `llmtp worker start` first.")
    serve_logs(follow=follow, port=port, lines=lines)  # the same file layout: one reader for both


def register(app: typer.Typer) -> None:
    app.add_typer(worker_app, name="worker")
