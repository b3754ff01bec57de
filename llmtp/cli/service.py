"""`llmtp service install|uninstall|status|logs`: llmtp serve as a systemd unit or launchd agent."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.core import limits

service_app = typer.Typer(help="Run `llmtp serve` at boot as a systemd unit (macOS: a launchd agent).",
                          no_args_is_help=True)

_UNIT_DIR_HELP = "Write the unit here instead of the systemd default (for tests and packaging)."


def _serve_args(host, port, ctx, no_mtp, api_key_file, server) -> list[str]:
    from pathlib import Path

    args: list[str] = []
    for flag, value in (("--host", host), ("--port", port), ("--ctx", ctx)):
        if value is not None:
            args += [flag, str(value)]
    if no_mtp:
        args.append("--no-mtp")
    # Files are made absolute: the service does not start in the current directory.
    if api_key_file:
        args += ["--api-key-file", str(Path(api_key_file).expanduser().resolve())]
    if server:
        args += ["--server", str(Path(server).expanduser().resolve())]
    return args


@service_app.command("install")
def install(
    model: str = typer.Argument(..., help="Model to serve (as for `llmtp serve`)."),
    extra: Optional[list[str]] = typer.Argument(None, help="After `--`: flags passed to llama-server."),
    system: bool = typer.Option(False, "--system", help="System unit run by a dedicated `llmtp` user."),
    host: Optional[str] = typer.Option(None), port: Optional[int] = typer.Option(None, **limits.option(limits.Port)),
    ctx: Optional[int] = typer.Option(None, "--ctx", **limits.option(limits.Ctx)), no_mtp: bool = typer.Option(False, "--no-mtp"),
    api_key_file: Optional[str] = typer.Option(None), server: Optional[str] = typer.Option(None),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the unit and change nothing."),
    no_start: bool = typer.Option(False, "--no-start", help="Write and reload, but do not enable/start."),
    unit_dir: Optional[str] = typer.Option(None, help=_UNIT_DIR_HELP),
) -> None:
    """Install and start the service (user unit by default)."""
    import sys
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services import service as svc
    from llmtp.settings import load_settings

    settings = load_settings().settings
    path = Path(model).expanduser()
    model_ref = str(path.resolve()) if path.exists() else model
    args = _serve_args(host, port, ctx, no_mtp, api_key_file, server) + (["--", *extra] if extra else [])
    req = svc.ServiceRequest(model=model_ref, serve_args=args, system=system)
    if sys.platform == "darwin":
        if dry_run:
            typer.echo(svc.launchd_plist(settings, req), nl=False)
            return
        typer.echo(f"loaded {svc.install_launchd(settings, req, SubprocessRunner())}")
        return
    if dry_run:
        typer.echo(svc.render_unit(settings, req), nl=False)
        return
    result = svc.install(settings, req, SubprocessRunner(), unit_dir=Path(unit_dir) if unit_dir else None,
                         start=not no_start)
    for action in result.actions:
        typer.echo(action)


@service_app.command("uninstall")
def uninstall(system: bool = typer.Option(False, "--system"),
              unit_dir: Optional[str] = typer.Option(None, help=_UNIT_DIR_HELP)) -> None:
    """Stop, disable and remove the unit (your override.conf stays)."""
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services import service as svc
    from llmtp.settings import load_settings

    for action in svc.uninstall(load_settings().settings, SubprocessRunner(), system=system,
                                unit_dir=Path(unit_dir) if unit_dir else None):
        typer.echo(action)


@service_app.command("status")
def status(system: bool = typer.Option(False, "--system")) -> None:
    """systemctl status of the unit."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.adapters.systemctl import Systemctl
    from llmtp.services.service import UNIT

    typer.echo(Systemctl(SubprocessRunner(), user=not system).status(UNIT), nl=False)


@service_app.command("restart")
def restart_cmd() -> None:
    """Restart the installed unit (user or system scope), e.g. after `llmtp builds use`."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.errors import UsageError
    from llmtp.services.service import restart
    from llmtp.settings import load_settings

    if not restart(load_settings().settings, SubprocessRunner()):
        raise UsageError("No llmtp service is installed", "Install one with `llmtp service install MODEL`.")
    typer.echo("restarted llmtp.service")


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
