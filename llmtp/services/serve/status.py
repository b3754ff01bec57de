"""`llmtp status`: each live serve's record, what its server says now, its memory and how clients reach it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from llmtp.adapters.files import text_since
from llmtp.core.metrics import last_request
from llmtp.core.status_view import api_key_hint, drafts_enabled, instance_figures, instance_key, mtp_words
from llmtp.errors import ConfigError, NetworkError
from llmtp.services.serve.device_memory import device_bytes_from_log
from llmtp.services.serve.router import router_entry
from llmtp.services.serve.supervisor import read_api_key
from llmtp.services.serve.web_ui import addresses
from llmtp.services.stores import failed_servers

VramFn = Callable[[list[int]], dict]  # pids -> {pid: bytes or None}; adapters.nvml.process_vram


def status_report(
    state_dir: Path, on_note: Callable[[str], None] | None = None, vram: VramFn | None = None
) -> list[dict]:
    """One entry per live serve: the state file plus what the server says right now. Servers
    orphaned by an llmtp that died are stopped first (proven ones only), stale records dropped."""
    from llmtp.services.stores import serve_records as st

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
    from llmtp.services.stores.serve_records import ProcRecord

    if vram is None:
        from llmtp.adapters.nvml import process_vram as vram
    for e in entries:
        rec = e.get("server_proc")
        e["rss_bytes"] = None if rec is None else proctree.rss_bytes(ProcRecord.model_validate(rec).identity())
    children = {  # a router's models: its children, by the --alias the router gives each
        e["port"]: proctree.children_by_flag(ProcRecord.model_validate(e["server_proc"]).identity(), "--alias")
        for e in entries
        if e.get("kind") == "router" and e.get("server_proc")
    }
    for e in entries:
        for row in e.get("models", []) if e.get("kind") == "router" else []:
            row["server_pid"], row["rss_bytes"] = children.get(e["port"], {}).get(row["name"], (None, None))
    pids = [e["server_pid"] for e in entries if e["rss_bytes"] is not None]
    pids += [r["server_pid"] for e in entries for r in e.get("models", []) if r.get("server_pid")]
    seen = vram(pids) if pids else {}
    for e in entries:
        for row in e.get("models", []) if e.get("kind") == "router" else []:
            row["vram_bytes"] = seen.get(row["server_pid"]) if row["server_pid"] else None
    for e in entries:
        e["vram_bytes"] = seen.get(e["server_pid"]) if e["rss_bytes"] is not None else None
        # Vulkan / ROCm / Metal (no NVML): what the server's own load lines put on each device
        e["device_bytes"] = (
            device_bytes_from_log(Path(e["log_path"]))
            if e["vram_bytes"] is None and e["rss_bytes"] is not None and e.get("log_path")
            else None
        )


def _status_entries(state_dir: Path) -> list[dict]:
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.services.stores import serve_records as st

    out = []
    failures = {f.port: f for f in failed_servers.failures(state_dir)}
    for record in (r for r in st.all_states(state_dir) if r.kind != "worker"):  # workers: services/rpc/worker.py
        if record.state == "failed" and record.port in failures:
            continue  # a supervisor that has given up and is exiting: its failure record says why
        entry = record.model_dump()
        proc = record.server_proc
        # every figure below is this llama-server process's own: a restart starts them all from zero
        entry["instance"] = instance_key(proc.pid, proc.create_time) if proc is not None else None
        entry["uptime_s"] = round(time.time() - record.started_at, 1)
        entry["base_url"] = base_url_for(record.host, record.port)
        entry.update(client_endpoint(record.host, record.port, record.api_key_file, record.alias))
        entry["api_key_hint"] = api_key_hint(record.api_key_file is not None, record.api_key_file)
        entry.update(addresses(entry["base_url"], record.api_key_file))  # the web UI (services/serve/web_ui.py)
        if record.kind == "router":
            entry.update(dict.fromkeys(_FIGURES), mtp_enabled=None)
            out.append(router_entry(record, entry))
            continue
        # the last finished request, from llama-server's own timing lines in this instance's part of the log
        last = last_request(instance_log(record.log_path, record.log_offset))
        entry["last_request"] = (
            None
            if last is None
            else {
                "tokens": last.tokens,
                "tokens_per_second": last.tokens_per_second,
                "mtp_acceptance": last.mtp_acceptance,
            }
        )
        figures = None
        try:
            with LlamaClient(entry["base_url"], read_api_key(record.api_key_file), timeout=2) as c:
                figures = instance_figures(c.metrics())
        except (NetworkError, ConfigError, OSError):
            pass  # not ready, --metrics off, or the key refused: unknown stays None
        enabled = drafts_enabled(record.argv)
        entry["mtp_enabled"] = enabled
        entry["tokens_generated"] = figures.tokens if figures else None
        entry["tokens_per_second"] = figures.tokens_per_second if figures else None
        entry["mtp_drafted"] = figures.drafted if figures else None
        entry["mtp_accepted"] = figures.accepted if figures else None
        entry["mtp_acceptance"] = figures.mtp_acceptance if figures else None
        entry["mtp"] = mtp_words(enabled, entry["mtp_acceptance"])
        out.append(entry)
    served = {e["port"] for e in out}
    out += [failed_servers.status_entry(f) for f in failures.values() if f.port not in served]
    return sorted(out, key=lambda e: e["port"])


_FIGURES = ("last_request", "tokens_generated", "tokens_per_second", "mtp_drafted", "mtp_accepted", "mtp_acceptance")


def client_endpoint(host: str, port: int, api_key_file: str | None, alias: str | None) -> dict:
    """What an OpenAI client needs: the base URL (`.../v1`), whether it must send a key, the model name."""
    from llmtp.adapters.server_process import base_url_for

    return {
        "openai_base_url": base_url_for(host, port) + "/v1",
        "api_key_required": api_key_file is not None,
        "model_name": alias,
    }


def instance_log(log_path: str | Path, offset: int, max_bytes: int = 256 * 1024) -> str:
    """This llama-server instance's part of the log (from the offset recorded when it started; across a
    live rotation too): never an earlier server's last request or MTP window."""

    return text_since(Path(log_path), offset, max_bytes)
