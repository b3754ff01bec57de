"""Per-model MTP settings chosen by `llmtp tune` and read by `llmtp serve`: JSON under data_dir.

The key names the file's content, not its path: the same GGUF moved or re-linked keeps its settings,
a re-quantized file with the same name does not inherit them.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from llmtp.adapters import files
from llmtp.adapters.files import read_json_store, write_json_atomic
from llmtp.core.launch import MtpSettings
from llmtp.core.tune_decision import SettingBreakEven

_EDGE = 1 << 20  # hashing a 15 GB file whole is too slow; the header and the tail identify it


def model_key(path: Path) -> str:
    """`<stem>-<size>-<sha256 of the first and last MiB, 12 hex>`."""
    path = Path(path)
    size, digest = files.edge_digest(path, _EDGE)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:80]
    return f"{stem}-{size}-{digest[:12]}"


class TuneFindings(BaseModel):
    """What the measurement behind a choice found (held-out figures from `llmtp tune`); the live check
    while serving compares served requests with break_even_acceptance."""

    build_id: str | None = None
    speedup: float | None = None
    acceptance: float | None = None
    break_even_acceptance: float | None = None
    plain_tokens_per_s: float | None = None
    workload: str | None = None  # the family `tune --workload` judged alone; None: every family
    family_break_even: dict[str, float] = Field(default_factory=dict)
    # the chosen setting, then each safer one (no n-gram drafts, ...) with its break-even: the serve guard's steps
    ladder: list[SettingBreakEven] = Field(default_factory=list)


class ModelSettingsRecord(TuneFindings):
    model_key: str
    mtp: MtpSettings
    reason: str | None = None  # why (e.g. "nothing beats plain decoding ...")
    source: str = "tune"
    updated: str | None = None


def _dir(settings) -> Path:
    return Path(settings.data_dir) / "model-settings"


def _file(settings, key: str) -> Path:
    return _dir(settings) / f"{key}.json"


def load_record(settings, model_key: str) -> ModelSettingsRecord | None:
    return read_json_store(
        _file(settings, model_key),
        ModelSettingsRecord,
        what="model settings",
        hint="Run `llmtp tune` again to store new settings.",
    )


def load(settings, model_key: str) -> MtpSettings | None:
    """The tuned MTP settings for this model, or None when it was never tuned."""
    record = load_record(settings, model_key)
    return record.mtp if record else None


def save(
    settings,
    model_key: str,
    mtp: MtpSettings,
    findings: TuneFindings | None = None,
    *,
    reason: str | None = None,
    source: str = "tune",
) -> Path:
    record = ModelSettingsRecord(
        model_key=model_key,
        mtp=mtp,
        reason=reason,
        source=source,
        updated=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(findings or TuneFindings()).model_dump(),
    )
    return write_json_atomic(_file(settings, model_key), record.model_dump(mode="json"))
