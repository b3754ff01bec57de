"""`llmtp status` against a real llama-server: its figures are the server's own /metrics counters, per
server instance. A query, a crash-restart by the supervisor, another query, then a new serve: at each step
status says what /metrics says, and nothing of the previous instance (tok/s, last request, MTP window)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app
from llmtp.core.metrics import parse_prometheus

pytestmark = pytest.mark.llama


def _llmtp(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmtp", *args]


def _status() -> dict:
    r = CliRunner().invoke(app, ["status", "--json"])
    assert r.exit_code == 0, r.output
    [entry] = [e for e in json.loads(r.stdout) if e["kind"] == "server"]
    return entry


def _metrics(port: int) -> dict:
    return parse_prometheus(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text)


def _ask(port: int, n: int) -> dict:
    r = httpx.post(
        f"http://127.0.0.1:{port}/completion", json={"prompt": "a b c", "n_predict": n, "temperature": 0}, timeout=60
    )
    r.raise_for_status()
    return r.json()


def _agrees_with_metrics(entry: dict, port: int) -> dict:
    m = _metrics(port)
    tokens, seconds = m["llamacpp:tokens_predicted_total"], m["llamacpp:tokens_predicted_seconds_total"]
    assert entry["tokens_generated"] == int(tokens)
    if tokens:
        assert entry["tokens_per_second"] == pytest.approx(tokens / seconds, rel=1e-6)
    else:
        assert entry["tokens_per_second"] is None
    drafted = m.get("llamacpp:spec_decode_num_draft_tokens_total")
    assert entry["mtp_drafted"] == (None if drafted is None else int(drafted))
    return m


def _wait_ready_again(old_pid: int, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        e = _status()
        if e["state"] == "ready" and e["server_pid"] not in (None, old_pid):
            return e
        time.sleep(0.3)
    pytest.fail("the supervisor did not bring llama-server back")


def test_status_follows_metrics_per_instance_across_restarts(llama_bin_dir, tiny_models):
    port = free_port()
    serve = _llmtp(
        "serve",
        str(tiny_models["agree"]),
        "--server",
        str(llama_bin_dir / "llama-server"),
        "--port",
        str(port),
        "--ctx",
        "512",
        "--json",
    )
    r = subprocess.run(serve, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    try:
        fresh = _status()
        assert fresh["tokens_generated"] == 0 and fresh["tokens_per_second"] is None
        assert fresh["last_request"] is None and fresh["mtp"] == "no drafts yet" and fresh["mtp_enabled"]

        _ask(port, 8)
        first = _status()
        _agrees_with_metrics(first, port)
        assert first["tokens_generated"] == 8 and first["mtp"] == "100%"  # the agree model accepts every draft
        assert first["last_request"]["tokens"] == 8
        again = _status()  # reading /metrics again changes nothing (the old gauge read 0.0 here)
        assert again["tokens_per_second"] == first["tokens_per_second"]

        # llama-server dies; the supervisor restarts it: a new instance, counted from zero
        os.kill(first["server_pid"], signal.SIGKILL)
        second = _wait_ready_again(first["server_pid"])
        assert second["instance"] != first["instance"] and second["restarts"] == 1
        _agrees_with_metrics(second, port)
        assert second["tokens_generated"] == 0 and second["tokens_per_second"] is None
        assert second["last_request"] is None and second["mtp_live"]["requests"] == 0

        _ask(port, 5)
        after = _status()
        _agrees_with_metrics(after, port)
        assert after["tokens_generated"] == 5 and after["last_request"]["tokens"] == 5
        assert after["mtp_live"]["requests"] == 1

        # a new serve on the same port after `stop`: again nothing carried over
        assert CliRunner().invoke(app, ["stop", "--port", str(port)]).exit_code == 0
        r = subprocess.run(serve, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        third = _status()
        _agrees_with_metrics(third, port)
        assert third["last_request"] is None and third["tokens_generated"] == 0
        assert third["mtp_live"]["requests"] == 0

        # the people's view: one row, the URL once, MTP words
        text = CliRunner().invoke(app, ["status"]).stdout
        assert text.count(f"http://127.0.0.1:{port}/v1") == 1 and "no drafts yet" in text
        # logs: starts and requests with absolute times, no sampler dump
        logs = CliRunner().invoke(app, ["logs", "--port", str(port), "-n", "100"]).stdout
        today = time.strftime("%Y-%m-%d")
        assert [line for line in logs.splitlines() if "request" in line and "5 tokens" in line][0].startswith(today)
        assert logs.count("llama-server started") == 3 and "sampler" not in logs
        raw = CliRunner().invoke(app, ["logs", "--port", str(port), "--raw", "-n", "1000"]).stdout
        assert "sampler" in raw
    finally:
        CliRunner().invoke(app, ["stop", "--port", str(port)])


def test_mtp_off_says_off(llama_bin_dir, tiny_models):
    port = free_port()
    r = subprocess.run(
        _llmtp(
            "serve",
            str(tiny_models["agree"]),
            "--server",
            str(llama_bin_dir / "llama-server"),
            "--port",
            str(port),
            "--ctx",
            "512",
            "--no-mtp",
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    try:
        _ask(port, 4)
        e = _status()
        assert e["mtp"] == "off" and e["mtp_enabled"] is False
        _agrees_with_metrics(e, port)
    finally:
        CliRunner().invoke(app, ["stop", "--port", str(port)])
    assert not psutil.pid_exists(e["server_pid"])
