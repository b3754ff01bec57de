"""The verify baseline store: one JSON file per (model, build profile, GPU) under data_dir/baselines."""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from llmtp.core.baseline import Baseline
from llmtp.errors import ConfigError
from llmtp.adapters.files import write_json_atomic


def _file(settings, key: str) -> Path:
    return Path(settings.data_dir) / "baselines" / f"{key}.json"


def load(settings, key: str) -> Baseline | None:
    path = _file(settings, key)
    if not path.is_file():
        return None
    try:
        return Baseline.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as exc:
        raise ConfigError(f"Cannot read the verify baseline {path}: {exc}",
                          "Delete it; the next passing `llmtp verify` stores a new one.") from exc


def save(settings, baseline: Baseline) -> Path:
    return write_json_atomic(_file(settings, baseline.key), baseline.model_dump(mode="json"))
