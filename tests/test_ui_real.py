"""The web UI for real: the test bed built with the npm UI by llmtp's build service (cached), its
manifest, the served page, `serve --no-ui`, and what `llmtp serve`/`status` print about it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from llama_server import llama_server

from llmtp.core.ui import looks_like_ui

pytestmark = [pytest.mark.llama, pytest.mark.slow]


def test_ui_build_manifest_records_the_npm_ui(llama_ui_build):
    if isinstance(llama_ui_build, Path):
        pytest.skip("LLMTP_TEST_LLAMA_UI_BIN_DIR: no llmtp manifest to check")
    m = llama_ui_build.manifest
    assert m.status == "ok"
    assert m.ui is not None and m.ui.embedded is True and m.ui.how == "npm" and m.ui.mode == "on"
    assert m.cmake_options["LLAMA_BUILD_UI"] == "ON" and m.cmake_options["LLAMA_USE_PREBUILT_UI"] == "OFF"
    assert not llama_ui_build.current  # the CPU test bed stays current
    from llmtp.testbed.build import testbed_inputs_hash

    assert m.inputs_hash != testbed_inputs_hash()


def test_ui_is_served_at_the_root_and_off_with_no_ui(llama_ui_bin_dir, tiny_models, tmp_path):
    with llama_server(llama_ui_bin_dir, tiny_models["agree"], tmp_path / "ui.log") as s:
        r = httpx.get(s.base_url + "/", timeout=30)  # httpx asks for gzip, as browsers do
        assert looks_like_ui(r.status_code, r.headers.get("content-type"), r.text), r.text[:300]
        assert "manifest.webmanifest" in r.text
    with llama_server(llama_ui_bin_dir, tiny_models["agree"], tmp_path / "off.log", ["--no-ui"]) as s:
        r = httpx.get(s.base_url + "/", timeout=30)
        assert not looks_like_ui(r.status_code, r.headers.get("content-type"), r.text)


def test_build_probe_sees_the_served_ui(llama_ui_bin_dir, llama_bin_dir):
    """The build's probe (services/ui.probe_served_ui): router mode with no model, GET /, stop."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.build.installed import probe_binary
    from llmtp.services.serve.web_ui import probe_served_ui

    ui_caps = probe_binary(llama_ui_bin_dir, SubprocessRunner())
    assert probe_served_ui(llama_ui_bin_dir / "llama-server", ui_caps) is True
    assert probe_served_ui(llama_bin_dir / "llama-server", probe_binary(llama_bin_dir, SubprocessRunner())) is False
    no_router = ui_caps.model_copy(update={"flags": [f for f in ui_caps.flags if f != "--models-dir"]})
    assert probe_served_ui(llama_ui_bin_dir / "llama-server", no_router) is None  # cannot tell: not checked


def test_test_bed_build_has_no_ui(llama_bin_dir, tiny_models, tmp_path):
    """docs/testing.md: the CPU test bed is built without the UI (fast for CI)."""
    with llama_server(llama_bin_dir, tiny_models["agree"], tmp_path / "s.log") as s:
        r = httpx.get(s.base_url + "/", timeout=30)
        assert not looks_like_ui(r.status_code, r.headers.get("content-type"), r.text)


def _llmtp(*args: str, env: dict, timeout: float = 120) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("llmtp")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_serve_and_status_print_the_ui_address(llama_ui_bin_dir, tiny_models, tmp_path):
    from llmtp.adapters.ports import free_port

    env = {**os.environ, "LLMTP_HOME": str(tmp_path / "home")}
    key = tmp_path / "key"
    key.write_text("sk-test-ui\n")
    key.chmod(0o600)
    port = free_port()
    server = str(llama_ui_bin_dir / "llama-server")
    base = f"http://127.0.0.1:{port}"
    r = _llmtp(
        "serve",
        str(tiny_models["agree"]),
        "--server",
        server,
        "--port",
        str(port),
        "--no-mtp",
        "--ctx",
        "512",
        "--api-key-file",
        str(key),
        env=env,
    )
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"  OpenAI base URL: {base}/v1\n" in r.stdout
        assert f"  web UI: {base}/ (it asks for the API key: paste a key from {key})\n" in r.stdout
        st = _llmtp("status", env=env)
        assert f"{base}/v1" in st.stdout and f"web UI: {base}/ (it asks for the API key)" in st.stdout, st.stdout
    finally:
        _llmtp("stop", env=env)
    port = free_port()
    r = _llmtp(
        "serve",
        str(tiny_models["agree"]),
        "--server",
        server,
        "--port",
        str(port),
        "--no-mtp",
        "--ctx",
        "512",
        "--no-ui",
        env=env,
    )
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        assert "  web UI: none" in r.stdout
    finally:
        _llmtp("stop", env=env)
