"""`llmtp setup`'s progress file (data_dir/setup.json): each finished step's inputs and result, and the last failure."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from llmtp.adapters.files import read_json_store, write_json_atomic

SCHEMA = 1


def state_path(settings) -> Path:
    return Path(settings.data_dir) / "setup.json"


def load_state(settings) -> dict[str, Any]:
    """Setup's progress. None stored yet: a fresh one. A damaged file is a ConfigError (moved aside);
    a well-formed one from another layout version is redone, never trusted."""
    data = read_json_store(
        state_path(settings),
        dict[str, Any],
        default=None,
        what="setup progress file",
        hint="Run `llmtp setup` again; it starts over from the first step.",
    )
    if data is None or data.get("schema") != SCHEMA or not isinstance(data.get("steps", {}), dict):
        return {"schema": SCHEMA, "steps": {}}
    data.setdefault("steps", {})
    return data


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class SetupState:
    """The progress of one run: a step is recorded only once it succeeded, with the inputs it ran on;
    a later run reuses a result only while those inputs still hold."""

    def __init__(self, settings):
        self.settings = settings
        self.data = load_state(settings)

    @property
    def path(self) -> Path:
        return state_path(self.settings)

    @property
    def failed(self) -> dict[str, Any] | None:
        return self.data.get("failed")

    def previous(self, name: str) -> dict[str, Any]:
        """The step's last recorded result, whatever its inputs ({} when none)."""
        return (self.data["steps"].get(name) or {}).get("result") or {}

    def recorded(self, name: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
        rec = self.data["steps"].get(name)
        return rec.get("result") if rec and rec.get("inputs") == inputs else None

    def record(self, name: str, inputs: dict[str, Any], result: dict[str, Any]) -> None:
        self.data["steps"][name] = {"inputs": inputs, "result": result, "finished_at": _now()}
        self.save()

    def fail(self, name: str, error: str) -> None:
        self.data["failed"] = {"step": name, "error": error, "at": _now()}
        self.save()

    def finish(self) -> None:
        """A run got through every step: forget the last failure (and write the file once at least)."""
        if self.data.pop("failed", None) is not None or not self.path.is_file():
            self.save()

    def save(self) -> None:
        write_json_atomic(self.path, self.data, sort_keys=True)
