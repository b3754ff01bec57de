"""Root of the `llmtp` command: registers the command groups and maps errors to exit codes.

Command modules import only typer at module level so `llmtp --help` stays fast; heavy imports
(rich, httpx, gguf, numpy, pynvml) happen inside the command that needs them.
"""

from __future__ import annotations

import importlib
import sys

import typer

from llmtp import __version__
from llmtp.errors import LlmtpError

app = typer.Typer(
    name="llmtp",
    help="Local LLM serving with llama.cpp: detect, build, plan, serve and verify MTP.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Modules under llmtp.cli; each exposes `register(app)` to add its command or command group.
COMMAND_MODULES: list[str] = [
    "config",
    "detect",
    "inspect",
    "build",
    "serve",
    "service",
    "verify",
    "tune",
    "upgrade",
    "doctor",
    "models",
    "plan",
    "setup",
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"llmtp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the llmtp version and exit."),
) -> None:
    """llmtp: local LLM serving with llama.cpp, fast and boring."""


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"llmtp.cli.{name}")
        module.register(app)


_register()


def run(argv: list[str] | None = None, warm=None) -> None:  # noqa: ANN001 - services.warm_start.WarmStart
    """Console entry point: the only place that turns an LlmtpError into an exit code. `warm`: the
    entry point's warm start, handed to the commands as typer's context object (`serve` uses it)."""
    try:
        # Without standalone mode click returns a typer.Exit's code instead of raising it
        # (verify's verdict codes travel this way).
        rc = app(args=argv, standalone_mode=False, obj=warm)
    except LlmtpError as exc:
        typer.echo(f"error: {exc.render()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here with standalone_mode=False
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:
        sys.exit(rc)
