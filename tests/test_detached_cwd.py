"""A detached serve started from a directory that holds another `llmtp` package (another checkout, a folder
named so) supervises with the llmtp that started it: the child runs `python -P -m llmtp` (Python 3.11+), which
leaves the current directory off sys.path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app


@pytest.mark.llama
@pytest.mark.skipif(sys.version_info < (3, 11), reason="python -P is 3.11+")
def test_a_shadowing_llmtp_in_the_callers_directory_is_not_imported(llama_bin_dir, tiny_models, tmp_path):
    fake = tmp_path / "llmtp"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise SystemExit('the shadowing llmtp was imported')\n")
    (fake / "__main__.py").write_text("raise SystemExit('the shadowing llmtp was imported')\n")
    script = Path(sys.executable).parent / "llmtp"  # the console script: its own directory, not the cwd, on sys.path
    port = free_port()
    argv = [str(script), "serve", str(tiny_models["plain"]), "--server", str(llama_bin_dir / "llama-server")]
    r = subprocess.run(
        [*argv, "--port", str(port), "--ctx", "512", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    try:
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["state"] == "ready"
    finally:
        CliRunner().invoke(app, ["stop", "--port", str(port)])
