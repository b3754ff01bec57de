"""The web UI as a build option (core/ui.py, services/build/pipeline.py) and a serve switch: pure decisions on
captured upstream output, the CLI's one line, and the test bed's inputs hash left as it was."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.cli.main import app
from llmtp.core.argv import build_server_argv
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec
from llmtp.core.probe import parse_help
from llmtp.core.ui import (
    UiPlan,
    choose_ui,
    looks_like_ui,
    node_major,
    ui_cmake_options,
    ui_header_has_assets,
    ui_how_from_options,
    ui_log_lines,
    ui_record,
)
from llmtp.errors import UsageError

FIX = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    "bucket, node, npm, how",
    [
        (True, None, False, "prebuilt"),  # the bucket wins: no Node.js needed
        (True, 22, True, "prebuilt"),
        (False, 20, True, "npm"),
        (None, 22, True, "npm"),  # offline: the bucket is not asked
        (False, 18, True, None),  # too old for vite 7
        (False, 22, False, None),  # node without npm
        (False, None, False, None),
    ],
)
def test_choose_ui_auto(bucket, node, npm, how):
    plan = choose_ui("auto", bucket_ok=bucket, node_version=node, npm=npm)
    assert plan.how == how
    assert (plan.reason is None) == (how is not None)


def test_choose_ui_reasons_name_what_was_missing():
    assert choose_ui("auto", bucket_ok=False, node_version=None, npm=False).reason == (
        "the upstream prebuilt UI bucket (huggingface.co) did not answer and no Node.js on PATH"
    )
    assert choose_ui("auto", bucket_ok=None, node_version=18, npm=True).reason == (
        "the upstream prebuilt UI bucket was not asked (offline) and Node.js 18 is older than 20"
    )


def test_choose_ui_on_refuses_without_a_way_and_off_asks_nothing():
    with pytest.raises(UsageError, match="no way to get it: .*no Node.js on PATH") as e:
        choose_ui("on", bucket_ok=False, node_version=None, npm=False)
    assert "Node.js >= 20" in e.value.hint
    off = choose_ui("off", bucket_ok=True, node_version=22, npm=True)
    assert off.how is None and "turned off" in off.reason


def test_cmake_options_add_nothing_without_a_ui():
    assert ui_cmake_options(None) == {}
    assert ui_cmake_options("npm") == {"LLAMA_USE_PREBUILT_UI": "OFF", "LLAMA_BUILD_UI": "ON"}
    assert ui_cmake_options("prebuilt") == {"LLAMA_USE_PREBUILT_UI": "ON", "LLAMA_BUILD_UI": "OFF"}
    assert ui_how_from_options({"LLAMA_BUILD_UI": "ON", "LLAMA_USE_PREBUILT_UI": "OFF"}) == "npm"
    assert ui_how_from_options({"LLAMA_BUILD_UI": "OFF", "LLAMA_USE_PREBUILT_UI": "OFF"}) is None
    assert ui_how_from_options({}) is None


def test_node_version_parse():
    assert node_major("v20.20.2\n") == 20
    assert node_major("v8.17.0") == 8
    assert node_major("command not found") is None


def test_header_and_log_from_a_real_build_without_assets():
    # Captured from the test bed's CPU build tree (b11434, both UI options OFF).
    assert not ui_header_has_assets((FIX / "ui" / "ui-no-assets.h").read_text())
    assert ui_header_has_assets("#pragma once\n#define LLAMA_UI_HAS_ASSETS 1\n")
    lines = ui_log_lines((FIX / "ui" / "build-log-no-assets.txt").read_text())
    assert lines == ["UI: no assets available - building without an embedded UI.  In a", "UI: embedded 0 assets"]


def test_record_keeps_the_logs_words_when_a_planned_ui_did_not_come():
    rec = ui_record(UiPlan(mode="auto", how="npm"), False, ["UI: npm ci failed (1)", "UI: embedded 0 assets"])
    assert rec.embedded is False and rec.how is None
    assert "npm ci failed (1)" in rec.note
    ok = ui_record(UiPlan(mode="auto", how="npm"), True, ["UI: embedded 12 assets"])
    assert ok.embedded and ok.how == "npm" and ok.note is None


def test_looks_like_ui():
    assert looks_like_ui(200, "text/html; charset=utf-8", "<!doctype html><html lang=en>")
    assert not looks_like_ui(404, "text/plain", "File Not Found")
    assert not looks_like_ui(200, "application/json", '{"error": "<html"}')


def test_test_bed_inputs_hash_is_unchanged_by_the_ui():
    """The CPU test bed (ui off) and an `auto` build that found no way to a UI have the same inputs
    hash, and it is the one the test bed had before llmtp knew about the UI."""
    from llmtp.services.build.pipeline import load_pin, plan, provenance_options
    from llmtp.testbed.build import TESTBED_REQUEST, TESTBED_UI_PLAN, TESTBED_UI_REQUEST, testbed_inputs_hash

    pin = load_pin()
    prov = provenance_options(
        "pypi", pin.pypi.version, pin, is_git=False, commit=pin.git.commit, build_number=pin.build
    )
    none = choose_ui("auto", bucket_ok=False, node_version=None, npm=False)
    assert (
        plan(TESTBED_REQUEST, None, pin, provenance=prov, ui=none).options
        == plan(TESTBED_REQUEST, None, pin, provenance=prov).options
    )
    assert plan(TESTBED_REQUEST, None, pin, provenance=prov).options["LLAMA_BUILD_UI"] == "OFF"
    assert testbed_inputs_hash(TESTBED_UI_REQUEST, TESTBED_UI_PLAN) != testbed_inputs_hash()
    assert TESTBED_REQUEST.ui == "off"


@pytest.fixture
def no_bucket(monkeypatch):
    import llmtp.adapters.http as http

    asked = []
    monkeypatch.setattr(http, "url_answers", lambda url, timeout: asked.append(url) or False)
    return asked


def _path_without_node(tmp_path: Path) -> str:
    """A PATH holding everything of this one but node and npm (the "no Node.js on PATH" machine)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for name in os.listdir(d):
            src = os.path.join(d, name)
            if name in ("node", "npm", "nodejs") or (bin_dir / name).exists() or not os.access(src, os.X_OK):
                continue
            (bin_dir / name).symlink_to(src)
    return str(bin_dir)


