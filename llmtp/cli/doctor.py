"""`llmtp doctor`: the post-upgrade sanity checklist, each failure with its fix."""

from __future__ import annotations

import typer


def render(report, con) -> None:
    from llmtp.cli._out import esc

    color = {"ok": "green", "warn": "yellow", "fail": "red", "skip": "dim"}
    tag = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "skip"}
    for c in report.checks:
        con.print(f"[{color[c.status]}]{tag[c.status]:<5}[/] {esc(c.name)}: {esc(c.detail)}")
        if c.fix and c.status in ("warn", "fail"):
            con.print(f"      fix: {esc(c.fix)}")
    con.print(f"overall: [{color[report.status]}]{tag[report.status]}[/]")


def doctor_cmd(json_out: bool = typer.Option(False, "--json", help="Print the checklist as JSON.")) -> None:
    """Check driver vs toolkit, GPU visibility, MTP markers, the service, disk space, stale builds, HF cache.

    Exit code 0 when nothing failed (warnings allowed), 1 when a check failed.
    """
    from llmtp.cli._out import console, emit_json
    from llmtp.services.machine.doctor import run_doctor
    from llmtp.settings import load_settings

    report = run_doctor(load_settings().settings, service_state=_service_state())
    if json_out:
        emit_json(report)
    else:
        render(report, console())
    raise typer.Exit(1 if report.status == "fail" else 0)


def _service_state():
    """systemd's state of the installed llmtp unit, or None when none is installed."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.units.serve_unit import unit_state
    from llmtp.settings import load_settings

    return lambda: unit_state(load_settings().settings, SubprocessRunner())


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor_cmd)
