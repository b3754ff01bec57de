"""`llmtp serve`, `status`, `stop`, `logs`: run llama-server under supervision and look at it."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.core import limits


def _settings():
    from llmtp.settings import load_settings

    return load_settings().settings


def serve(
    context: typer.Context,
    model: str = typer.Argument(..., help="Alias (`llmtp models list`), GGUF path, or org/repo:QUANT (also hf:, hf.co/)."),
    extra: Optional[list[str]] = typer.Argument(None, help="After `--`: flags passed to llama-server as is."),
    host: Optional[str] = typer.Option(None, help="Bind address (default from settings: 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default from settings: 8080).", **limits.option(limits.Port)),
    ctx: Optional[int] = typer.Option(None, "--ctx", help="Context size; overrides the plan.",
                                      **limits.option(limits.Ctx)),
    no_mtp: bool = typer.Option(False, "--no-mtp", help="Serve without MTP speculative decoding."),
    parallel: Optional[int] = typer.Option(None, "--parallel", help="Server slots (-np); MTP keeps 1.",
                                           **limits.option(limits.Parallel)),
    api_key_file: Optional[str] = typer.Option(None, help="File with the API key(s); required off loopback."),
    server: Optional[str] = typer.Option(None, help="Use this llama-server instead of the current build."),
    no_ui: bool = typer.Option(False, "--no-ui", help="Turn llama-server's web UI off (its own --no-ui)."),
    rpc: Optional[str] = typer.Option(None, "--rpc", help="RPC workers HOST:PORT,... to spread the model over "
                                      "(`llmtp worker start`; default from settings: rpc)."),
    alias: Optional[str] = typer.Option(None, help="Model name clients see in /v1/models "
                                        "(default: the llmtp alias, else the file name without .gguf)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the exact command line and exit."),
    foreground: bool = typer.Option(False, "--foreground", help="Supervise in this process (for services)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    no_pull: bool = typer.Option(False, "--no-pull", help="Refuse a model that is not on disk instead of "
                                 "downloading it (also the setting pull_missing = false)."),
) -> None:
    """Serve MODEL with the current build: plan, start, wait until ready, keep it alive.

    A model that is not on disk is downloaded first (what, how big, free disk are shown), unless
    --no-pull; offline or without the space it fails before anything starts."""
    import shlex
    from pathlib import Path

    from llmtp.cli._out import emit_json
    from llmtp.core.argv import build_server_argv
    from llmtp.services import serve as svc

    settings = _settings()
    warm = context.obj  # the entry point's WarmStart (services/warm_start.py); None when called otherwise
    early_pid = warm.running_pid() if warm is not None else None
    def prepare():
        return svc.prepare_launch(settings, model, host=host, port=port, ctx=ctx, no_mtp=no_mtp,
                                  parallel=parallel, api_key_file=api_key_file, extra=extra,
                                  server=Path(server) if server else None, ui=not no_ui, alias=alias,
                                  not_counting=frozenset([early_pid]) if early_pid else frozenset(),
                                  rpc=rpc or settings.rpc)

    from llmtp.errors import ModelNotDownloadedError

    try:
        prepared = prepare()
    except ModelNotDownloadedError:
        if dry_run:
            raise
        from llmtp.services.autopull import ensure_model

        ensure_model(settings, model, allow=not no_pull and settings.pull_missing,
                     say=lambda m: typer.echo(m, err=True))
        prepared = prepare()
    argv = build_server_argv(str(prepared.server), prepared.caps, prepared.spec)
    for note in prepared.notes:
        typer.echo(f"note: {note}", err=True)
    for warning in prepared.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if dry_run:
        if as_json:
            emit_json({"argv": argv, "command": shlex.join(argv), "build": prepared.build_id,
                       "ready_timeout_s": prepared.ready_timeout_s, "reasons": prepared.reasons,
                       "warnings": prepared.warnings, "devices": prepared.devices})
        else:
            # reasons as shell comments: the output still pastes into a shell as is
            for r in prepared.reasons:
                typer.echo(f"# {r['what']} {r['value']}: {r['reason']}")
            typer.echo(shlex.join(argv))
        return
    if foreground:
        from llmtp.services.live_check import live_check_hook
        from llmtp.services.state import log_path as state_log_path
        from llmtp.services.supervisor import SupervisorConfig, serve_foreground
        from llmtp.services.rpc import rpc_supervision

        def on_event(sup, message: str) -> None:
            typer.echo(f"[{sup.state.value}] {message}", err=True)

        serve_foreground(prepared.server, prepared.caps, prepared.spec, state_dir=settings.state_dir,
                         build_id=prepared.build_id,
                         config=SupervisorConfig(ready_timeout_s=prepared.ready_timeout_s),
                         on_event=on_event,
                         on_ready=svc.notify_ready(svc.calibration_hook(settings, prepared)),
                         warm_start=warm,
                         on_tick=live_check_hook(settings, prepared.spec.model,
                                                 state_log_path(settings.state_dir, prepared.spec.port)),
                         **rpc_supervision(prepared.spec))
        return
    from llmtp.services.state import detach_out_path

    argv = _foreground_argv()
    early = warm.take_child(argv, detach_out_path(settings.state_dir, prepared.spec.port)) if warm else None
    record = svc.detach(settings.state_dir, prepared.spec.port, argv, prepared.ready_timeout_s, child=early)
    from llmtp.adapters.server_process import base_url_for
    from llmtp.services.status import client_endpoint

    data = {"state": record.state, "pid": record.llmtp_pid, "server_pid": record.server_pid,
            "url": base_url_for(record.host, record.port), "model": record.model, "build": record.build,
            **client_endpoint(record.host, record.port, record.api_key_file, record.alias)}
    from llmtp.core.ui import address_lines
    from llmtp.services.ui import addresses

    data |= addresses(base_url_for(record.host, record.port), record.api_key_file, ui_off=no_ui)
    if as_json:
        emit_json(data)
    else:
        typer.echo(f"serving {record.model} at {data['url']} (llmtp pid {record.llmtp_pid}); "
                   f"`llmtp status`, `llmtp logs -f`, `llmtp stop`")
        typer.echo(_client_line(data))
        for line in address_lines(data, record.api_key_file):
            typer.echo(f"  {line}")


def _client_line(e: dict) -> str:
    key = "an API key (from --api-key-file)" if e["api_key_required"] else "no API key (any value works)"
    return f"OpenAI clients: base URL {e['openai_base_url']}, model \"{e['model_name']}\", {key}"


def _foreground_argv() -> list[str]:
    """This very command line, re-run detached with --foreground (one code path for both modes)."""
    import sys

    from llmtp.services.serve_command import foreground_command

    return foreground_command(sys.argv[1:])


def status(
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Running servers: pid, state, uptime, restarts, model, build, port, tok/s, MTP acceptance."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services.status import status_report

    from llmtp.services.live_check import annotate

    settings = _settings()
    from llmtp.services.worker import worker_status

    entries = annotate(settings, status_report(settings.state_dir, on_note=_note)) + worker_status(settings.state_dir)
    if as_json:
        emit_json(entries)
        return
    if not entries:
        typer.echo("no server running")
        return
    from llmtp.cli._out import esc, human_bytes, table

    t = table("port", "state", "pid", "uptime", "restarts", "model", "build", "tok/s last", "tok/s avg",
              "MTP accept", "MTP live", "RPC workers", "RSS", "VRAM")
    for e in entries:
        if e["kind"] == "worker":
            used = ", ".join(f"port {p}" for p in e["used_by"]) or "no server"
            t.add_row(str(e["port"]), e["state"], str(e["server_pid"]), f"{e['uptime_s']:.0f} s",
                      str(e["restarts"]), f"RPC worker {e['host']}:{e['port']} (used by {used})",
                      e["build"] or "external", "-", "-", "-", "-", "-", "-", "-")
            continue
        last = e["last_request"] or {}
        tps_last = "no request yet" if last.get("tokens_per_second") is None else f"{last['tokens_per_second']:.1f}"
        tps = "unknown" if e["tokens_per_second"] is None else f"{e['tokens_per_second']:.1f}"
        acc = "no drafts yet" if e["mtp_acceptance"] is None else f"{e['mtp_acceptance']:.0%}"
        vram = "not seen by NVML" if e["vram_bytes"] is None else human_bytes(e["vram_bytes"])
        t.add_row(str(e["port"]), e["state"], str(e["server_pid"]), f"{e['uptime_s']:.0f} s",
                  str(e["restarts"]), e["model"].rsplit("/", 1)[-1], e["build"] or "external", tps_last, tps, acc,
                  e["mtp_live"]["state"], ", ".join(e.get("rpc") or []) or "-", human_bytes(e["rss_bytes"]), vram)
    console().print(t)
    from llmtp.core.ui import address_lines

    for e in entries:
        if e["kind"] == "worker":
            continue
        typer.echo(f"port {e['port']}: {_client_line(e)}")
        typer.echo(f"port {e['port']}: " + "; ".join(address_lines(e, e.get("api_key_file"))))
        if e["mtp_live"]["state"] in ("losing", "unknown") and e["mtp_live"]["fix"]:
            console().print(f"[yellow]port {e['port']}:[/] {esc(e['mtp_live']['detail'])}; "
                            f"fix: `{esc(e['mtp_live']['fix'])}`")


def _note(line: str) -> None:
    typer.echo(f"note: {line}", err=True)


def stop(port: Optional[int] = typer.Option(None, help="Port of the server to stop (default: all).",
                                           **limits.option(limits.Port)),
         as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Stop llmtp-served llama-server(s): SIGTERM to llmtp, which stops the server's whole group."""
    from llmtp.services import state as st
    from llmtp.services.serve import stop_served

    state_dir = _settings().state_dir
    ports = [port] if port is not None else st.recorded_ports(state_dir)
    stopped = [p for p in ports if stop_served(state_dir, p, on_note=_note)]
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json({"stopped": stopped})
        return
    typer.echo(f"stopped port(s) {', '.join(map(str, stopped))}" if stopped else "no server running")


