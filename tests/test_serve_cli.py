"""`llmtp serve/status/stop/logs` and prepare_launch: safety checks, dry-run, signals, no orphans."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.probe import parse_help
from llmtp.errors import UsageError
from llmtp.services.serve import Planned, prepare_launch
from llmtp.settings import load_settings

HELP = Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt"


def _caps() -> Capabilities:
    flags, enums = parse_help(HELP.read_text(encoding="utf-8"))
    return Capabilities(flags=flags, enums=enums)


def _prepare(tmp_path, **kw):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 100)

    def plan(settings, ref, *, host, port, request, caps):
        return Planned(LaunchSpec(model=str(model), host=host, port=port, mtp=MtpSettings(enabled=True), parallel=1))

    kw.setdefault("tuned", lambda p: None)
    return prepare_launch(load_settings().settings, "m", server=Path("/bin/llama-server"),
                          probe=lambda p: _caps(), plan=plan, **kw)


def test_prepare_defaults(tmp_path):
    p = _prepare(tmp_path)
    assert (p.spec.host, p.spec.port, p.spec.mtp.enabled, p.build_id) == ("127.0.0.1", 8080, True, None)
    assert p.ready_timeout_s == pytest.approx(60.0 + 20 * 104 / 2**30)


def test_non_loopback_needs_an_api_key_file(tmp_path):
    with pytest.raises(UsageError, match="Binding to 0.0.0.0 exposes the server"):
        _prepare(tmp_path, host="0.0.0.0")
    key = tmp_path / "key"
    key.write_text("# comment\nsecret\n")
    key.chmod(0o600)
    p = _prepare(tmp_path, host="0.0.0.0", api_key_file=str(key))
    assert p.spec.api_key_file == str(key) and p.notes == []
    key.chmod(0o644)
    assert p.notes == [] and _prepare(tmp_path, host="0.0.0.0", api_key_file=str(key)).notes == [
        f"{key} is readable by other users; chmod 600 it"]


def test_empty_key_file_refused(tmp_path):
    key = tmp_path / "key"
    key.write_text("# nothing\n")
    with pytest.raises(UsageError, match="missing or holds no key"):
        _prepare(tmp_path, host="0.0.0.0", api_key_file=str(key))


def test_no_mtp_tuned_and_conflicts(tmp_path):
    assert not _prepare(tmp_path, no_mtp=True).spec.mtp.enabled
    tuned = MtpSettings(enabled=True, n_max=2)
    assert _prepare(tmp_path, tuned=lambda p: tuned).spec.mtp.n_max == 2
    with pytest.raises(UsageError, match="-md conflicts with MTP"):
        _prepare(tmp_path, extra=["-md", "x.gguf"])
    # -lv 4 (buffer sizes for calibration) comes first; the user's pass-through follows as given
    assert _prepare(tmp_path, no_mtp=True, extra=["-md", "x.gguf"]).spec.extra_args == ["-lv", "4", "-md", "x.gguf"]
    assert _prepare(tmp_path, extra=["-lv", "2"]).spec.extra_args == ["-lv", "2"]


def test_no_build_is_a_clear_error(tmp_path):
    from llmtp.errors import ServeError

    with pytest.raises(ServeError, match="No llama.cpp build is installed yet"):
        prepare_launch(load_settings().settings, "m", current_build=lambda s: None)


# --- against the real binary ----------------------------------------------------------------------

@pytest.mark.llama
def test_dry_run_prints_the_command(llama_bin_dir, tiny_models):
    server = llama_bin_dir / "llama-server"
    r = CliRunner().invoke(app, ["serve", str(tiny_models["agree"]), "--server", str(server), "--port", "9001",
                                 "--ctx", "1024", "--dry-run", "--", "--jinja"])
    assert r.exit_code == 0, r.output
    *reasons, command = r.stdout.splitlines()
    assert command == (f"{server} -m {tiny_models['agree']} -a {tiny_models['agree'].stem} --host 127.0.0.1 --port 9001 -c 1024 -ctk f16 -ctv f16 "
                       "-fa on -np 1 --spec-type draft-mtp --spec-draft-n-max 3 --metrics -lv 4 --jinja")
    assert reasons[0] == "# ctx 1024: requested with --ctx"
    assert reasons[-2] == "# MTP draft-mtp, n-max 3: 1 nextn layer(s) in the file and qwen35 has an MTP graph upstream"


def _llmtp(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmtp", *args]


def _children_named(pid: int, name: str) -> list[psutil.Process]:
    try:
        return [c for c in psutil.Process(pid).children(recursive=True) if name in c.name()]
    except psutil.NoSuchProcess:
        return []


@pytest.mark.llama
def test_sigterm_to_llmtp_leaves_no_process(llama_bin_dir, tiny_models):
    port = free_port()
    proc = subprocess.Popen(_llmtp("serve", str(tiny_models["plain"]), "--server", str(llama_bin_dir / "llama-server"),
                                   "--port", str(port), "--foreground"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server_pids: list[int] = []
    try:
        for line in proc.stdout:
            if line.startswith("[ready]"):
                break
        else:
            pytest.fail("never ready")
        # llama-server runs in its own group/session but stays a child of llmtp
        server_pids = [c.pid for c in _children_named(proc.pid, "llama-server")]
        assert len(server_pids) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [p for p in server_pids if psutil.pid_exists(p)] == []


@pytest.mark.llama
def test_background_serve_status_logs_stop(llama_bin_dir, tiny_models):
    port = str(free_port())
    runner = CliRunner()
    r = subprocess.run(_llmtp("serve", str(tiny_models["agree"]), "--server", str(llama_bin_dir / "llama-server"),
                              "--port", port, "--ctx", "512", "--json"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    try:
        assert started["state"] == "ready"
        from llmtp.adapters.http import LlamaClient

        with LlamaClient(f"http://127.0.0.1:{port}") as c:
            out = c.completion("a b c", n_predict=8)
        assert out["timings"]["predicted_n"] == 8
        st = runner.invoke(app, ["status", "--json"])
        [entry] = json.loads(st.stdout)
        assert (entry["state"], entry["port"], entry["restarts"]) == ("ready", int(port), 0)
        assert entry["mtp_acceptance"] == 1.0  # the "agree" model's drafts are always accepted
        # the last request, from llama-server's own timing lines: this very completion
        last = entry["last_request"]
        assert last["tokens"] == 8 and last["tokens_per_second"] > 0 and last["mtp_acceptance"] == 1.0
        assert "100%" in runner.invoke(app, ["status"]).stdout
        lg = runner.invoke(app, ["logs", "--port", port, "-n", "5"])
        assert lg.exit_code == 0 and len(lg.stdout.splitlines()) == 5
    finally:
        stop = runner.invoke(app, ["stop", "--port", port])
    assert stop.stdout.strip() == f"stopped port(s) {port}"
    assert not psutil.pid_exists(started["server_pid"])
    assert runner.invoke(app, ["status"]).stdout.strip() == "no server running"
