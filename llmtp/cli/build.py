"""`llmtp build` and `llmtp builds list|use|rollback|prune`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmtp.core import limits

builds_app = typer.Typer(help="Installed llama.cpp builds: list, switch, roll back, prune.", no_args_is_help=True)


def _settings():
    from llmtp.settings import load_settings

    return load_settings().settings


def build_cmd(
    profile: Optional[str] = typer.Option(
        None, "--profile", "-p", help="cpu, cuda, rocm, metal, vulkan, cuda-mtp-branch (default: detected)"
    ),
    source: str = typer.Option("git", "--source", help="git (pinned tag), pypi (pinned sdist) or path"),
    path: Optional[Path] = typer.Option(None, "--path", help="source tree for --source path"),
    ref: Optional[str] = typer.Option(None, "--ref", help="git tag or commit (default: the pinned tag)"),
    cmake_arg: list[str] = typer.Option([], "--cmake-arg", help="KEY=VALUE, adds or overrides a CMake option"),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", "-j", **limits.option(limits.BuildJobs), help="parallel jobs (default: cores and RAM)"
    ),
    portable: bool = typer.Option(False, "--portable", help="GGML_NATIVE=OFF: a binary for other machines"),
    rpc: bool = typer.Option(
        False,
        "--rpc",
        help="also the RPC backend (GGML_RPC=ON) and ggml-rpc-server, for `llmtp worker` and `llmtp serve --rpc`",
    ),
    no_switch: bool = typer.Option(False, "--no-switch", help="install without making it current"),
    ui: Optional[bool] = typer.Option(
        None,
        "--ui/--no-ui",
        help="web UI: --ui fails without a way to get it, --no-ui builds none (default: the build_ui setting, auto)",
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the effective options and stop"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Build llama.cpp for this machine, probe it, and make it current."""
    from llmtp.cli._out import console, emit_json, esc
    from llmtp.errors import UsageError
    from llmtp.services.build import pipeline as svc

    if source not in ("git", "pypi", "path"):
        raise UsageError(f"Unknown --source {source!r}", "Use git, pypi or path.")
    if path is not None and source == "git":
        source = "path"
    settings = _settings()
    ui_mode = settings.build_ui if ui is None else ("on" if ui else "off")
    request = svc.BuildRequest(
        profile=profile,
        source=source,
        path=path,
        ref=ref,
        cmake_args=cmake_arg,
        jobs=jobs,
        native=not portable,
        make_current=not no_switch,
        ui=ui_mode,
        rpc=rpc,
    )
    from llmtp.adapters.runner import SubprocessRunner

    hw = svc.detect_if_needed(profile, None)  # once, for both the preview and the build
    ui_plan = svc.resolve_ui(settings, request, SubprocessRunner(), svc.load_pin())  # likewise: one look
    preview = svc.dry_run(settings, request, hw=hw, ui=ui_plan)
    out = console(stderr=as_json)
    if not as_json:
        _show_plan(out, preview)  # the effective options, shown before anything is built
        out.print(svc.ui_line(ui_plan), markup=False)
    if dry_run:
        if as_json:
            emit_json(preview)
        return

    with _progress(out) as on_progress:
        installed = svc.build(settings, request, SubprocessRunner(), on_progress, hw=hw, ui=ui_plan)
    if as_json:
        emit_json(_build_row(installed) | {"manifest": installed.manifest})
        return
    caps = installed.manifest.capabilities
    out.print(f"[green]built[/green] {esc(installed.id)}  {esc(installed.server)}")
    out.print(
        f"  version: build {caps.version.build_number}, commit {caps.version.commit or 'unknown'}; "
        f"MTP: {caps.mtp_dialect or 'not supported'}; devices: "
        f"{', '.join(d.id for d in caps.devices or []) or 'CPU only'}; RPC worker: {caps.rpc_worker or 'no'}"
    )
    out.print(f"  web UI: {ui_words(installed.manifest.ui)}", markup=False)
    out.print(f"  current: {'yes' if installed.current else 'no (llmtp builds use ' + installed.id + ')'}")


def ui_words(ui) -> str:
    """A manifest's UI record in a few words: `npm`, `prebuilt`, `none (why)`, `unknown`."""
    if ui is None or ui.embedded is None:
        return "unknown (built before llmtp recorded it)"
    if ui.embedded:
        served = {True: "; GET / served it when probed", False: "; but GET / did not serve it when probed"}
        return f"yes ({ui.how}{served.get(ui.served, '')})"
    return f"none ({ui.note})" if ui.note else "none"


def _show_plan(out, preview: dict) -> None:
    out.print(
        f"profile {preview['profile']} ({preview['backend']}), source {preview['source']} "
        f"{preview['url']} {preview['ref'] or ''}".rstrip()
    )
    out.print("cmake options:")
    for key, value in preview["cmake_options"].items():
        out.print(f"  -D{key}={value}")
    out.print(
        f"targets: {' '.join(preview['targets'])}; jobs: {preview['jobs']}; "
        f"patches: {', '.join(p['name'] for p in preview['patches']) or 'none'}"
    )
    for p in preview["patches"]:
        if p.get("reason"):
            out.print(f"  {p['name']}: {p['reason']}")


