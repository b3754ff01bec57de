"""`llmtp serve`: run llama-server under supervision, from the one launch plan."""

from __future__ import annotations

import typer

from llmtp.cli import _serve_options as o


def _settings():
    from llmtp.settings import load_settings

    return load_settings().settings


def serve(
    context: typer.Context,
    model: o.Model,
    extra: o.Extra = None,
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
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the exact command line and exit."),
    foreground: bool = typer.Option(False, "--foreground", help="Supervise in this process (for services)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    no_pull: bool = typer.Option(
        False,
        "--no-pull",
        help="Refuse a model that is not on disk instead of downloading it (also the setting pull_missing = false).",
    ),
    mtp_guard: o.MtpGuard = None,
    models_max: o.ModelsMax = None,
    idle_unload: o.IdleUnload = None,
) -> None:
    """Serve MODEL with the current build: plan, start, wait until ready, keep it alive.

    Several models (`serve A B C`, or a set named in config.toml) share one port through llama.cpp's router:
    each runs its own plan and MTP settings, clients pick one by its name, and as many as fit stay loaded.

    A model that is not on disk is downloaded first (what, how big, free disk are shown), unless
    --no-pull; offline or without the space it fails before anything starts."""
    from llmtp.services.serve import launch as svc

    settings, warm = _settings(), context.obj  # the entry point's WarmStart (services/serve/warm_start.py) or None
    models, extra = o.split_models(model, extra)
    request = o.launch_request(
        model,
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
        api_key_file=api_key_file,
        rpc=rpc,
        server=server,
        no_ui=no_ui,
        mtp_guard=mtp_guard,
    )
    if len(models) > 1 or model in settings.sets:
        from llmtp.cli.serve_set import serve_set

        serve_set(settings, models, request, models_max, idle_unload, dry_run, foreground, as_json, not no_pull)
        return
    if models_max is not None or idle_unload is not None:
        from llmtp.errors import UsageError

        raise UsageError(
            "--models-max and --idle-unload are for several models on one port",
            "Name several models (`llmtp serve A B`), or leave the option out.",
        )
    plan = svc.plan_for_serve(
        settings, request, warm=warm, pull=None if dry_run else not no_pull, say=lambda m: typer.echo(m, err=True)
    )
    for note in plan.notes:
        typer.echo(f"note: {note}", err=True)
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if dry_run:
        print_plan_argv(plan, as_json)
    elif foreground:
        svc.foreground(
            settings,
            plan,
            warm=warm,
            command=_foreground_argv(),
            on_event=lambda sup, m: typer.echo(f"[{sup.state.value}] {m}", err=True),
        )
    else:
        _detach(settings, plan, warm, as_json)


def print_plan_argv(plan, as_json: bool) -> None:
    """The plan's command line (`serve --dry-run`, `plan --argv`): reasons as shell comments, so the output
    still pastes into a shell as is; --json: the same data."""
    import shlex

    from llmtp.cli._out import emit_json

    argv = plan.argv_list
    if as_json:
        emit_json(
            {
                "argv": argv,
                "command": shlex.join(argv),
                "build": plan.build_id,
                "ready_timeout_s": plan.ready_timeout_s,
                "reasons": list(plan.reasons),
                "warnings": list(plan.warnings),
                "devices": list(plan.devices),
            }
        )
        return
    for r in plan.reasons:
        typer.echo(f"# {r['what']} {r['value']}: {r['reason']}")
    typer.echo(shlex.join(argv))


def _detach(settings, plan, warm, as_json: bool) -> None:
    from llmtp.adapters.server_process import base_url_for
    from llmtp.cli._out import emit_json
    from llmtp.core.ui import address_lines
    from llmtp.services.serve import launch as svc
    from llmtp.services.serve.status import client_endpoint
    from llmtp.services.serve.web_ui import addresses
    from llmtp.services.stores.serve_records import detach_out_path

    argv, port = _foreground_argv(), plan.spec.port
    early = warm.take_child(argv, detach_out_path(settings.state_dir, port)) if warm else None
    record = svc.detach(settings.state_dir, port, argv, plan.ready_timeout_s, child=early)
    data = {
        "state": record.state,
        "pid": record.llmtp_pid,
        "server_pid": record.server_pid,
        "url": base_url_for(record.host, record.port),
        "model": record.model,
        "build": record.build,
        **client_endpoint(record.host, record.port, record.api_key_file, record.alias),
    }
    data |= addresses(base_url_for(record.host, record.port), record.api_key_file, ui_off=not plan.spec.ui)
    if as_json:
        emit_json(data)
        return
    typer.echo(
        f"serving {record.model} on port {record.port} (llmtp pid {record.llmtp_pid}); "
        f"`llmtp status`, `llmtp logs -f`, `llmtp stop`"
    )
    typer.echo(_client_line(data))
    for line in address_lines(data, record.api_key_file):
        typer.echo(f"  {line}")


def _client_line(e: dict) -> str:
    from llmtp.core.status_view import api_key_hint

    return f'OpenAI clients: model "{e["model_name"]}"; {api_key_hint(e["api_key_required"])}'


def _foreground_argv() -> list[str]:
    """This very command line, re-run detached with --foreground (one code path for both modes)."""
    import sys

    from llmtp.services.serve.command_line import foreground_command

    return foreground_command(sys.argv[1:])


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
