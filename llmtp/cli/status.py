"""`llmtp status` (alias `ps`), `stop`, `logs`: look at the servers llmtp runs, stop them, read their logs."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.core import limits


def _settings():
    from llmtp.settings import load_settings

    return load_settings().settings


def _complete_served(incomplete: str) -> list[str]:
    """Shell completion for `stop MODEL`: the names and ports llmtp serves now."""
    try:
        from llmtp.services.stores import serve_records as st

        names = set()
        for r in st.all_states(_settings().state_dir):
            names.update(n for n in (r.alias, str(r.port)) if n)
        return sorted(n for n in names if n.startswith(incomplete))
    except Exception:  # noqa: BLE001 - completion must never print a traceback into a shell
        return []


def status(
    wide: bool = typer.Option(
        False,
        "--wide",
        "-w",
        help="Every column: pids, uptime, restarts, build, last request, MTP live check, RPC workers, memory.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Running servers: port, state, model, MTP acceptance, tok/s and the URL clients use.

    Figures are each server's own, from its /metrics counters since it started: a restarted
    server starts again from zero."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services.rpc.worker import worker_status
    from llmtp.services.serve.status import status_report
    from llmtp.services.verify.live_check import annotate
    from llmtp.services.verify.mtp_guard import annotate_guard

    settings = _settings()
    servers = annotate(settings, status_report(settings.state_dir, on_note=_note))
    entries = annotate_guard(settings.state_dir, servers) + worker_status(settings.state_dir)
    if as_json:
        emit_json(entries)
        return
    if not entries:
        typer.echo("no server running")
        return
    render_status(console(markup=False), entries, wide=wide)


def render_status(con, entries: list[dict], wide: bool = False) -> None:  # noqa: ANN001 - a rich Console
    """The status table and, once, how clients reach the servers; then what needs attention."""
    from llmtp.cli._out import say, table
    from llmtp.core.status_view import api_key_hint
    from llmtp.services.verify.mtp_guard import guard_line

    servers = [e for e in entries if e["kind"] != "worker"]
    columns = ["port", "state", "model", "MTP", "tok/s", "URL"]
    if wide:
        columns = [
            "port",
            "state",
            "pid",
            "server pid",
            "uptime",
            "restarts",
            "model",
            "build",
            "tok/s",
            "last request",
            "MTP",
            "MTP live",
            "RPC workers",
            "RSS",
            "VRAM",
            "URL",
        ]
    t = table(*columns, whole=("port", "pid", "server pid", "model", "URL"))
    for e in entries:
        t.add_row(*[_cell(e, c) for c in columns])
        for m in e.get("models", []) if e["kind"] == "router" else []:  # one row per model of a router
            t.add_row(*[_model_cell(m, c) for c in columns])
    con.print(t)
    live = [e for e in servers if e["state"] != "failed"]
    if live:
        hints = sorted({api_key_hint(bool(e["api_key_required"]), e.get("api_key_file")) for e in live})
        say("OpenAI clients: the URL as base URL, the model as model name; " + "; ".join(hints) + ".", con=con)
        uis = [
            e["ui_url"] + (" (it asks for the API key)" if e.get("ui_asks_for_key") else "")
            for e in live
            if e.get("ui_url")
        ]
        if uis:
            say("web UI: " + ", ".join(uis), con=con)
    for e in servers:
        guard = e.get("mtp_guard")
        if guard and (wide or guard.get("switches")):  # a switch is news; the guard at rest only in --wide
            say(f"port {e['port']}: {guard_line(guard)}", indent=4, con=con)
        if e["state"] == "failed":
            say(f"port {e['port']} failed: {e['reason']}", con=con)
            for line in e.get("details", [])[-3:]:
                say(f"  {line}", indent=4, con=con)
            say(f"`llmtp logs --port {e['port']}` shows more; `llmtp stop --port {e['port']}` clears it.", con=con)
        elif e["mtp_live"]["state"] in ("losing", "unknown") and e["mtp_live"].get("fix") and wide:
            say(f"port {e['port']}: {e['mtp_live']['detail']}; fix: `{e['mtp_live']['fix']}`", con=con)
        elif e["mtp_live"]["state"] == "losing" and e["mtp_live"].get("fix"):
            say(
                f"port {e['port']}: MTP is losing; fix: `{e['mtp_live']['fix']}` (`llmtp status --wide` says why)",
                con=con,
            )


def _model_cell(m: dict, column: str) -> str:
    """A row for one model of a router: under the router's row, the name clients send as `model`."""
    from llmtp.cli._out import human_bytes

    tps = m.get("tokens_per_second")
    state = m["state"] + (f" (exit {m['exit_code']})" if m.get("exit_code") not in (None, 0) else "")
    return {
        "port": "",
        "state": state,
        "server pid": str(m.get("server_pid") or "-"),
        "model": f"  {m['name']}",
        "MTP": m.get("mtp_words") or "-",
        "tok/s": "-" if tps is None else f"{tps:.1f}",
        "RSS": "-" if m.get("rss_bytes") is None else human_bytes(m["rss_bytes"]),
        "VRAM": "-" if m.get("vram_bytes") is None else human_bytes(m["vram_bytes"]),
        "URL": "",
    }.get(column, "-" if column not in ("pid", "uptime", "restarts", "build") else "")


