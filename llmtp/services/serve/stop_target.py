"""Which served ports `llmtp stop MODEL` means: MODEL as a port, the served name (alias), the file name
(with or without .gguf) or the path of a running or failed server's model."""

from __future__ import annotations

from pathlib import Path

from llmtp.errors import UsageError
from llmtp.services.stores import failed_servers


def matches(ref: str, model_path: str, alias: str | None) -> bool:
    path = Path(model_path)
    return ref in {alias, path.name, path.stem, model_path} or (
        ("/" in ref or ref.endswith(".gguf")) and Path(ref).expanduser().resolve() == path.resolve()
    )


def ports_for(state_dir: Path, ref: str) -> list[int]:
    """The ports serving `ref`; a UsageError naming what is served when nothing matches."""
    from llmtp.services.stores import serve_records as st

    records = [r for r in st.all_states(state_dir) if r.kind != "worker"]
    gone = failed_servers.failures(state_dir)
    if ref.isdigit():
        port = int(ref)
        if any(r.port == port for r in records) or any(f.port == port for f in gone):
            return [port]
    found = sorted(
        {r.port for r in records if matches(ref, r.model, r.alias)}
        | {f.port for f in gone if matches(ref, f.model, f.alias)}
    )
    if found:
        return found
    served = ", ".join(f"{r.alias or Path(r.model).stem} (port {r.port})" for r in records) or "nothing"
    raise UsageError(
        f"No llmtp server serves {ref!r}; serving now: {served}",
        "Name a model as `llmtp status` shows it, or a port: `llmtp stop --port N`.",
    )
