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


class WholeHelpGroup(typer.core.TyperGroup):
    """--help lists each command with its whole first sentence, wrapped, where click cuts it at 45
    characters with `...`."""

    def format_commands(self, ctx, formatter) -> None:  # noqa: ANN001 - click's own types
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit=10_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(
    name="llmtp",
    cls=WholeHelpGroup,
    help="Local LLM serving with llama.cpp: detect, build, plan, serve and verify MTP.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Modules under llmtp.cli; each exposes `register(app)` to add its command or command group.
# The order is --help's: `setup` first, what a new user runs.
COMMAND_MODULES: list[str] = [
    "setup",
    "serve",
    "run",
    "status",
    "models",
    "plan",
    "config",
    "detect",
    "inspect",
    "build",
    "service",
    "verify",
    "tune",
    "upgrade",
    "doctor",
    "worker",
]


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"llmtp {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the llmtp version and exit."
    ),
) -> None:
    """llmtp: local LLM serving with llama.cpp, fast and boring."""


def _register() -> None:
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"llmtp.cli.{name}")
        module.register(app)
    for group in app.registered_groups:  # `llmtp models --help` and the like: whole help lines too
        if group.typer_instance is not None:
            group.typer_instance.info.cls = WholeHelpGroup


_register()


def _click_exceptions() -> tuple[type[BaseException], ...]:
    """ClickException as the installed typer raises it. typer < 0.26 raises click's own; newer typer
    bundles a copy of click as `typer._click`, so `click.ClickException` misses its errors. typer.BadParameter
    derives from the right class on every version, so the class is found in its MRO (click's own is kept
    too: a command may still raise it)."""
    import click

    found = [cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException"]
    return tuple(dict.fromkeys([*found, click.ClickException]))


def _wants_json(args: list[str]) -> bool:
    """Whether this command line asked for --json (before a `--`, after which words are llama-server's)."""
    args = list(args)
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _json_error(message: str, hint: str | None, exit_code: int, details: list[str] | None = None) -> None:
    """The error as JSON on stdout, where a program that asked for --json reads (people still get
    the paragraph on stderr)."""
    import json

    typer.echo(json.dumps({"error": message, "hint": hint, "exit_code": exit_code, "details": details or []}))


def _for_terminal(text: str) -> str:
    """An error paragraph wrapped at words to the terminal's width (continuation lines indented), so a
    terminal never breaks a number or a path in two; unchanged when stderr is not a terminal."""
    import shutil
    import textwrap

    if not sys.stderr.isatty():
        return text
    width = shutil.get_terminal_size().columns
    return "\n".join(
        wrapped
        for line in text.splitlines()
        for wrapped in (
            textwrap.wrap(line, width, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False) or [""]
        )
    )


def run(argv: list[str] | None = None, warm=None) -> None:  # noqa: ANN001 - services.serve.warm_start.WarmStart
    """Console entry point: the only place that turns an LlmtpError into an exit code. `warm`: the
    entry point's warm start, handed to the commands as typer's context object (`serve` uses it).

    A usage error (unknown command or option, missing argument, bad value; also a bare `llmtp` or
    command group, which prints its help) exits 2 with typer's own usage message, as click does.
    """
    as_json = _wants_json(sys.argv[1:] if argv is None else argv)
    try:
        # Without standalone mode click returns a typer.Exit's code instead of raising it
        # (verify's verdict codes travel this way).
        rc = app(args=argv, standalone_mode=False, obj=warm)
    except LlmtpError as exc:
        if as_json:
            _json_error(exc.message, exc.hint, exc.exit_code, exc.details)
        typer.echo(_for_terminal(f"error: {exc.render()}"), err=True)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a data directory that cannot be written: a named error, never a traceback
        from llmtp.errors import StorageError

        err = StorageError.from_os_error(exc)
        if err is None:
            raise
        if as_json:
            _json_error(err.message, err.hint, err.exit_code)
        typer.echo(_for_terminal(f"error: {err.render()}"), err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        if as_json:
            _json_error("interrupted", None, 130)
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        if as_json:
            _json_error("aborted", None, 1)
        typer.echo("aborted", err=True)
        sys.exit(1)
    except _click_exceptions() as exc:  # usage errors arrive here with standalone_mode=False
        if as_json:
            ctx = getattr(exc, "ctx", None)
            where = f"`{ctx.command_path} --help`" if ctx is not None else "`llmtp --help`"
            _json_error(exc.format_message(), f"See {where}.", exc.exit_code)
        exc.show()
        sys.exit(exc.exit_code)
    if isinstance(rc, int) and not isinstance(rc, bool) and rc != 0:
        sys.exit(rc)
