"""Rendering helpers shared by the command modules: JSON for programs, rich for people."""

from __future__ import annotations

import json
from typing import Any


def emit_json(data: Any) -> None:
    """Print `data` (pydantic models, dataclasses, paths welcome) as indented JSON on stdout."""
    import typer

    typer.echo(json.dumps(to_jsonable(data), indent=2, sort_keys=False))


def to_jsonable(data: Any) -> Any:
    from dataclasses import asdict, is_dataclass
    from pathlib import Path

    if hasattr(data, "model_dump"):
        return to_jsonable(data.model_dump(mode="json"))
    if is_dataclass(data) and not isinstance(data, type):
        return to_jsonable(asdict(data))
    if isinstance(data, dict):
        return {str(k): to_jsonable(v) for k, v in data.items()}
    if isinstance(data, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in data]
    if isinstance(data, Path):
        return str(data)
    return data


# Width of a console that is not a terminal (a pipe, a file, CI): wide enough that a table never cuts
# a model name or a path for `grep` and `awk`; rich would otherwise assume 80 columns.
PIPE_WIDTH = 1000


def console(stderr: bool = False, markup: bool = True):
    """A rich console for people. markup=False for output that is all data (names, paths, notes), which
    may hold brackets: `[default]` would otherwise be read as a style and vanish. Where a line mixes
    llmtp's own markup with data, the data goes through `esc`."""
    from rich.console import Console

    con = Console(stderr=stderr, highlight=False, soft_wrap=True, markup=markup)
    if not con.is_terminal:
        con = Console(stderr=stderr, highlight=False, soft_wrap=True, markup=markup, width=PIPE_WIDTH)
    return con


def esc(value: object) -> str:
    """`value` as text that rich prints as written, inside a line that carries markup."""
    from rich.markup import escape

    return escape(str(value))


class _PlainTable:
    """A rich Table whose cells are data, never markup: `[default]` in a name prints as written."""

    def __init__(self, *columns: str, **kwargs):
        from rich.table import Table

        self.table = Table(*columns, **kwargs)

    def add_row(self, *cells) -> None:
        from rich.text import Text

        self.table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))

    def __rich__(self):
        return self.table


def table(*columns: str, **kwargs) -> _PlainTable:
    """A table for data (see _PlainTable); rendered with console().print(...)."""
    return _PlainTable(*columns, **kwargs)


def human_bytes(n: int | float | None) -> str:
    if n is None:
        return "unknown"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class CompileProgress:
    """The compile phase of a build, fed by its [n/N] lines: a bar on a terminal, and elsewhere (CI logs,
    pipes) a line every 10%, so a seven-minute compile is never silent."""

    def __init__(self, con, label: str = "compile"):
        self.con, self.label = con, label
        self.bar = self.task = None
        self.last_decile = -1
        self.started = None

    def update(self, done: int | None, total: int | None) -> None:
        import time

        if self.started is None:
            self.started = time.monotonic()
        if self.con.is_terminal:
            if self.bar is None:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                self.bar = Progress(TextColumn(f"  {self.label}"), BarColumn(), MofNCompleteColumn(),
                                    TimeElapsedColumn(), console=self.con, transient=True)
                self.bar.start()
                self.task = self.bar.add_task(self.label, total=None)
            if total:
                self.bar.update(self.task, completed=done or 0, total=total)
            return
        if total and done is not None and done * 10 // total > self.last_decile:
            self.last_decile = done * 10 // total
            elapsed = time.monotonic() - self.started
            self.con.print(f"  {self.label} {done * 100 // total}% ({done}/{total}, {elapsed:.0f} s)")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
