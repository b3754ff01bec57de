"""`llmtp serve A B C`: several models on one port through llama.cpp's router (services/serve/router.py)."""

from __future__ import annotations

import shlex

import typer

from llmtp.cli._out import emit_json
from llmtp.core.launch_plan import LaunchRequest


def serve_set(
    settings,
    models: list[str],
    request: LaunchRequest,
    models_max: int | None,
    idle_unload: int | None,
    dry_run: bool,
    foreground: bool,
    as_json: bool,
    pull: bool,
) -> None:  # noqa: ANN001
    from llmtp.services.serve import router as svc

    plan = svc.plan_router_for_serve(
        settings,
        models,
        request,
        models_max=models_max,
        idle_unload_s=idle_unload,
        pull=None if dry_run else pull,
        say=lambda m: typer.echo(m, err=True),
    )
    for note in plan.notes:
        typer.echo(f"note: {note}", err=True)
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
    if dry_run:
        print_router_plan(plan, as_json)
    elif foreground:
        _foreground(settings, plan)
    else:
        _detach(settings, plan, as_json)


def print_router_plan(plan, as_json: bool) -> None:  # noqa: ANN001 - a RouterPlan
    """The router's command line, each model's own, and the preset file it reads (as shell comments)."""
    if as_json:
        emit_json(
            {
                "argv": list(plan.argv),
                "command": shlex.join(plan.argv),
                "build": plan.build_id,
                "models_max": plan.models_max,
                "fit": plan.fit.reason,
                "preset_path": plan.preset_path,
                "preset": plan.preset,
                "models": [
                    {"name": n, "argv": p.argv_list, "reasons": list(p.reasons)}
                    for n, p in zip(plan.names, plan.plans, strict=True)
                ],
                "reasons": list(plan.reasons),
                "warnings": list(plan.warnings),
            }
        )
        return
    for r in plan.reasons:
        typer.echo(f"# {r['what']} {r['value']}: {r['reason']}")
    typer.echo(f"# {plan.preset_path}, written at start (each model's own plan):")
    for line in plan.preset.splitlines():
        typer.echo(f"#   {line}" if line else "#")
    typer.echo(shlex.join(plan.argv))


def _foreground(settings, plan) -> None:  # noqa: ANN001
    from llmtp.cli.serve import _foreground_argv
    from llmtp.services.serve.foreground import ServeHooks
    from llmtp.services.serve.launch import notify_ready
    from llmtp.services.serve.router import router_foreground

    hooks = ServeHooks(
        on_event=lambda sup, m: typer.echo(f"[{sup.state.value}] {m}", err=True),
        on_ready=notify_ready(None),
        command=tuple(_foreground_argv()),
    )
    router_foreground(settings, plan, hooks=hooks)


def _detach(settings, plan, as_json: bool) -> None:  # noqa: ANN001
    from llmtp.adapters.server_process import base_url_for
    from llmtp.cli.serve import _foreground_argv
    from llmtp.core.status_view import api_key_hint
    from llmtp.services.serve.launch import detach

    record = detach(settings.state_dir, plan.port, _foreground_argv(), 60.0)
    url = base_url_for(record.host, record.port)
    data = {
        "state": record.state,
        "pid": record.llmtp_pid,
        "server_pid": record.server_pid,
        "url": url,
        "openai_base_url": url + "/v1",
        "models": list(plan.names),
        "models_max": plan.models_max,
        "build": record.build,
        "api_key_required": record.api_key_file is not None,
    }
    if as_json:
        emit_json(data)
        return
    typer.echo(
        f"serving {', '.join(plan.names)} on port {record.port} through one router (llmtp pid {record.llmtp_pid}; "
        f"{plan.models_max} loaded at most, each on its first request); `llmtp status`, `llmtp logs -f`, `llmtp stop`"
    )
    names = ", ".join(f'"{n}"' for n in plan.names)
    typer.echo(f"OpenAI clients: base URL {url}/v1, model {names}; {api_key_hint(record.api_key_file is not None)}")


def plan_set(settings, models: list[str], request: LaunchRequest, deps, *, argv: bool, as_json: bool) -> None:  # noqa: ANN001
    """`llmtp plan A B C`: each model's own plan in one line, and how many run at once and why."""
    from llmtp.cli._out import human_bytes
    from llmtp.services.serve.router import resolve_router

    plan = resolve_router(settings, models, request, deps=deps)
    if argv or as_json:
        print_router_plan(plan, as_json) if plan.argv or as_json else typer.echo("no build yet: `llmtp build`")
        return
    for name, p in zip(plan.names, plan.plans, strict=True):
        mp = p.model_plan
        memory = ", ".join(f"{m.device} {human_bytes(m.total)}" for m in (mp.memory if mp else []) if m.total)
        mtp = f"MTP n-max {p.mtp.n_max}" if p.mtp.enabled else "MTP off"
        quant = (mp.quant or "?") if mp else "?"
        typer.echo(f"{name}: {quant}, ctx {p.spec.ctx_size}, {mtp}; {memory}")
    for r in plan.reasons:
        typer.echo(f"{r['what']} {r['value']}: {r['reason']}")
    for warning in plan.warnings:
        typer.echo(f"warning: {warning}", err=True)
