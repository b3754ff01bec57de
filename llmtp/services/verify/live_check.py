"""The live MTP check while serving: feed llama-server's timing lines to core.live, tell the supervisor
log when MTP starts or stops losing, and add the verdict to `llmtp status`. It never restarts a server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from llmtp.adapters import files
from llmtp.adapters.files import LogFollower
from llmtp.core.baseline import Baseline
from llmtp.core.live import WINDOW, LiveMtp, RollingMtp, assess
from llmtp.core.metrics import requests
from llmtp.errors import LlmtpError
from llmtp.services.serve.status import instance_log
from llmtp.services.stores import mtp_settings
from llmtp.services.verify import baselines as store

log = logging.getLogger("llmtp.serve")


def break_even_for(settings, model_path: str) -> float | None:
    """The break-even acceptance tune stored for this model file, else the one its newest passing verify
    stored; None when neither measured it (or the records cannot be read: the check then says so
    instead of guessing)."""

    try:
        key = mtp_settings.model_key(Path(model_path))
        record = mtp_settings.load_record(settings, key)
    except (OSError, LlmtpError):
        return None
    if record is not None and record.break_even_acceptance is not None:
        return record.break_even_acceptance
    return _from_verify(settings, key)


def _from_verify(settings, model_key: str) -> float | None:
    """The newest verify baseline of this model file (any build profile or GPU) that has one."""

    found: list[Baseline] = []
    for path in files.glob(Path(settings.data_dir) / "baselines", "*.json"):
        try:
            b = store.load(settings, path.stem)
        except (OSError, LlmtpError):
            continue
        if b is not None and b.model_key == model_key and b.break_even_acceptance is not None:
            found.append(b)
    found.sort(key=lambda b: b.created or "")
    return found[-1].break_even_acceptance if found else None


def live_check_hook(settings, model_path: str, log_path: Path) -> Callable[[object], None]:
    """What the supervisor calls on its health ticks: read new timing lines, log state changes."""
    rolling = RollingMtp()
    follower = LogFollower(log_path)
    break_even = break_even_for(settings, model_path)
    last: list[str] = []

    def on_tick(_sup) -> None:
        try:
            rolling.add(requests(follower.read()))
            verdict = rolling.assess(break_even, model_path)
        except Exception as exc:  # advisory: a surprise here must never stop the supervision loop
            log.debug("live MTP check skipped: %s", exc)
            return
        if verdict.state == "losing" and last != ["losing"]:
            log.warning("%s; fix: `%s` (the server keeps running as it is)", verdict.detail, verdict.fix)
        elif verdict.state == "winning" and last == ["losing"]:
            log.info("MTP wins again: %s", verdict.detail)
        last[:] = [verdict.state]

    return on_tick


def status_live(settings, model_path: str, log_text: str) -> LiveMtp:
    """The same verdict for `llmtp status`, from the log tail it already reads."""

    return assess(requests(log_text)[-WINDOW:], break_even_for(settings, model_path), model_path)


def annotate(settings, entries: list[dict]) -> list[dict]:
    """`mtp_live` on each `status_report` entry (a dict, the same for the table and --json)."""

    for e in entries:
        if e.get("state") == "failed":
            continue  # services/stores/failed_servers.py gave it its own
        if e.get("kind") == "router":  # several models: each row of e["models"] has its own MTP figures
            e["mtp_live"] = {"state": "unknown", "detail": "a router: see each model's row", "fix": None}
            continue
        text = instance_log(e["log_path"], e.get("log_offset", 0))  # this server's requests, not a predecessor's
        e["mtp_live"] = status_live(settings, e["model"], text).model_dump(mode="json")
    return entries