def _cell(e: dict, column: str) -> str:
    from llmtp.cli._out import human_bytes

    if e["kind"] == "worker":
        used = ", ".join(f"port {p}" for p in e["used_by"]) or "no server"
        return {
            "port": str(e["port"]),
            "state": e["state"],
            "model": f"RPC worker (used by {used})",
            "pid": str(e.get("llmtp_pid") or "-"),
            "server pid": str(e["server_pid"]),
            "uptime": f"{e['uptime_s']:.0f} s",
            "restarts": str(e["restarts"]),
            "build": e["build"] or "external",
            "URL": f"{e['host']}:{e['port']}",
        }.get(column, "-")
    last = e.get("last_request") or {}
    if column == "port":
        return str(e["port"])
    if column == "state":
        return e["state"]
    if column == "pid":
        return str(e["llmtp_pid"] or "-")
    if column == "server pid":
        return str(e["server_pid"] or "-")
    if column == "uptime":
        return "-" if e["uptime_s"] is None else f"{e['uptime_s']:.0f} s"
    if column == "restarts":
        return str(e["restarts"])
    if column == "model":
        if e["kind"] == "router":
            return f"router, {len(e['models'])} models:"
        return e.get("model_name") or e["model"].rsplit("/", 1)[-1].removesuffix(".gguf")
    if column == "build":
        return e["build"] or "external"
    if column == "tok/s":
        return "-" if e["tokens_per_second"] is None else f"{e['tokens_per_second']:.1f}"
    if column == "last request":
        if last.get("tokens_per_second") is None:
            return "none yet"
        return f"{last['tokens']} tokens, {last['tokens_per_second']:.1f} tok/s"
    if column == "MTP":
        return e["mtp"]
    if column == "MTP live":
        return e["mtp_live"]["state"]
    if column == "RPC workers":
        return ", ".join(e.get("rpc") or []) or "-"
    if column == "RSS":
        return "-" if e["rss_bytes"] is None else human_bytes(e["rss_bytes"])
    if column == "VRAM":
        if e["vram_bytes"] is None and e.get("device_bytes"):  # from the load log (Vulkan, ROCm, Metal)
            return ", ".join(f"{d} {human_bytes(b)}" for d, b in e["device_bytes"].items())
        return "-" if e["vram_bytes"] is None else human_bytes(e["vram_bytes"])
    if column == "URL":
        return e.get("openai_base_url") or "-"
    raise KeyError(column)


def _note(line: str) -> None:
    typer.echo(f"note: {line}", err=True)


def stop(
    model: Optional[str] = typer.Argument(
        None,
        help="Model (alias, file name or path) or port of the server to stop (default: all).",
        autocompletion=_complete_served,
    ),
    port: Optional[int] = typer.Option(
        None, help="Port of the server to stop (default: all).", **limits.option(limits.Port)
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Stop llmtp-served llama-server(s): SIGTERM to llmtp, which stops the server's whole group. Also
    clears a failed server from `status`."""
    from llmtp.services.serve.launch import stop_served
    from llmtp.services.serve.router import unload_member
    from llmtp.services.serve.stop_target import ports_for
    from llmtp.services.stores import failed_servers
    from llmtp.services.stores import serve_records as st

    state_dir = _settings().state_dir
    if model is not None and port is not None:
        from llmtp.errors import UsageError

        raise UsageError(
            "Name the server to stop once: a MODEL or --port, not both",
            "`llmtp stop MODEL`, `llmtp stop --port N`, or `llmtp stop` for all.",
        )
    if model is not None and (member := unload_member(state_dir, model)) is not None:
        typer.echo(
            f"unloaded {member[1]} from the router on port {member[0]}: it loads again on its next request "
            f"(`llmtp stop --port {member[0]}` stops the router and every model)"
        )
        return
    if model is not None:
        ports = ports_for(state_dir, model)
    else:
        ports = [port] if port is not None else st.recorded_ports(state_dir)
    stopped = [p for p in ports if stop_served(state_dir, p, on_note=_note)]
    cleared = failed_servers.clear(state_dir, None if model is None and port is None else ports)
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json({"stopped": stopped, "cleared_failed": cleared})
        return
    if stopped:
        typer.echo(f"stopped port(s) {', '.join(map(str, stopped))}")
    if cleared:
        typer.echo(f"cleared the failed server record(s) of port(s) {', '.join(map(str, cleared))}")
    if not stopped and not cleared:
        typer.echo("no server running")


def logs(
    model: Optional[str] = typer.Argument(
        None,
        help="The server's model, or one model of a router (only its lines); default: --port.",
        autocompletion=_complete_served,
    ),
    follow: bool = typer.Option(False, "-f", "--follow", help="Keep printing new lines."),
    port: Optional[int] = typer.Option(
        None, help="Port of the server (default: settings port).", **limits.option(limits.Port)
    ),
    lines: int = typer.Option(
        50, "-n", "--lines", help="How many lines from the end.", **limits.option(limits.LogLines)
    ),
    raw: bool = typer.Option(
        False,
        "--raw",
        help="Every line as llama-server wrote it (sampler dumps, "
        "relative times) instead of errors, warnings and one line per request.",
    ),
) -> None:
    """Errors, warnings, starts and one line per request from llama-server's log, with absolute times
    (--raw: the whole log as written)."""
    from llmtp.cli.logs_view import show_log
    from llmtp.services.serve.router import find_member
    from llmtp.services.serve.stop_target import ports_for

    settings = _settings()
    only = None
    if model is not None:
        found = find_member(settings.state_dir, model)
        if found is not None:
            port, only = found[0].port, found[1]
        else:
            port = ports_for(settings.state_dir, model)[0]
    show_log(settings.state_dir, port or settings.port, lines=lines, follow=follow, raw=raw, only=only)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
    app.command("ps", help="Same as `llmtp status`.", hidden=True)(status)
    app.command("stop")(stop)
    app.command("logs")(logs)
