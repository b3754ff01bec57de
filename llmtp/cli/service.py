"""`llmtp service install|uninstall|status|logs`: llmtp serve as a systemd unit or launchd agent."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.core import limits

service_app = typer.Typer(help="Run `llmtp serve` at boot as a systemd unit (macOS: a launchd agent).",
                          no_args_is_help=True)

_UNIT_DIR_HELP = "Write the unit here instead of the systemd default (for tests and packaging)."


@service_app.command("install")
def install(
    model: str = typer.Argument(..., help="Model to serve (as for `llmtp serve`)."),
    extra: Optional[list[str]] = typer.Argument(None, help="After `--`: flags passed to llama-server."),
    system: bool = typer.Option(False, "--system", help="System unit run by a dedicated `llmtp` user."),
    host: Optional[str] = typer.Option(None, help="Bind address (as for `llmtp serve`)."),
    port: Optional[int] = typer.Option(None, help="Port (as for `llmtp serve`).", **limits.option(limits.Port)),
    ctx: Optional[int] = typer.Option(None, "--ctx", help="Context size; overrides the plan.",
                                     **limits.option(limits.Ctx)),
    no_mtp: bool = typer.Option(False, "--no-mtp", help="Serve without MTP speculative decoding."),
    parallel: Optional[int] = typer.Option(None, "--parallel", help="Server slots (-np); MTP keeps 1.",
                                          **limits.option(limits.Parallel)),
    api_key_file: Optional[str] = typer.Option(None, help="File with the API key(s); required off loopback."),
    server: Optional[str] = typer.Option(None, help="Use this llama-server instead of the current build."),
    alias: Optional[str] = typer.Option(None, help="Model name clients see in /v1/models (as for `llmtp serve`)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check, print the unit and change nothing."),
    no_start: bool = typer.Option(False, "--no-start", help="Write and reload, but do not enable/start."),
    unit_dir: Optional[str] = typer.Option(None, help=_UNIT_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (with --dry-run: the unit text)."),
) -> None:
    """Install and start the service (user unit by default), after the checks `llmtp serve` makes."""
    import sys
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services import service as svc
    from llmtp.settings import load_settings

    settings = load_settings().settings
    # Files as absolute paths: the service does not start in the current directory.
    absolute = (lambda p: str(Path(p).expanduser().resolve()) if p else None)  # noqa: E731
    path = Path(model).expanduser()
    req = svc.ServiceRequest(model=str(path.resolve()) if path.exists() else model, host=host, port=port, ctx=ctx,
                             no_mtp=no_mtp, parallel=parallel, api_key_file=absolute(api_key_file),
                             server=absolute(server), alias=alias, extra=list(extra or []), system=system)
    prepared = svc.validate(settings, req)  # serve's own checks: the unit would only crash-loop otherwise
    for note in prepared.notes:
        typer.echo(f"note: {note}", err=True)
    if sys.platform == "darwin":
        if dry_run:
            typer.echo(svc.launchd_plist(settings, req, prepared), nl=False)
            return
        typer.echo(f"loaded {svc.install_launchd(settings, req, prepared, SubprocessRunner())}")
        return
    plan = svc.plan_install(settings, req, prepared)
    for note in plan.notes:
        typer.echo(f"note: {note}", err=True)
    if dry_run and as_json:
        from llmtp.cli._out import emit_json

        emit_json({"unit": plan.text, "stages": [{"source": s.source, "target": s.target} for s in plan.stages],
                   "notes": plan.notes})
        return
    if dry_run:
        for stage in plan.stages:
            typer.echo(f"would link or copy {stage.source} -> {stage.target}", err=True)
        typer.echo(plan.text, nl=False)
        return
    progress: dict = {}

    def on_progress(stage, done: int, total: int) -> None:
        from llmtp.cli._out import CompileProgress, console

        bar = progress.get(stage.target)
        if bar is None:
            bar = progress[stage.target] = CompileProgress(console(stderr=True), f"copy {stage.source.name}")
        bar.update(done, total)
        if done >= total:
            bar.close()

    if plan.stages:
        typer.echo(f"The system service cannot read your home directory: serving from {svc.SYSTEM_ROOT} "
                   "(hard links where the filesystem allows, else copies).", err=True)
    result = svc.install(settings, req, SubprocessRunner(), plan=plan,
                         unit_dir=Path(unit_dir) if unit_dir else None, start=not no_start, on_progress=on_progress)
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json(result)
        return
    for action in result.actions:
        typer.echo(action)


@service_app.command("uninstall")
def uninstall(system: bool = typer.Option(False, "--system"),
              unit_dir: Optional[str] = typer.Option(None, help=_UNIT_DIR_HELP),
              as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Stop, disable and remove the unit (your override.conf stays)."""
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services import service as svc
    from llmtp.settings import load_settings

    actions = svc.uninstall(load_settings().settings, SubprocessRunner(), system=system,
                            unit_dir=Path(unit_dir) if unit_dir else None)
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json({"actions": list(actions)})
        return
    for action in actions:
        typer.echo(action)


@service_app.command("status")
def status(system: bool = typer.Option(False, "--system")) -> None:
    """systemctl status of the unit."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.adapters.systemctl import Systemctl
    from llmtp.services.service import UNIT

    typer.echo(Systemctl(SubprocessRunner(), user=not system).status(UNIT), nl=False)


@service_app.command("restart")
def restart_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Restart the installed unit (user or system scope), e.g. after `llmtp builds use`."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.errors import UsageError
    from llmtp.services.service import restart
    from llmtp.settings import load_settings

    if not restart(load_settings().settings, SubprocessRunner()):
        raise UsageError("No llmtp service is installed", "Install one with `llmtp service install MODEL`.")
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json({"restarted": "llmtp.service"})
        return
    typer.echo("restarted llmtp.service")


@service_app.command("stop")
def stop_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Stop the installed unit; it stays installed and enabled (`uninstall` removes it)."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.adapters.systemctl import Systemctl
    from llmtp.errors import UsageError
    from llmtp.services.service import UNIT, installed_scope
    from llmtp.settings import load_settings

    system = installed_scope(load_settings().settings)
    if system is None:
        raise UsageError("No llmtp service is installed", "Install one with `llmtp service install MODEL`.")
    Systemctl(SubprocessRunner(), user=not system).stop(UNIT)
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json({"stopped": "llmtp.service"})
        return
    typer.echo("stopped llmtp.service")


@service_app.command("logs")
def logs(follow: bool = typer.Option(False, "-f", "--follow"), system: bool = typer.Option(False, "--system"),
         lines: int = typer.Option(100, "-n", "--lines", **limits.option(limits.LogLines))) -> None:
    """The unit's journal (llmtp's events; `llmtp logs` has llama-server's own log)."""
    import sys

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.adapters.systemctl import Systemctl
    from llmtp.services.service import UNIT

    runner = SubprocessRunner()
    argv = Systemctl(runner, user=not system).journal_argv(UNIT, follow, lines)
    raise typer.Exit(runner.stream(argv, on_line=lambda _line: None, log=sys.stdout))


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service")
