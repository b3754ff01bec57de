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
    """A rich Table whose cells are data, never markup: `[default]` in a name prints as written.

    `whole`: columns a user types back (an alias, a port, a pid, a URL, a path). They are never cut
    nor wrapped: the other columns wrap at word boundaries, and where even that cannot fit the
    console's width the rows are printed one per block (`name` then `  column: value` lines) instead."""

    def __init__(self, *columns: str, whole: tuple[str, ...] = (), **kwargs):
        from rich import box
        from rich.table import Table

        self.columns, self.whole = list(columns), set(whole)
        self.rows: list[list] = []
        if whole:  # a rule under the header and two spaces between columns: no width spent on borders
            kwargs.setdefault("box", box.SIMPLE_HEAD)
            kwargs.update(pad_edge=False, show_edge=False, padding=(0, 1, 0, 0))
        self.table = Table(**kwargs)
        for c in columns:
            self.table.add_column(c, no_wrap=c in self.whole, overflow="fold")

    def add_row(self, *cells) -> None:
        from rich.text import Text

        self.rows.append([c if isinstance(c, str) else str(c) for c in cells])
        self.table.add_row(*(Text(c) if isinstance(c, str) else c for c in cells))

    def _min_widths(self) -> list[int]:
        """Each column's narrowest width: a `whole` column its longest cell, the others their longest word."""
        out = []
        for i, col in enumerate(self.columns):
            cells = [r[i] for r in self.rows if i < len(r)]
            if col in self.whole:
                out.append(max([len(col), *(len(c) for c in cells)]))
            else:
                out.append(max([*(len(w) for w in col.split()), *(len(w) for c in cells for w in c.split()), 1]))
        return out

    def _widths(self, width: int) -> list[int]:
        """Column widths within `width`: each column's natural width when all fit, else the narrowest
        widths plus the room left, shared by how much each column still wants."""
        mins = self._min_widths()
        maxs = [max([len(col), *(len(r[i]) for r in self.rows if i < len(r))]) for i, col in enumerate(self.columns)]
        room = width - 2 * (len(self.columns) - 1)
        if sum(maxs) <= room:
            return maxs
        extra, want = room - sum(mins), [mx - mn for mn, mx in zip(mins, maxs)]
        out = [mn + extra * w // max(sum(want), 1) for mn, w in zip(mins, want)]
        return out

    def fits(self, width: int) -> bool:
        """Whether the table fits `width` with every `whole` cell on one line and no word broken."""
        return sum(self._min_widths()) + 2 * (len(self.columns) - 1) <= width

    def __rich_console__(self, console, options):
        if not self.whole or self.fits(options.max_width):
            if self.whole:
                for column, w in zip(self.table.columns, self._widths(options.max_width)):
                    column.width = w
            # wrapped within the width even on a soft-wrapping console (console() is one: it must not
            # fold long paths in plain lines), where cells would otherwise never wrap
            yield from console.render(self.table, options.update(no_wrap=False, overflow="fold"))
            return
        from rich.text import Text

        # too narrow for one row per line: one block per row, nothing cut
        key = next(i for i, c in enumerate(self.columns) if c in self.whole)
        for row in self.rows:
            sub = not row[key]  # a row under the one before (a router's model): its block indented under it
            if not sub:
                yield Text(f"{self.columns[key]} {row[key]}", style="bold", no_wrap=True, overflow="ignore")
            for i, col in enumerate(self.columns):
                if sub and i < len(row) and row[i].strip():
                    yield Text(f"    {col}: {row[i].strip()}", no_wrap=col in self.whole, overflow="ignore")
                elif not sub and i != key and i < len(row):
                    # a value longer than the terminal (a deep path) stays one line: the terminal shows
                    # it wrapped, and a copy of it is the whole path
                    yield Text(f"  {col}: {row[i]}", no_wrap=col in self.whole, overflow="ignore")


def table(*columns: str, **kwargs) -> _PlainTable:
    """A table for data (see _PlainTable); rendered with console().print(...)."""
    return _PlainTable(*columns, **kwargs)


def say(text: str, indent: int = 2, stderr: bool = False, con=None) -> None:  # noqa: ANN001 - a rich Console
    """A paragraph for people, wrapped at word boundaries to the console's width (a pipe's is
    PIPE_WIDTH: one line), continuation lines indented by `indent`. Words longer than a line (a URL,
    a path) are never broken."""
    from rich.text import Text

    con = con or console(stderr=stderr)
    for line in wrap(text, con.width, indent):
        con.print(Text(line), soft_wrap=True)


def wrap(text: str, width: int, indent: int = 2) -> list[str]:
    """`text` wrapped at word boundaries to `width`, continuation lines indented; long words kept whole."""
    import textwrap

    return textwrap.wrap(
        text, width=width, subsequent_indent=" " * indent, break_long_words=False, break_on_hyphens=False
    ) or [""]


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

                self.bar = Progress(
                    TextColumn(f"  {self.label}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=self.con,
                    transient=True,
                )
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
