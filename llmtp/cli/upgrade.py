"""`llmtp upgrade`: build a new llama.cpp ref, verify it, switch only when it passes."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.core import limits


def render(result, con) -> None:
    from llmtp.cli._out import esc
    from llmtp.cli.verify import render as render_verify

    for label, report in (("old build", result.old_report), ("new build", result.new_report)):
        if report is not None:
            con.rule(label)
            render_verify(report, con)
    color = {"switched": "green", "unchanged": "green"}.get(result.outcome, "red")
    con.print(f"[bold {color}]{esc(result.outcome)}[/]: {esc(result.reason)}")


def upgrade_cmd(
    ref: Optional[str] = typer.Option(None, "--ref", help="git tag or commit to build (default: the pinned tag)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model verified on both builds (default model)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Build profile (default: the current build's)."),
    source: Optional[str] = typer.Option(None, "--source", help="git, pypi or path (default: git)."),
    path: Optional[str] = typer.Option(None, "--path", help="Source tree for --source path."),
    cmake_arg: Optional[list[str]] = typer.Option(None, "--cmake-arg", help="Extra KEY=VALUE CMake option."),
    quick: bool = typer.Option(False, "--quick", help="Quick verify (128 tokens, median of 3)."),
    runs: Optional[int] = typer.Option(None, "--runs", **limits.option(limits.Runs)),
    warmups: Optional[int] = typer.Option(None, "--warmups", **limits.option(limits.Warmups)),
    n_predict: Optional[int] = typer.Option(None, "--n-predict", **limits.option(limits.NPredict)),
    tolerance: float = typer.Option(
        0.10, "--tolerance", **limits.option(limits.Fraction), help="Allowed drop against the baseline."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the outcome and both reports as JSON."),
) -> None:
    """Build REF in its own directory, verify it against the stored baseline, switch `current` only on a pass.

    A running service is restarted only after the switch; `llmtp builds rollback` returns to the previous build.
    """
    from pathlib import Path

    from llmtp.cli._out import console, emit_json, esc
    from llmtp.cli.verify import method_from
    from llmtp.services.build.installed import current_build
    from llmtp.services.build.request import BuildRequest
    from llmtp.services.build.upgrade import run_upgrade
    from llmtp.settings import load_settings

    settings = load_settings().settings
    cur = current_build(settings)
    request = BuildRequest(
        profile=profile or (cur.manifest.profile if cur else None),
        ref=ref,
        cmake_args=cmake_arg or [],
        make_current=False,
        ui=settings.build_ui,
        **({"source": source} if source else {}),
        **({"path": Path(path)} if path else {}),
    )
    method = method_from(quick, False, runs, warmups, n_predict, None)
    err = console(stderr=True)
    on_build = None if json_out else (lambda e: err.print(f"[dim]{esc(e.phase)}[/] {esc(e.text)}") if e.text else None)
    from llmtp.services.verify.mtp_ab import VerifyOptions

    result = run_upgrade(
        settings,
        request,
        model,
        method,
        restart=_restart_service(),
        on_build_progress=on_build,
        verify_options=VerifyOptions(tolerance=tolerance),
    )
    if json_out:
        emit_json(result)
    else:
        render(result, console())
    raise typer.Exit(result.exit_code)


def _restart_service():
    """Restart an active llmtp unit onto the new build; upgrade calls it only after the switch."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.units.serve_unit import restart_if_running
    from llmtp.settings import load_settings

    return lambda: restart_if_running(load_settings().settings, SubprocessRunner())


def register(app: typer.Typer) -> None:
    app.command("upgrade")(upgrade_cmd)
