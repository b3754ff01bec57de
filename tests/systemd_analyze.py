"""`systemd-analyze` on a rendered unit, as the service and worker tests run it: `verify` for syntax and
`security --offline` for the exposure score. A private XDG_RUNTIME_DIR, so `--user` needs no session."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def analyze(args: list[str], user: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    return subprocess.run(
        ["systemd-analyze", *(["--user"] if user else []), *args], capture_output=True, text=True, env=env, timeout=120
    )


def verify(path: Path, user: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    return analyze(["verify", str(path)], user, tmp_path)


def exposure(path: Path, user: bool, tmp_path: Path) -> float:
    """The "Overall exposure level" systemd-analyze security gives the unit file (0 safe .. 10 exposed)."""
    r = analyze(["security", "--offline=true", str(path)], user, tmp_path)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    return float(m.group(1))


def skip_if_installed_in_private_tmp(result: subprocess.CompletedProcess) -> None:
    """A unit's PrivateTmp=yes hides /tmp and /var/tmp, so from a checkout there `install` refuses, rightly:
    check that it said why, then skip the test of the unit it would have written."""
    import sys

    if sys.prefix.startswith(("/tmp/", "/var/tmp/")):
        assert result.returncode == 2 and "PrivateTmp=yes" in result.stderr, result.stderr
        pytest.skip(
            f"llmtp runs from {sys.prefix}, under /tmp: a unit could not see it (install refused, as it "
            f"should); clone outside /tmp to test the unit"
        )
