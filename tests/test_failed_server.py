"""A server whose supervisor gave up stays in `status` as failed, with the reason from its log, until
`llmtp stop` clears it; an unwritable data directory is a named error (exit 8) with the path, never a
traceback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app
from llmtp.errors import StorageError
from llmtp.services.stores import failed_servers


def _status() -> list[dict]:
    r = CliRunner().invoke(app, ["status", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_a_recorded_failure_shows_until_stop_clears_it(llmtp_home):
    from llmtp.settings import load_settings

    state_dir = load_settings().settings.state_dir
    state_dir.mkdir(parents=True, exist_ok=True)
    failed_servers.record_failure(
        state_dir,
        failed_servers.FailedServe(
            port=18099,
            host="127.0.0.1",
            model="/m/gone.gguf",
            alias="gone",
            log_path="/x/server-18099.log",
            reason="llama-server keeps failing (6 crashes within 300 s (limit 5))",
            details=["E gguf_init_from_file: failed to open GGUF file '/m/gone.gguf'"],
            restarts=5,
        ),
    )
    [e] = _status()
    assert (e["state"], e["port"], e["model_name"]) == ("failed", 18099, "gone")
    text = CliRunner().invoke(app, ["status"]).stdout
    assert "failed" in text and "failed to open GGUF file '/m/gone.gguf'" in text and "llmtp stop --port 18099" in text
    r = CliRunner().invoke(app, ["stop", "gone"])
    assert r.exit_code == 0 and "cleared" in r.stdout
    assert _status() == []
    assert CliRunner().invoke(app, ["status"]).stdout.strip() == "no server running"


def test_a_supervisor_giving_up_shows_its_reason_before_it_exits(llmtp_home):
    """The window CI once hit: the supervisor has given up (its record says "failed") and has not yet
    removed that record. The failure record is written first, and status shows it, reason and all."""
    from llmtp.services.stores import serve_records as st
    from llmtp.settings import load_settings

    state_dir = load_settings().settings.state_dir
    with st.PortClaim(state_dir, 18098) as claim:
        failed_servers.record_failure(
            state_dir,
            failed_servers.FailedServe(
                port=18098,
                host="127.0.0.1",
                model="/m/doomed.gguf",
                alias="doomed",
                log_path="/x/server-18098.log",
                reason="llama-server keeps failing (6 crashes within 300 s (limit 5)); last failure: exit 1",
                details=["E gguf_init_from_file: failed to open GGUF file '/m/doomed.gguf'"],
                restarts=5,
            ),
        )
        claim.write(
            st.ServeState(
                llmtp_pid=os.getpid(),
                host="127.0.0.1",
                port=18098,
                model="/m/doomed.gguf",
                state="failed",
                log_path="/x/server-18098.log",
            )
        )
        [e] = _status()
    assert e["state"] == "failed" and "keeps failing" in e["reason"], e
    assert e["details"] == ["E gguf_init_from_file: failed to open GGUF file '/m/doomed.gguf'"]


def test_stop_model_names_what_is_served_when_nothing_matches(llmtp_home):
    from llmtp.errors import UsageError

    r = CliRunner().invoke(app, ["stop", "no-such-model"])
    assert isinstance(r.exception, UsageError) and "No llmtp server serves 'no-such-model'" in r.exception.message


@pytest.mark.parametrize(
    "code, words",
    [(errno.EROFS, "read-only file system"), (errno.ENOSPC, "full disk"), (errno.EACCES, "permission denied")],
)
def test_unwritable_data_dir_is_a_named_error(code, words):
    err = StorageError.from_os_error(OSError(code, os.strerror(code), "/data/llmtp/state"))
    assert err is not None and "/data/llmtp/state" in err.message and words in err.message
    assert "LLMTP_HOME" in err.hint and err.exit_code == 8
    assert StorageError.from_os_error(OSError(errno.ECONNREFUSED, "refused")) is None


def test_data_dir_under_a_file_exits_8_without_traceback(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = {**os.environ, "LLMTP_HOME": str(blocker)}
    r = subprocess.run(
        [sys.executable, "-m", "llmtp", "config", "set", "port", "8081"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 8 and "Traceback" not in r.stderr, r.stderr
    assert str(blocker) in r.stderr and "has a file where a directory must be" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "llmtp", "config", "set", "port", "8081", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 8 and json.loads(r.stdout)["exit_code"] == 8


def test_sys_home_is_a_named_error(tmp_path):
    """/sys refuses mkdir even to root (a read-only kernel file system): the closest to a read-only home
    this machine offers in a test."""
    if not os.path.isdir("/sys/kernel"):
        pytest.skip("no /sys here")
    env = {**os.environ, "LLMTP_HOME": "/sys/llmtp-test-home"}
    r = subprocess.run(
        [sys.executable, "-m", "llmtp", "config", "set", "port", "8081"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 8 and "Traceback" not in r.stderr, r.stderr
    assert "/sys/llmtp-test-home" in r.stderr and "LLMTP_HOME" in r.stderr


@pytest.mark.llama
def test_supervisor_gives_up_and_status_keeps_the_reason(llama_bin_dir, tiny_models, tmp_path):
    model = tmp_path / "doomed.gguf"
    shutil.copy(tiny_models["plain"], model)
    port = free_port()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmtp",
            "serve",
            str(model),
            "--server",
            str(llama_bin_dir / "llama-server"),
            "--port",
            str(port),
            "--ctx",
            "512",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    try:
        model.unlink()  # seen: the model file deleted under a running server, which then died
        os.kill(started["server_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            entries = [e for e in _status() if e["port"] == port]
            if entries and entries[0]["state"] == "failed":
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"never failed: {entries}")
        [e] = entries
        assert "keeps failing" in e["reason"]
        assert any("doomed.gguf" in line for line in e["details"]), e["details"]
        text = CliRunner().invoke(app, ["status"]).stdout
        assert "failed" in text and "doomed.gguf" in text
    finally:
        r = CliRunner().invoke(app, ["stop", "--port", str(port)])
    assert f"cleared the failed server record(s) of port(s) {port}" in r.stdout
    assert [e for e in _status() if e["port"] == port] == []
