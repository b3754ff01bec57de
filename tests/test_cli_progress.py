"""Compile progress: a line every 10% where there is no terminal (CI logs, pipes)."""

from __future__ import annotations

import io

from rich.console import Console

from llmtp.cli._out import CompileProgress


def test_without_a_terminal_progress_prints_a_line_per_decile():
    out = io.StringIO()
    progress = CompileProgress(Console(file=out, force_terminal=False, width=100))
    for done in range(217):
        progress.update(done, 216)
    progress.close()
    lines = out.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == [
        f"  compile {p}%" for p in (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)
    ]
    assert lines[-1].startswith("  compile 100% (216/216, ")


def test_unknown_total_prints_nothing():
    out = io.StringIO()
    progress = CompileProgress(Console(file=out, force_terminal=False))
    progress.update(None, None)
    progress.close()
    assert out.getvalue() == ""
