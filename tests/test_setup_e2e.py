"""`llmtp setup` end to end on the test bed: the real CPU llama-server and the tiny qwen35 MTP model.

Setup must find an installed build (compiling llama.cpp again would take ~13 minutes), so the test bed's
build is installed into the test's LLMTP_HOME first: its binaries are linked, its manifest is kept
(or, for a bare LLMTP_TEST_LLAMA_BIN_DIR, written from what the binary itself reports).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmtp.services.setup.flow import STEPS

pytestmark = pytest.mark.llama


def install_testbed_build(settings, bin_dir: Path):
    """Make the test bed's llama-server this LLMTP_HOME's current build, without compiling anything."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.build.installed import adopt

    return adopt(settings, bin_dir, SubprocessRunner())


def llmtp(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real command line, as a user types it (LLMTP_HOME is the test's own)."""
    return subprocess.run(
        [sys.executable, "-m", "llmtp", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_setup_reaches_a_verified_state_and_a_second_run_does_nothing(llama_bin_dir, tiny_models):
    from llmtp.services.build.installed import list_builds
    from llmtp.settings import load_settings

    settings = load_settings().settings
    build = install_testbed_build(settings, llama_bin_dir)
    from llmtp.services.build.pipeline import load_pin

    if build.manifest.build_number != load_pin().build:
        pytest.skip(f"the test bed build is b{build.manifest.build_number}, not the pinned build: setup would rebuild")
    args = [
        "setup",
        "--model",
        str(tiny_models["agree"]),
        "--yes",
        "--no-serve",
        "--json",
        "--profile",
        build.manifest.profile,
    ]  # the test bed's profile, whatever this machine detects

    first = llmtp(*args)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    steps = {s["name"]: s for s in data["steps"]}
    assert data["changed"] is True
    assert steps["build"]["status"] == "unchanged" and steps["build"]["build_id"] == build.id  # reused
    assert steps["serve"]["status"] == "off"
    assert steps["verify"]["status"] == "done"
    v = steps["verify"]
    # The tiny agree model drafts perfectly, but it is so small that drafting costs more than it saves
    # on a CPU: verify measures that truthfully (pass or "slower"); either way MTP was really on.
    assert v["mtp_active"] is True and v["acceptance"] == 1.0, v["line"]
    assert v["verdict"] in (0, 13), v["line"]
    assert v["mtp_tok_s"] > 0 and v["plain_tok_s"] > 0
    assert v["line"].startswith("MTP on: " if v["verdict"] == 0 else "MTP on but slower than plain: ")
    verify_log = Path(settings.state_dir) / "verify" / "verify-mtp.log"
    stamp = verify_log.stat().st_mtime_ns

    second = llmtp(*args)
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["changed"] is False
    assert again["message"] == "already set up: nothing changed"
    assert again["skipped"] == list(STEPS)
    assert {s["name"]: s["line"] for s in again["steps"] if s["name"] == "verify"} == {
        "verify": steps["verify"]["line"]
    }
    assert verify_log.stat().st_mtime_ns == stamp  # no server was started to verify again
    assert [b.id for b in list_builds(settings)] == [build.id]  # nothing was built
