"""Capabilities of a llama-server outside llmtp's builds (`--server`), probed once per (path, size, mtime) and
cached under the cache dir: probing runs the binary three times, which a serve must not pay on every start."""

from __future__ import annotations

import hashlib
from pathlib import Path

from llmtp.adapters import files
from llmtp.adapters.files import executable_file, read_json_cache, write_text_atomic
from llmtp.adapters.runner import SubprocessRunner
from llmtp.core.capabilities import Capabilities
from llmtp.services.build.installed import probe_binary


def cached_capabilities(server: Path, cache_dir: Path | None) -> Capabilities:
    """Capabilities of a --server binary, probed once per (path, size, mtime): probing runs the
    binary three times, which `llmtp serve` must not pay on every start."""

    server = executable_file(Path(server), option="--server")  # a clear error, not an OSError from exec
    cache = None
    try:
        st = files.stat(server.resolve())
        ident = f"{server.resolve()}|{st.st_size}|{st.st_mtime_ns}"
        cache = Path(cache_dir) / "capabilities" / (hashlib.sha256(ident.encode()).hexdigest()[:24] + ".json")
    except (OSError, TypeError):  # TypeError: no cache dir
        pass
    else:
        cached = read_json_cache(cache, Capabilities)
        if cached is not None:
            return cached
    caps = probe_binary(server.parent, SubprocessRunner(), server)
    if cache is not None and caps.flags:  # a failed probe (no flags) is never cached
        try:
            write_text_atomic(cache, caps.model_dump_json())  # serves read it concurrently
        except OSError:
            pass
    return caps
