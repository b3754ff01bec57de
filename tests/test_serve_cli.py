"""`llmtp serve/status/stop/logs` and resolve_launch: safety checks, dry-run, signals, no orphans."""

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
from llmtp.core.launch import MtpSettings
from llmtp.core.launch_plan import LaunchRequest
from llmtp.core.plan_types import GiB, PlanHardware
from llmtp.core.probe import parse_help
from llmtp.errors import UsageError
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch
from llmtp.settings import load_settings

HELP = Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt"


def _caps() -> Capabilities:
    flags, enums = parse_help(HELP.read_text(encoding="utf-8"))
    return Capabilities(flags=flags, enums=enums)


@pytest.fixture
def model(tiny_models) -> Path:
    """A real tiny qwen35 MTP GGUF: the planner reads its header."""
    return tiny_models["agree"]


def _record(mtp):
    from llmtp.services.stores.mtp_settings import ModelSettingsRecord

    return ModelSettingsRecord(model_key="k", mtp=mtp)


def _prepare(model: Path, tuned=None, **kw):
    request = LaunchRequest(model=str(model), server="/bin/llama-server", **kw)
    deps = LaunchDeps(
        probe=lambda p: _caps(),
        hardware=PlanHardware(ram_bytes=8 * GiB, backend="cpu"),
        tune_record=lambda p: None if tuned is None else _record(tuned),
    )
    return resolve_launch(load_settings().settings, request, deps)


def test_prepare_defaults(model):
    p = _prepare(model)
    assert (p.spec.host, p.spec.port, p.spec.mtp.enabled, p.build_id) == ("127.0.0.1", 8080, True, None)
    assert p.ready_timeout_s == pytest.approx(60.0 + 20 * model.stat().st_size / 2**30)
    assert p.argv == tuple(p.argv_list) and p.argv[0] == "/bin/llama-server"


def test_non_loopback_needs_an_api_key_file(model, tmp_path):
    with pytest.raises(UsageError, match="Binding to 0.0.0.0 exposes the server"):
        _prepare(model, host="0.0.0.0")
    key = tmp_path / "key"
    key.write_text("# comment\nsecret\n")
    key.chmod(0o600)
    p = _prepare(model, host="0.0.0.0", api_key_file=str(key))
    assert p.spec.api_key_file == str(key) and p.notes == ()
    key.chmod(0o644)
    assert _prepare(model, host="0.0.0.0", api_key_file=str(key)).notes == (
        f"{key} is readable by other users; chmod 600 it",
    )


def test_empty_key_file_refused(model, tmp_path):
    key = tmp_path / "key"
    key.write_text("# nothing\n")
    with pytest.raises(UsageError, match="missing or holds no key"):
        _prepare(model, host="0.0.0.0", api_key_file=str(key))


def test_no_mtp_tuned_and_conflicts(model):
    assert not _prepare(model, no_mtp=True).spec.mtp.enabled
    assert _prepare(model, tuned=MtpSettings(enabled=True, n_max=2)).spec.mtp.n_max == 2
    # the user's draft settings win over tune's
    assert _prepare(model, tuned=MtpSettings(enabled=True, n_max=2), draft_n_max=5).spec.mtp.n_max == 5
    with pytest.raises(UsageError, match="-md conflicts with MTP"):
        _prepare(model, extra=("-md", "x.gguf"))
    # -lv 4 (buffer sizes for calibration) comes first; the user's pass-through follows as given
    assert _prepare(model, no_mtp=True, extra=("-md", "x.gguf")).spec.extra_args == ["-lv", "4", "-md", "x.gguf"]
    assert _prepare(model, extra=("-lv", "2")).spec.extra_args == ["-lv", "2"]


def test_no_build_is_a_clear_error():
    from llmtp.errors import ServeError

    with pytest.raises(ServeError, match="No llama.cpp build is installed yet"):
        resolve_launch(load_settings().settings, LaunchRequest(model="m"), LaunchDeps(current_build=lambda s: None))


def test_a_plan_is_frozen_and_its_variants_rebuild_argv(model):
    """Nothing edits a plan: a variant (verify's plain arm, a tune trial) is a new plan with its own argv."""
    import dataclasses

    p = _prepare(model)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.argv = ()  # type: ignore[misc]
    plain = p.plain()
    assert "--spec-type" in p.argv and "--spec-type" not in plain.argv
    assert p.spec.mtp.enabled  # the original is untouched
    assert [a for a in plain.argv if a not in ("--spec-type", "draft-mtp", "--spec-draft-n-max", "3")] == [
        a for a in p.argv if a not in ("--spec-type", "draft-mtp", "--spec-draft-n-max", "3")
    ]


def _exit(argv: list[str], capsys) -> tuple[int, str]:
    from llmtp.cli.main import run

    with pytest.raises(SystemExit) as exc:
        run(argv)
    out = capsys.readouterr()
    return exc.value.code, out.out + out.err


def test_llama_server_habits_get_the_llmtp_spelling(capsys):
    """-hf and -ngl (llama-server's) are answered with llmtp's way to say them; -c is --ctx, as for plan."""
    code, text = _exit(["serve", "-hf", "unsloth/Qwen3.6-27B-GGUF:Q4_K_M"], capsys)
    assert code == 2 and "`llmtp serve unsloth/Qwen3.6-27B-GGUF:Q4_K_M`" in text and "No such option" not in text
    code, text = _exit(["serve", "m.gguf", "-ngl", "99"], capsys)
    assert code == 2 and "--gpu-layers 99" in text
    code, text = _exit(["service", "install", "m.gguf", "-ngl", "all"], capsys)
    assert code == 2 and "--gpu-layers all" in text
    for command in (["serve"], ["service", "install"]):
        code, text = _exit([*command, "/nonexistent/m.gguf", "-c", "4096", "--dry-run"], capsys)
        assert "No such option" not in text and "No llama.cpp build" in text  # -c was taken; the build is next


# --- against the real binary ----------------------------------------------------------------------


@pytest.mark.llama
def test_dry_run_prints_the_command(llama_bin_dir, tiny_models):
    server = llama_bin_dir / "llama-server"
    r = CliRunner().invoke(
        app,
        [
            "serve",
            str(tiny_models["agree"]),
            "--server",
            str(server),
            "--port",
            "9001",
            "--ctx",
            "1024",
            "--dry-run",
            "--",
            "--jinja",
        ],
    )
    assert r.exit_code == 0, r.output
    *reasons, command = r.stdout.splitlines()
    assert command == (
        f"{server} -m {tiny_models['agree']} -a {tiny_models['agree'].stem} --host 127.0.0.1 --port 9001 -c 1024 -ctk f16 -ctv f16 "
        "-fa on -np 1 --spec-type draft-mtp --spec-draft-n-max 3 --metrics -lv 4 --jinja"
    )
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
    proc = subprocess.Popen(
        _llmtp(
            "serve",
            str(tiny_models["plain"]),
            "--server",
            str(llama_bin_dir / "llama-server"),
            "--port",
            str(port),
            "--foreground",
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
    r = subprocess.run(
        _llmtp(
            "serve",
            str(tiny_models["agree"]),
            "--server",
            str(llama_bin_dir / "llama-server"),
            "--port",
            port,
            "--ctx",
            "512",
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
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
