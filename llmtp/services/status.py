"""`llmtp status`: each live serve's record, what its server says now, its memory and how clients reach it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from llmtp.errors import ConfigError, NetworkError
from llmtp.services.supervisor import read_api_key


VramFn = Callable[[list[int]], dict]  # pids -> {pid: bytes or None}; adapters.nvml.process_vram


def status_report(state_dir: Path, on_note: Callable[[str], None] | None = None,
                  vram: VramFn | None = None) -> list[dict]:
    """One entry per live serve: the state file plus what the server says right now. Servers
    orphaned by an llmtp that died are stopped first (proven ones only), stale records dropped."""
    from llmtp.services import state as st

    for line in st.sweep(state_dir):
        if on_note is not None:
            on_note(line)
    entries = _status_entries(state_dir)
    _add_memory(entries, vram)
    return entries


def _add_memory(entries: list[dict], vram: VramFn | None) -> None:
    """`rss_bytes` of each llama-server (proven to be the recorded one) and `vram_bytes` where NVML
    sees its pid; None = unknown (gone, not proven, no NVIDIA driver, a CPU build)."""
    from llmtp.adapters import proctree
    from llmtp.services.state import ProcRecord

    if vram is None:
        from llmtp.adapters.nvml import process_vram as vram
    for e in entries:
        rec = e.get("server_proc")
        e["rss_bytes"] = None if rec is None else proctree.rss_bytes(ProcRecord.model_validate(rec).identity())
    pids = [e["server_pid"] for e in entries if e["rss_bytes"] is not None]
    seen = vram(pids) if pids else {}
    for e in entries:
        e["vram_bytes"] = seen.get(e["server_pid"]) if e["rss_bytes"] is not None else None


def _status_entries(state_dir: Path) -> list[dict]:
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.core.metrics import last_request, server_metrics
    from llmtp.services import state as st
    from llmtp.services.ui import addresses

    out = []
    for record in (r for r in st.all_states(state_dir) if r.kind != "worker"):  # workers: services/worker.py
        entry = record.model_dump()
        entry["uptime_s"] = round(time.time() - record.started_at, 1)
        entry["base_url"] = base_url_for(record.host, record.port)
        entry.update(client_endpoint(record.host, record.port, record.api_key_file, record.alias))
        entry.update(addresses(entry["base_url"], record.api_key_file))  # the web UI (services/ui.py)
        entry["tokens_per_second"] = entry["mtp_acceptance"] = None
        # the last finished request, from llama-server's own timing lines in its log
        last = last_request(read_log_tail(Path(record.log_path)))
        entry["last_request"] = None if last is None else {
            "tokens": last.tokens, "tokens_per_second": last.tokens_per_second,
            "mtp_acceptance": last.mtp_acceptance}
        try:
            with LlamaClient(entry["base_url"], read_api_key(record.api_key_file), timeout=2) as c:
                m = server_metrics(c.metrics())
            entry["tokens_per_second"] = m.predicted_tokens_per_second
            entry["mtp_acceptance"] = m.mtp_acceptance
        except (NetworkError, ConfigError, OSError):
            pass  # not ready, --metrics off, or the key refused: unknown stays None
        out.append(entry)
    return out


def client_endpoint(host: str, port: int, api_key_file: str | None, alias: str | None) -> dict:
    """What an OpenAI client needs: the base URL (`.../v1`), whether it must send a key, the model name."""
    from llmtp.adapters.server_process import base_url_for

    return {"openai_base_url": base_url_for(host, port) + "/v1", "api_key_required": api_key_file is not None,
            "model_name": alias}


def read_log_tail(path: Path, max_bytes: int = 256 * 1024) -> str:
    """The last `max_bytes` of llama-server's log, reaching into the previous file (`.1`) when the log was
    rotated moments ago: the last finished request may sit just before the rotation."""
    from llmtp.adapters.files import tail_text

    text = tail_text(path, max_bytes)
    if len(text) < max_bytes:
        text = tail_text(path.with_name(path.name + ".1"), max_bytes - len(text)) + text
    return text
