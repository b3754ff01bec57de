"""`llmtp build` and `llmtp builds list|use|rollback|prune`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from llmtp.core import limits

builds_app = typer.Typer(help="Installed llama.cpp builds: list, switch, roll back, prune.",
                         no_args_is_help=True)


def _settings():
    from llmtp.settings import load_settings

    return load_settings().settings


def build_cmd(
    profile: Optional[str] = typer.Option(None, "--profile", "-p",
                                          help="cpu, cuda, rocm, metal, vulkan, cuda-mtp-branch (default: detected)"),
    source: str = typer.Option("git", "--source", help="git (pinned tag), pypi (pinned sdist) or path"),
    path: Optional[Path] = typer.Option(None, "--path", help="source tree for --source path"),
    ref: Optional[str] = typer.Option(None, "--ref", help="git tag or commit (default: the pinned tag)"),
    cmake_arg: list[str] = typer.Option([], "--cmake-arg", help="KEY=VALUE, adds or overrides a CMake option"),
    jobs: Optional[int] = typer.Option(None, "--jobs", "-j", **limits.option(limits.BuildJobs), help="parallel jobs (default: cores and RAM)"),
    portable: bool = typer.Option(False, "--portable", help="GGML_NATIVE=OFF: a binary for other machines"),
    no_switch: bool = typer.Option(False, "--no-switch", help="install without making it current"),
    dry_run: bool = typer.Option(False, "--dry-run", help="show the effective options and stop"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Build llama.cpp for this machine, probe it, and make it current."""
    from llmtp.cli._out import esc
    from llmtp.cli._out import console, emit_json
    from llmtp.errors import UsageError
    from llmtp.services import build as svc

    if source not in ("git", "pypi", "path"):
        raise UsageError(f"Unknown --source {source!r}", "Use git, pypi or path.")
    if path is not None and source == "git":
        source = "path"
    settings = _settings()
    request = svc.BuildRequest(profile=profile, source=source, path=path, ref=ref, cmake_args=cmake_arg,
                               jobs=jobs, native=not portable, make_current=not no_switch)
    hw = svc.detect_if_needed(profile, None)  # once, for both the preview and the build
    preview = svc.dry_run(settings, request, hw=hw)
    out = console(stderr=as_json)
    if not as_json:
        _show_plan(out, preview)  # the effective options, shown before anything is built
    if dry_run:
        if as_json:
            emit_json(preview)
        return
    from llmtp.adapters.runner import SubprocessRunner

    with _progress(out) as on_progress:
        installed = svc.build(settings, request, SubprocessRunner(), on_progress, hw=hw)
    if as_json:
        emit_json(_build_row(installed) | {"manifest": installed.manifest})
        return
    caps = installed.manifest.capabilities
    out.print(f"[green]built[/green] {esc(installed.id)}  {esc(installed.server)}")
    out.print(f"  version: build {caps.version.build_number}, commit {caps.version.commit or 'unknown'}; "
              f"MTP: {caps.mtp_dialect or 'not supported'}; devices: "
              f"{', '.join(d.id for d in caps.devices or []) or 'CPU only'}")
    out.print(f"  current: {'yes' if installed.current else 'no (llmtp builds use ' + installed.id + ')'}")


def _show_plan(out, preview: dict) -> None:
    out.print(f"profile {preview['profile']} ({preview['backend']}), source {preview['source']} "
              f"{preview['url']} {preview['ref'] or ''}".rstrip())
    out.print("cmake options:")
    for key, value in preview["cmake_options"].items():
        out.print(f"  -D{key}={value}")
    out.print(f"targets: {' '.join(preview['targets'])}; jobs: {preview['jobs']}; "
              f"patches: {', '.join(p['name'] for p in preview['patches']) or 'none'}")


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
                self.out.print(event.phase if event.phase == "configure" or not event.text
                               else f"{event.phase}: {event.text}")
        if event.phase == "compile":
            self.compile.update(event.done, event.total)

    def __exit__(self, *exc):
        self.compile.close()
        return False


def _build_row(b) -> dict:
    m = b.manifest
    return {"id": b.id, "current": b.current, "status": m.status, "failure": m.failure, "profile": m.profile,
            "source": m.source, "ref": m.ref, "build_number": m.build_number, "commit": m.commit,
            "finished_at": m.finished_at, "mtp": m.capabilities.mtp_dialect, "path": str(b.path)}


@builds_app.command("list")
def builds_list(as_json: bool = typer.Option(False, "--json", help="machine-readable output")) -> None:
    """List installed builds (the current one is marked with *)."""
    from llmtp.cli._out import console, emit_json
    from llmtp.services.builds import list_broken, list_builds

    settings = _settings()
    rows = [_build_row(b) for b in list_builds(settings)]
    rows += [{"id": b.id, "current": b.current, "status": "broken", "failure": b.error, "profile": None,
              "source": None, "ref": None, "build_number": None, "commit": None, "finished_at": None,
              "mtp": None, "path": str(b.path)} for b in list_broken(settings)]
    if as_json:
        emit_json(rows)
        return
    out = console()
    if not rows:
        out.print("no builds yet: run `llmtp build`")
        return
    for r in rows:
        mark = "*" if r["current"] else " "
        if r["status"] == "broken":
            out.print(f"{mark} {r['id']}  BROKEN: {r['failure']}", markup=False)
            continue
        status = "" if r["status"] == "ok" else f"  FAILED: {r['failure']}"
        out.print(f"{mark} {r['id']}  {r['profile']:<8} {r['source']:<5} {r['ref'] or '-':<10} "
                  f"mtp={r['mtp'] or 'no'}  {r['finished_at']}{status}")


@builds_app.command("use")
def builds_use(build_id: str = typer.Argument(..., help="a build id from `llmtp builds list`"),
               as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Make an installed build current."""
    from llmtp.services.builds import use_build

    b = use_build(_settings(), build_id)
    _done(as_json, {"current": b.id}, f"current: {b.id}")


def _done(as_json: bool, data: dict, text: str) -> None:
    """What a changing command did: `data` as JSON, or `text` for people."""
    if as_json:
        from llmtp.cli._out import emit_json

        emit_json(data)
    else:
        typer.echo(text)


@builds_app.command("adopt")
def builds_adopt(bin_dir: str = typer.Argument(..., help="a llama.cpp bin/ directory holding llama-server"),
                 no_switch: bool = typer.Option(False, "--no-switch", help="register it without making it current"),
                 as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Register an existing llama.cpp build (linked, not copied); probed before it can be current."""
    from pathlib import Path

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.builds import adopt

    b = adopt(_settings(), Path(bin_dir), SubprocessRunner(), make_current=not no_switch)
    _done(as_json, {"adopted": b.id, "current": not no_switch}, f"adopted {b.id}" + ("" if no_switch else " (current)"))


@builds_app.command("rollback")
def builds_rollback(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Switch back to the build that was current before."""
    from llmtp.services.builds import rollback

    b = rollback(_settings())
    _done(as_json, {"current": b.id}, f"current: {b.id}")


@builds_app.command("prune")
def builds_prune(keep: int = typer.Option(2, "--keep", **limits.option(limits.Keep), help="newest builds to keep "
                                                                  "(current and previous always stay)"),
                 as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Delete old builds."""
    from llmtp.services.builds import prune

    removed = prune(_settings(), keep)
    _done(as_json, {"removed": list(removed)}, "removed: " + (", ".join(removed) if removed else "nothing"))


def register(app: typer.Typer) -> None:
    app.command("build")(build_cmd)
    app.add_typer(builds_app, name="builds")
