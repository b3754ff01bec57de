"""Set or remove one top-level key of a TOML file's text, keeping every other line as the user wrote it
(comments, order, blank lines, tables). Pure text in, text out; the caller re-parses the result.

Only top-level `key = value` lines are touched, e.g.
  # my box
  port = 8081   # the usual one
A key inside a [table], a multi-line value or a dotted key is never edited: `edit_line` says so and the
caller refuses rather than guess.
"""

from __future__ import annotations

import json
import math
import re

_TABLE = re.compile(r"^\s*\[")


def _key_line(key: str) -> re.Pattern[str]:
    return re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\"|'{re.escape(key)}')\s*=")


def toml_value(value: object) -> str:
    """A Python value (str, bool, int, float) as a TOML value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{value} has no place in a settings file")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a TOML basic string: JSON's escapes are TOML's
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _top_level_end(lines: list[str]) -> int:
    """Index of the first [table] header (top-level keys must stay above it), else len(lines)."""
    return next((i for i, line in enumerate(lines) if _TABLE.match(line)), len(lines))


def set_key(text: str, key: str, value: object) -> str:
    """`text` with `key = value` at the top level: the existing line replaced (its trailing comment kept),
    else a new line after the last top-level line."""
    lines = text.splitlines()
    end = _top_level_end(lines)
    new = f"{key} = {toml_value(value)}"
    pattern = _key_line(key)
    for i in range(end):
        if pattern.match(lines[i]):
            comment = re.search(r"\s+#[^\"']*$", lines[i])
            lines[i] = new + (comment.group(0) if comment else "")
            return "\n".join(lines) + "\n"
    at = end
    while at > 0 and not lines[at - 1].strip():
        at -= 1  # keep the blank line(s) before a table
    lines.insert(at, new)
    return "\n".join(lines) + "\n"


def unset_key(text: str, key: str) -> tuple[str, bool]:
    """`text` without the top-level `key` line; False when it was not there."""
    lines = text.splitlines()
    end = _top_level_end(lines)
    pattern = _key_line(key)
    for i in range(end):
        if pattern.match(lines[i]):
            del lines[i]
            return ("\n".join(lines) + "\n") if lines else "", True
    return text, False
