"""`llmtp service install|uninstall|status|logs`: llmtp serve as a systemd unit or launchd agent."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.cli import _serve_options as o
from llmtp.core import limits

service_app = typer.Typer(
    help="Run `llmtp serve` at boot as a systemd unit (macOS: a launchd agent).", no_args_is_help=True
)

_UNIT_DIR_HELP = "Write the unit here instead of the systemd default (for tests and packaging)."


@service_app.command("install")
def install(
    model: o.Model,
    extra: o.Extra = None,
    system: bool = typer.Option(False, "--system", help="System unit run by a dedicated `llmtp` user."),
    host: o.Host = None,
    port: o.Port = None,
    ctx: o.Ctx = None,
    no_mtp: o.NoMtp = False,
    parallel: o.Parallel = None,
    clients: o.Clients = None,
    cache_type: o.CacheType = None,
    gpu_layers: o.GpuLayers = None,
    threads: o.Threads = None,
    draft_n_max: o.DraftNMax = None,
    draft_p_min: o.DraftPMin = None,
    alias: o.Alias = None,
    api_key_file: o.ApiKeyFile = None,
    rpc: o.Rpc = None,
    server: o.Server = None,
    no_ui: o.NoUi = False,
    hf: o.HfHabit = None,
    ngl: o.NglHabit = None,
    mtp_guard: o.MtpGuard = None,
    models_max: o.ModelsMax = None,
    idle_unload: o.IdleUnload = None,
    dry_run: bool = typer.Option(False, "--dry-run", help="Check, print the unit and change nothing."),
    no_start: bool = typer.Option(False, "--no-start", help="Write and reload, but do not enable/start."),
    unit_dir: Optional[str] = typer.Option(None, help=_UNIT_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output (with --dry-run: the unit text)."),
) -> None:
    """Install and start the service (user unit by default): it runs `llmtp serve` with these options,
    after the checks `llmtp serve` makes."""
    import sys
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.units import launchd
    from llmtp.services.units import serve_unit as svc
    from llmtp.services.units.staging import SYSTEM_ROOT
    from llmtp.settings import load_settings

    settings = load_settings().settings

    def absolute_model(ref: str) -> str:  # a service does not start in the current directory
        path = Path(ref).expanduser()
        return str(path.resolve()) if path.exists() else ref

    models, extra = o.split_models(model, extra)
    from llmtp.services.serve.router import expand_sets

    models = [absolute_model(m) for m in expand_sets(settings, models)]  # a [sets] name: its models
    set_args = [w for f, v in (("--models-max", models_max), ("--idle-unload", idle_unload)) if v for w in (f, str(v))]
    if len(models) == 1 and set_args:
        from llmtp.errors import UsageError

        raise UsageError(
            "--models-max and --idle-unload are for several models on one port",
            "Name several models (`llmtp service install A B`), or leave the option out.",
        )
    launch = o.launch_request(
        models[0],
        extra,
        host=host,
        port=port,
        ctx=ctx,
        no_mtp=no_mtp,
        parallel=parallel,
        clients=clients,
        cache_type=cache_type,
        gpu_layers=gpu_layers,
        threads=threads,
        draft_n_max=draft_n_max,
        draft_p_min=draft_p_min,
        alias=alias,
        api_key_file=o.absolute(api_key_file),
        rpc=rpc,
        server=o.absolute(server),
        no_ui=no_ui,
        mtp_guard=mtp_guard,
    )
    req = svc.ServiceRequest(launch=launch, system=system, more=tuple(models[1:]), set_args=tuple(set_args))
    launch_plan = svc.validate(settings, req)  # serve's own checks: the unit would only crash-loop otherwise
    for note in launch_plan.notes:
        typer.echo(f"note: {note}", err=True)
    if sys.platform == "darwin":
        if dry_run:
            typer.echo(launchd.launchd_plist(settings, req, launch_plan), nl=False)
            return
        typer.echo(f"loaded {launchd.install_launchd(settings, req, launch_plan, SubprocessRunner())}")
        return
    plan = svc.plan_install(settings, req, launch_plan)
    for note in plan.notes:
        typer.echo(f"note: {note}", err=True)
    if dry_run and as_json:
        from llmtp.cli._out import emit_json

        emit_json(
            {
                "unit": plan.text,
                "stages": [{"source": s.source, "target": s.target} for s in plan.stages],
                "notes": plan.notes,
            }
        )
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
        typer.echo(
            f"The system service cannot read your home directory: serving from {SYSTEM_ROOT} "
            "(hard links where the filesystem allows, else copies).",
            err=True,
        )
    result = svc.install(
        settings,
        req,
        SubprocessRunner(),
        plan=plan,
        unit_dir=Path(unit_dir) if unit_dir else None,
        start=not no_start,
        on_progress=on_progress,
    )
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json(result)
        return
    for action in result.actions:
        typer.echo(action)


@service_app.command("uninstall")
def uninstall(
    system: bool = typer.Option(False, "--system"),
    unit_dir: Optional[str] = typer.Option(None, help=_UNIT_DIR_HELP),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Stop, disable and remove the unit (your override.conf stays)."""
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.units import serve_unit as svc
    from llmtp.settings import load_settings

    actions = svc.uninstall(
        load_settings().settings, SubprocessRunner(), system=system, unit_dir=Path(unit_dir) if unit_dir else None
    )
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
    from llmtp.services.units.serve_unit import UNIT

    typer.echo(Systemctl(SubprocessRunner(), user=not system).status(UNIT), nl=False)


@service_app.command("restart")
def restart_cmd(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Restart the installed unit (user or system scope), e.g. after `llmtp builds use`."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.errors import UsageError
    from llmtp.services.units.serve_unit import restart
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
    from llmtp.services.units.serve_unit import UNIT, installed_scope
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
def logs(
    follow: bool = typer.Option(False, "-f", "--follow"),
    system: bool = typer.Option(False, "--system"),
    lines: int = typer.Option(100, "-n", "--lines", **limits.option(limits.LogLines)),
) -> None:
    """The unit's journal (llmtp's events; `llmtp logs` has llama-server's own log)."""
    import sys

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.adapters.systemctl import Systemctl
    from llmtp.services.units.serve_unit import UNIT

    runner = SubprocessRunner()
    argv = Systemctl(runner, user=not system).journal_argv(UNIT, follow, lines)
    raise typer.Exit(runner.stream(argv, on_line=lambda _line: None, log=sys.stdout))


def register(app: typer.Typer) -> None:
    app.add_typer(service_app, name="service")