def test_cli_dry_run_without_node_builds_no_ui_and_says_why(tmp_path, monkeypatch, no_bucket):
    monkeypatch.setenv("PATH", _path_without_node(tmp_path))
    r = CliRunner().invoke(app, ["build", "--source", "pypi", "--profile", "cpu", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert no_bucket and "huggingface.co/buckets/ggml-org/llama-ui/resolve/b11434/" in no_bucket[0]
    assert "-DLLAMA_BUILD_UI=OFF" in r.output and "-DLLAMA_USE_PREBUILT_UI=OFF" in r.output
    assert (
        "web UI: none, the upstream prebuilt UI bucket (huggingface.co) did not answer and no Node.js on "
        "PATH. For the UI: install Node.js >= 20"
    ) in r.output
    r = CliRunner().invoke(app, ["build", "--source", "pypi", "--profile", "cpu", "--dry-run", "--ui"])
    assert isinstance(r.exception, UsageError)  # cli/main.py maps it to exit 2
    assert "--ui asked for the web UI but there is no way to get it" in str(r.exception)


@pytest.mark.skipif(not __import__("shutil").which("npm"), reason="no npm on PATH")
def test_cli_dry_run_with_node_plans_the_npm_build(no_bucket):
    r = CliRunner().invoke(app, ["build", "--source", "pypi", "--profile", "cpu", "--dry-run", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output[r.output.index("{") :])
    assert data["ui"]["how"] == "npm"
    assert data["cmake_options"]["LLAMA_BUILD_UI"] == "ON"


def test_offline_does_not_ask_the_bucket(monkeypatch, no_bucket):
    monkeypatch.setenv("LLMTP_OFFLINE", "1")
    r = CliRunner().invoke(app, ["build", "--source", "pypi", "--profile", "cpu", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert no_bucket == []


def test_build_ui_setting_off(monkeypatch, no_bucket):
    monkeypatch.setenv("LLMTP_BUILD_UI", "off")
    r = CliRunner().invoke(app, ["build", "--source", "pypi", "--profile", "cpu", "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "web UI: none, turned off" in r.output and no_bucket == []


def test_serve_no_ui_maps_to_llama_servers_own_flag():
    flags, enums = parse_help((FIX / "llama" / "b11434-cpu" / "server-help.txt").read_text())
    caps = Capabilities(flags=flags, enums=enums)
    spec = LaunchSpec(model="/m.gguf", port=8080)
    assert "--no-ui" not in build_server_argv("llama-server", caps, spec)
    assert build_server_argv("llama-server", caps, spec.model_copy(update={"ui": False}))[-1] == "--no-ui"
    # an old binary knows only the old spelling
    old = caps.model_copy(update={"flags": [f for f in caps.flags if f != "--no-ui"]})
    assert "--no-webui" in build_server_argv("llama-server", old, spec.model_copy(update={"ui": False}))


def test_address_lines():
    from llmtp.core.ui import address_lines

    with_ui = {
        "openai_base_url": "http://127.0.0.1:8080/v1",
        "ui_url": "http://127.0.0.1:8080/",
        "ui_asks_for_key": True,
    }
    assert address_lines(with_ui, "/k") == [
        "OpenAI base URL: http://127.0.0.1:8080/v1",
        "web UI: http://127.0.0.1:8080/ (it asks for the API key: paste a key from /k)",
    ]
    assert address_lines(with_ui | {"ui_url": None, "ui_asks_for_key": False})[1].startswith("web UI: none")


def test_setup_serve_step_names_the_addresses():
    from llmtp.cli._setup_text import _address_text, summary
    from llmtp.services.setup.flow import StepResult, _addresses

    assert _address_text({"url": "http://127.0.0.1:8080"}) == ""  # a server that was not asked (fake deps)
    text = _address_text(
        {"openai_base_url": "http://127.0.0.1:8080/v1", "ui_url": "http://127.0.0.1:8080/", "ui_asks_for_key": False}
    )
    assert text == "; OpenAI base URL: http://127.0.0.1:8080/v1; web UI: http://127.0.0.1:8080/"
    # the serve step keeps the addresses in its data, and its line names them
    data = {
        "action": "started",
        "url": "http://127.0.0.1:8080",
        "pulled": False,
        **_addresses(
            {"openai_base_url": "http://127.0.0.1:8080/v1", "ui_url": None, "ui_asks_for_key": False, "pid": 1}
        ),
    }
    assert "pid" not in data and data["ui_url"] is None
    assert "OpenAI base URL: http://127.0.0.1:8080/v1" in summary(StepResult("serve", "done", data))