class _progress:
    """Phase changes printed as they come; the compile phase as a CompileProgress."""

    def __init__(self, out):
        self.out = out

    def __enter__(self):
        from llmtp.cli._out import CompileProgress

        self.compile = CompileProgress(self.out)
        self.phase = None
        return self.on_event

    def on_event(self, event) -> None:
        if event.phase != self.phase:
            self.phase = event.phase
            if event.phase != "compile":
                self.compile.close()
                # configure: the effective options were shown above
                self.out.print(
                    event.phase if event.phase == "configure" or not event.text else f"{event.phase}: {event.text}"
                )
        if event.phase == "compile":
            self.compile.update(event.done, event.total)

    def __exit__(self, *exc):
        self.compile.close()
        return False


def _build_row(b) -> dict:
    m = b.manifest
    return {
        "id": b.id,
        "current": b.current,
        "status": m.status,
        "failure": m.failure,
        "profile": m.profile,
        "source": m.source,
        "ref": m.ref,
        "build_number": m.build_number,
        "commit": m.commit,
        "finished_at": m.finished_at,
        "mtp": m.capabilities.mtp_dialect,
        "rpc": m.capabilities.rpc_worker,
        "path": str(b.path),
        "ui": (m.ui.how if m.ui.embedded else "none") if m.ui and m.ui.embedded is not None else None,
    }


@builds_app.command("list")
def builds_list(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List installed builds (the current one is marked with *)."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services.build.installed import list_broken, list_builds

    settings = _settings()
    rows = [_build_row(b) for b in list_builds(settings)]
    rows += [
        {
            "id": b.id,
            "current": b.current,
            "status": "broken",
            "failure": b.error,
            "profile": None,
            "source": None,
            "ref": None,
            "build_number": None,
            "commit": None,
            "finished_at": None,
            "mtp": None,
            "rpc": None,
            "path": str(b.path),
            "ui": None,
        }
        for b in list_broken(settings)
    ]
    if as_json:
        emit_json(rows)
        return
    out = console(markup=False)
    if not rows:
        out.print("no builds yet: run `llmtp build`")
        return
    out.print(builds_table(rows))


def builds_table(rows: list[dict]):  # -> cli._out table
    """The id (what `builds use` takes) and the finish time are never cut or wrapped; * marks current."""
    from llmtp.cli._out import table

    t = table("build", "profile", "ref", "MTP", "RPC", "UI", "finished", "status", whole=("build", "finished"))
    for r in rows:
        mark = "*" if r["current"] else ""
        if r["status"] == "broken":
            t.add_row(mark + r["id"], "-", "-", "-", "-", "-", "-", f"BROKEN: {r['failure']}")
            continue
        t.add_row(
            mark + r["id"],
            r["profile"] or "-",
            f"{r['source'] or '-'} {r['ref'] or '-'}",
            r["mtp"] or "no",
            "yes" if r["rpc"] else "no",
            r["ui"] or "?",
            str(r["finished_at"] or "-").replace("T", " ")[:19],
            "ok" if r["status"] == "ok" else f"FAILED: {r['failure']}",
        )
    return t


@builds_app.command("use")
def builds_use(
    build_id: str = typer.Argument(..., help="a build id from `llmtp builds list`"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Make an installed build current."""
    from llmtp.services.build.installed import use_build

    settings = _settings()
    b = use_build(settings, build_id)
    restarted = _restart_service(settings)
    _done(as_json, {"current": b.id, "restarted": restarted}, f"current: {b.id}" + _restarted_line(restarted))


def _done(as_json: bool, data: dict, text: str) -> None:
    """What a changing command did: `data` as JSON, or `text` for people."""
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json(data)
    else:
        typer.echo(text)


@builds_app.command("adopt")
def builds_adopt(
    bin_dir: str = typer.Argument(..., help="a llama.cpp bin/ directory holding llama-server"),
    no_switch: bool = typer.Option(False, "--no-switch", help="register it without making it current"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Register an existing llama.cpp build (linked, not copied); probed before it can be current."""
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.build.installed import adopt

    b = adopt(_settings(), Path(bin_dir), SubprocessRunner(), make_current=not no_switch)
    _done(as_json, {"adopted": b.id, "current": not no_switch}, f"adopted {b.id}" + ("" if no_switch else " (current)"))


@builds_app.command("rollback")
def builds_rollback(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Switch back to the build that was current before."""
    from llmtp.services.build.installed import rollback

    settings = _settings()
    b = rollback(settings)
    restarted = _restart_service(settings)
    _done(as_json, {"current": b.id, "restarted": restarted}, f"current: {b.id}" + _restarted_line(restarted))


def _restart_service(settings) -> bool:
    """An active llmtp unit serves the current build only from its next start: restart it now, as `llmtp
    upgrade` does after its switch (an inactive or absent unit is left alone)."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.units.serve_unit import restart_if_running

    return restart_if_running(settings, SubprocessRunner())


def _restarted_line(restarted: bool) -> str:
    return "\nrestarted llmtp.service onto it" if restarted else ""


@builds_app.command("prune")
def builds_prune(
    keep: int = typer.Option(
        2, "--keep", **limits.option(limits.Keep), help="newest builds to keep (current and previous always stay)"
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Delete old builds."""
    from llmtp.services.build.installed import prune

    removed = prune(_settings(), keep)
    _done(as_json, {"removed": list(removed)}, "removed: " + (", ".join(removed) if removed else "nothing"))


def register(app: typer.Typer) -> None:
    app.command("build")(build_cmd)
    app.add_typer(builds_app, name="builds")
