"""Printing `llmtp logs`: the whole log as written (--raw) or core/logview's digest with absolute times."""

from __future__ import annotations

import time
from pathlib import Path

import typer


def stamp(at: float | None) -> str:
    # a line whose time is unknown (before llmtp marked a start) gets a blank stamp, never an invented one
    return " " * 19 if at is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


_LABEL = {"error": "ERROR ", "warning": "WARN  ", "info": "      ", "request": "      "}


def _show(shown, width: int) -> None:  # noqa: ANN001 - core.logview.Shown
    """One digest line; in a terminal, wrapped at words under its text (a pipe gets it whole)."""
    from llmtp.cli._out import wrap

    line = f"{stamp(shown.at)} {_LABEL[shown.level]}{shown.text}"
    typer.echo("\n".join(wrap(line, width, indent=26)))


def show_log(state_dir: Path, port: int, *, lines: int, follow: bool, raw: bool, only: str | None = None) -> None:
    """`only`: one model of a router (the digest's lines of that model; --raw: its child's lines)."""
    from llmtp.adapters.files import replaced_under
    from llmtp.core.logview import LogView
    from llmtp.errors import UsageError
    from llmtp.services.stores import serve_records as st

    path = st.log_path(state_dir, port)
    if not path.is_file():
        raise UsageError(f"No server log at {path}", "Start a server with `llmtp serve MODEL` first.")
    from llmtp.cli._out import console

    view = LogView()
    width = console().width
    mine = view.only(only) if only is not None else (lambda s: True)
    raw_mine = view.raw_only(only) if only is not None else (lambda line: True)

    def emit(line: str) -> None:
        if raw:
            if raw_mine(line):
                typer.echo(line, nl=False)
            return
        for s in view.feed(line):
            if mine(s):
                _show(s, width)

    f = open(path, encoding="utf-8", errors="replace")
    try:
        whole = f.readlines()
        if raw:
            whole = [line for line in whole if raw_mine(line)]
            for line in whole[len(whole) - lines :]:  # not [-lines:]: -n 0 means none, not all
                typer.echo(line, nl=False)
        else:
            digest = [s for line in whole for s in view.feed(line) if mine(s)]
            for s in digest[len(digest) - lines :]:
                _show(s, width)
        while follow:
            line = f.readline()
            if line:
                emit(line)
                continue
            time.sleep(0.2)
            if replaced_under(path, f):  # rotated: truncated live, or renamed at a restart
                f.close()
                f = open(path, encoding="utf-8", errors="replace")
    finally:
        f.close()
