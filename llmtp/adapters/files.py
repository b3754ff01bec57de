"""Small file primitives every store shares: atomic writes and content hashes.

Atomic: write a temp file beside the target, then rename, so a crash never leaves half a record
for the next command to trip on.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from llmtp.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def write_text_atomic(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: Path, data: Any, *, sort_keys: bool = False) -> Path:
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=sort_keys))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_json_model(path: Path, model: type[M], *, what: str, hint: str) -> M | None:
    """The record stored at `path`, None when there is none; a ConfigError naming the file (and `hint`
    on what to do) when it is unreadable or does not validate."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise ConfigError(f"Cannot read the {what} {path}: {exc}", hint) from exc
