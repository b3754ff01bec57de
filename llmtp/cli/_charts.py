"""The terminal bar chart of a verify or tune result (core/report.py decides the bars), drawn with rich."""

from __future__ import annotations

WIDTH = 40  # columns of the longest bar
_STYLE = {"plain": "grey62", "mtp": "blue", "chosen": "green"}


def print_chart(con, groups) -> None:  # noqa: ANN001 - a rich Console, core.report.BarGroup list
    from rich.text import Text

    for g in groups:
        values = [b.value for b in g.bars if b.value is not None]
        top = max(values + [g.baseline or 0.0]) if values else 0.0
        con.print(Text(g.title, style="bold"))
        pad = max(len(b.label) for b in g.bars)
        for b in g.bars:
            line = Text(f"  {b.label:<{pad}} ")
            n = 0 if b.value is None or top <= 0 else max(1 if b.value > 0 else 0, round(b.value / top * WIDTH))
            line.append("█" * n, style=_STYLE.get(b.kind, "blue"))
            line.append(" " * (WIDTH - n) + f" {b.text}")
            con.print(line)
        if g.baseline is not None and top > 0:
            mark = round(g.baseline / top * WIDTH)
            con.print(Text(f"  {'':<{pad}} " + " " * max(0, mark - 1) + f"| {g.baseline:.2f}x", style="red"))
        if g.note:
            con.print(Text(f"  {g.note}", style="dim"))


def html_target(path: str | None):  # noqa: ANN201 - Path | None
    """--html FILE checked before minutes of measuring: its folder exists and it is not a folder itself."""
    if path is None:
        return None
    from pathlib import Path

    from llmtp.errors import UsageError

    target = Path(path).expanduser()
    if target.is_dir():
        raise UsageError(f"--html {path} is a folder", "Name a file, e.g. `--html report.html`.")
    if not target.parent.is_dir():
        raise UsageError(
            f"--html {path}: the folder {target.parent} does not exist",
            "Create it first, or name a file in an existing folder.",
        )
    return target


def write_html(target, report) -> None:  # noqa: ANN001 - Path, core.report.Report
    from llmtp.adapters.files import write_text_atomic
    from llmtp.core.report import render_html

    write_text_atomic(target, render_html(report))
