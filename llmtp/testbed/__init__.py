"""The test bed: tiny deterministic GGUF models that exercise llama.cpp's MTP path for real, and the
pinned CPU build they run on. Tests and bench scripts share one cache so only the first run on a
machine pays for the build and the downloads."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """Where the test bed keeps its build, models and demo download across runs (never a test's LLMTP_HOME)."""
    override = os.environ.get("LLMTP_TESTBED_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llmtp")) / "testbed"
