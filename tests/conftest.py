"""Shared fixtures. Every test gets its own LLMTP_HOME; the real test bed (a CPU llama-server built
from the pinned source, and tiny GGUF models) is session-scoped and cached in the real user cache
dir (or LLMTP_TESTBED_CACHE) so only the first run on a machine pays for the build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def llmtp_home(tmp_path_factory, monkeypatch) -> Path:
    """Relocate every llmtp path, and drop LLMTP_* settings leaking in from the environment."""
    home = tmp_path_factory.mktemp("llmtp-home")
    for key in list(os.environ):
        if key.startswith("LLMTP_") and not key.startswith(("LLMTP_TEST", "LLMTP_TESTBED")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LLMTP_HOME", str(home))
    return home


def testbed_cache_dir() -> Path:
    """Where the test bed keeps its build and models across runs (never under a test's LLMTP_HOME)."""
    override = os.environ.get("LLMTP_TESTBED_CACHE")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_cache_dir("llmtp")) / "testbed"
