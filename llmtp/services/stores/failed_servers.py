"""Servers whose supervisor gave up: one small record per port that `status` shows (state "failed", the
reason from llama-server's log) until `llmtp stop` clears it or a new serve takes the port. Without it a
server that died vanished from `status` ("no server running") while the reason sat only in the log."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field

from llmtp.adapters import files
from llmtp.adapters.files import read_json_store, write_text_atomic
from llmtp.errors import ConfigError


class FailedServe(BaseModel):
    port: int
    host: str
    model: str
    alias: str | None = None
    reason: str  # the supervisor's verdict, e.g. "llama-server keeps failing (3 crashes in 60 s)"
    details: list[str] = Field(default_factory=list)  # the failure lines from llama-server's log
    log_path: str
    failed_at: float = Field(default_factory=time.time)
    restarts: int = 0


def failed_path(state_dir: Path, port: int) -> Path:
    return state_dir / f"failed-{port}.json"


def record_failure(state_dir: Path, failure: FailedServe) -> None:
    write_text_atomic(failed_path(state_dir, failure.port), failure.model_dump_json(indent=2))


def failures(state_dir: Path) -> list[FailedServe]:
    """Every recorded failure, by port; a damaged record is moved aside (read_json_store) and skipped."""

    out = []
    for path in sorted(files.glob(state_dir, "failed-*.json")):
        try:
            found = read_json_store(path, FailedServe, what="failed-server record", hint="It was moved aside.")
        except ConfigError:
            continue
        if found is not None:
            out.append(found)
    return sorted(out, key=lambda f: f.port)


def clear(state_dir: Path, ports: list[int] | None = None) -> list[int]:
    """Forget the failures of `ports` (all when None); returns the ports cleared."""
    cleared = []
    for f in failures(state_dir):
        if ports is None or f.port in ports:
            files.remove(failed_path(state_dir, f.port))
            cleared.append(f.port)
    return cleared


def status_entry(f: FailedServe) -> dict:
    """The failure as a `status` entry: the same keys as a live one, its figures unknown."""
    from llmtp.adapters.server_process import base_url_for

    return {
        "kind": "server",
        "state": "failed",
        "port": f.port,
        "host": f.host,
        "model": f.model,
        "alias": f.alias,
        "model_name": f.alias,
        "llmtp_pid": None,
        "server_pid": None,
        "instance": None,
        "uptime_s": None,
        "restarts": f.restarts,
        "build": None,
        "rpc": [],
        "reason": f.reason,
        "details": f.details,
        "failed_at": f.failed_at,
        "log_path": f.log_path,
        "base_url": base_url_for(f.host, f.port),
        "openai_base_url": None,
        "ui_url": None,
        "api_key_required": None,
        "api_key_hint": None,
        "tokens_per_second": None,
        "tokens_generated": None,
        "mtp_enabled": None,
        "mtp": "-",
        "mtp_acceptance": None,
        "mtp_drafted": None,
        "mtp_accepted": None,
        "last_request": None,
        "rss_bytes": None,
        "vram_bytes": None,
        "mtp_live": {"state": "unknown", "detail": "server failed", "fix": None},
    }
