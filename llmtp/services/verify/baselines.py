"""The verify baseline store: one JSON file per (model, build profile, GPU) under data_dir/baselines."""

from __future__ import annotations

from pathlib import Path

from llmtp.adapters.files import read_json_store, write_json_atomic
from llmtp.core.baseline import Baseline


def _file(settings, key: str) -> Path:
    return Path(settings.data_dir) / "baselines" / f"{key}.json"


def load(settings, key: str) -> Baseline | None:
    return read_json_store(
        _file(settings, key), Baseline, what="verify baseline", hint="The next passing `llmtp verify` stores a new one."
    )


def save(settings, baseline: Baseline) -> Path:
    return write_json_atomic(_file(settings, baseline.key), baseline.model_dump(mode="json"))