def logs(
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    port: Optional[int] = typer.Option(None, help="Port of the server (default: settings port).",
                                       **limits.option(limits.Port)),
    lines: int = typer.Option(50, "-n", "--lines", help="How many lines from the end.", **limits.option(limits.LogLines)),
) -> None:
    """Print llama-server's log (rotated under the state dir)."""
    import time

    from llmtp.adapters.files import replaced_under
    from llmtp.errors import UsageError
    from llmtp.services import state as st

    settings = _settings()
    path = st.log_path(settings.state_dir, port or settings.port)
    if not path.is_file():
        raise UsageError(f"No server log at {path}", "Start a server with `llmtp serve MODEL` first.")
    f = open(path, encoding="utf-8", errors="replace")
    try:
        tail = f.readlines()
        for line in tail[len(tail) - lines:]:  # not [-lines:]: -n 0 means none, not all
            typer.echo(line, nl=False)
        while follow:
            line = f.readline()
            if line:
                typer.echo(line, nl=False)
                continue
            time.sleep(0.2)
            if replaced_under(path, f):  # rotated: truncated live, or renamed at a restart
                f.close()
                f = open(path, encoding="utf-8", errors="replace")
    finally:
        f.close()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("status")(status)
    app.command("stop")(stop)
    app.command("logs")(logs)
