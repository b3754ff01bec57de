"""Edit one top-level key of a config.toml's text, keeping every other line (comments included)."""

from __future__ import annotations

import json
import re


def set_top_level_key(text: str, key: str, value: str) -> str:
    """`text` with `key = "value"` at the top level: an existing top-level line replaced in place, else
    added before the first table. Only string values (a basic TOML string, as JSON writes one)."""
    line = f"{key} = {json.dumps(value)}"
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    lines = text.splitlines()
    first_table = next((i for i, ln in enumerate(lines) if ln.lstrip().startswith("[")), len(lines))
    for i in range(first_table):
        if pattern.match(lines[i]):
            lines[i] = line
            return "\n".join(lines) + "\n"
    lines.insert(first_table, line)
    return "\n".join(lines) + "\n"
