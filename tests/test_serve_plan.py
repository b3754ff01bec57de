"""`llmtp serve MODEL` through the planner: alias/path/hf resolution, the planned flags, tuned MTP
settings, the not-downloaded error, and calibration recorded from llama-server's load log."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app
from llmtp.core.capabilities import Capabilities, Device
from llmtp.core.hardware import GPU
from llmtp.core.launch import MtpSettings
from llmtp.core.launch_plan import LaunchRequest
from llmtp.core.plan_types import GiB, MiB, PlanDevice, PlanHardware
from llmtp.core.probe import parse_help
from llmtp.errors import UsageError
from llmtp.services.models import pulls
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch
from llmtp.services.serve.plan import hardware_for_build
from llmtp.services.stores import calibration, mtp_settings
from llmtp.settings import load_settings

FIX = Path(__file__).parent / "fixtures"
HELP = FIX / "llama/b11434-cpu/server-help.txt"
LV4_LOG = FIX / "server-logs/b11434-cpu-tiny-agree-c2048-mtp-lv4.log"
SERVER = Path("/opt/llama/llama-server")


def _caps(devices=None) -> Capabilities:
    flags, enums = parse_help(HELP.read_text(encoding="utf-8"))
    return Capabilities(flags=flags, enums=enums, devices=devices)


def _gpu(mib: int) -> PlanHardware:
    return PlanHardware(
        gpus=[PlanDevice(name="GPU0", free_bytes=mib * MiB, bandwidth_gbps=300.0)], ram_bytes=8 * GiB, backend="cuda"
    )


def _settings():
    return load_settings().settings


def _pull_as(settings, alias: str, quant: str, path: Path) -> None:
    """What `llmtp models pull` records after a verified download."""
    pulls._record(settings, alias, quant, {"path": str(path), "sidecar": None})


@pytest.fixture
def tiny(tiny_models) -> Path:
    """A real tiny qwen35 MTP GGUF (3 trunk layers + 1 nextn layer); these tests read its header."""
    return tiny_models["agree"]


def _prepare(ref: str, hardware: PlanHardware | None = None, **kw):
    """serve's plan with the binary's capabilities and the hardware given, and no tune record."""
    deps = LaunchDeps(probe=lambda p: _caps(), hardware=hardware, tune_record=lambda p: None)
    return resolve_launch(_settings(), LaunchRequest(model=ref, server=str(SERVER), **kw), deps)


def _prepare_tuned(settings, ref: str, hardware: PlanHardware):
    """serve's plan with the tune record on disk."""
    return resolve_launch(
        settings, LaunchRequest(model=ref, server=str(SERVER)), LaunchDeps(probe=lambda p: _caps(), hardware=hardware)
    )


def test_alias_with_12gib_plans_full_offload(tiny):

    _pull_as(_settings(), "qwen3.6-27b", "Q4_K_M", tiny)
    p = _prepare("qwen3.6-27b", _gpu(12 * 1024))
    argv = p.argv_list
    # -a: the llmtp alias, not the file name. -ngl 4: the 3 blocks in the file (2 trunk + the nextn block) and the output layer; b11434 left block 0
    # on the CPU with the 3 it got before
    assert argv == [
        str(SERVER),
        "-m",
        str(tiny),
        "-a",
        "qwen3.6-27b",
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
        "-ngl",
        "4",
        "-c",
        "4096",
        "-ctk",
        "f16",
        "-ctv",
        "f16",
        "-fa",
        "on",
        "-np",
        "1",
        "--fit",
        "off",
        "--spec-type",
        "draft-mtp",
        "--spec-draft-n-max",
        "3",
        "--metrics",
        "-lv",
        "4",
    ]
    assert [(r["what"], r["value"]) for r in p.reasons] == [
        ("-ngl", "all"),
        ("ctx", "4096"),
        ("-ctk/-ctv", "f16"),
        ("-fa", "on"),
        ("MTP", "draft-mtp, n-max 3"),
        ("--parallel", "1"),
    ]
    assert p.reasons[0]["reason"] == "all 2 layers and the output head fit in VRAM"


def test_alias_with_little_vram_quantizes_kv_and_keeps_the_head_on_the_cpu(tiny):
    _pull_as(_settings(), "qwen3.6-27b", "Q4_K_M", tiny)
    p = _prepare("qwen3.6-27b", _gpu(1000))
    # b11434 offloads the output head and the MTP layer (with its draft context) before any trunk layer;
    # they do not fit next to the margin, so nothing is offloaded
    assert (p.spec.n_gpu_layers, p.spec.cache_type_k, p.spec.cache_type_v, p.spec.fit) == (0, "q4_0", "q4_0", "off")
    assert {r["what"]: r["reason"] for r in p.reasons}[
        "-ctk/-ctv"
    ] == "f16 KV does not fit at this context; quantized to keep it in VRAM"


def test_not_downloaded_alias_says_how_to_pull(monkeypatch):
    with pytest.raises(UsageError) as err:
        _prepare("qwen3.6-27b", _gpu(12 * 1024))
    assert err.value.message == "qwen3.6-27b is not downloaded yet"
    assert "`llmtp models pull qwen3.6-27b`" in err.value.hint
    monkeypatch.setattr("llmtp.services.serve.launch_plan.cached_capabilities", lambda p, d: _caps())
    r = CliRunner().invoke(app, ["serve", "qwen3.6-27b", "--server", str(SERVER), "--dry-run"])
    assert isinstance(r.exception, UsageError) and r.exception.message == "qwen3.6-27b is not downloaded yet"


def test_a_pulled_non_default_quant_is_used(tiny, monkeypatch):
    """One rule for plan and serve (they used to differ: plan planned the catalog default, serve ran the
    file on disk): a quant already on disk is the one planned and served, and the plan says so."""
    _pull_as(_settings(), "qwen3.6-27b", "IQ4_XS", tiny)
    p = _prepare("qwen3.6-27b", _gpu(12 * 1024))
    assert p.spec.model == str(tiny)
    assert p.reasons[0]["what"] == "quant" and p.reasons[0]["value"] == "IQ4_XS"
    monkeypatch.setattr("llmtp.services.serve.launch_plan.cached_capabilities", lambda p, d: _caps())
    monkeypatch.setattr("llmtp.services.serve.launch_plan.hardware_for_build", lambda caps, **kw: _gpu(12 * 1024))
    r = CliRunner().invoke(app, ["plan", "qwen3.6-27b", "--server", str(SERVER), "--argv", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["argv"] == p.argv_list


def test_path_model_on_a_cpu_build(tiny):
    p = _prepare(str(tiny), PlanHardware(ram_bytes=8 * GiB, backend="cpu"), ctx=2048)
    assert (p.spec.model, p.spec.n_gpu_layers, p.spec.ctx_size, p.spec.fit, p.spec.mtp.enabled) == (
        str(tiny),
        None,
        2048,
        None,
        True,
    )
    assert {r["what"]: r["reason"] for r in p.reasons}["ctx"] == "requested with --ctx"


def test_no_mtp_and_parallel(tiny):
    p = _prepare(str(tiny), _gpu(12 * 1024), no_mtp=True, parallel=4)
    assert (p.spec.mtp.enabled, p.spec.parallel) == (False, 4)
    assert {r["what"]: r["value"] for r in p.reasons}["MTP"] == "off"
    # with MTP on, one slot stays (the planner warns that --parallel was ignored)
    p = _prepare(str(tiny), _gpu(12 * 1024), parallel=4)
    assert p.spec.parallel == 1 and p.warnings == (
        "--parallel 4 ignored: parallel slots with MTP are slower in aggregate "
        "(`--clients 4` plans slots and MTP for that many users)",
    )


def test_tuned_settings_win_over_the_plan(tiny):
    settings = _settings()
    mtp_settings.save(settings, mtp_settings.model_key(tiny), MtpSettings(enabled=True, n_max=2, p_min=0.1))
    p = _prepare_tuned(settings, str(tiny), _gpu(12 * 1024))
    assert (p.spec.mtp.n_max, p.spec.mtp.p_min) == (2, 0.1)
    assert {r["what"]: (r["value"], r["reason"]) for r in p.reasons}["MTP"] == (
        "draft-mtp, n-max 2",
        "measured by `llmtp tune` on this machine",
    )
    mtp_settings.save(settings, mtp_settings.model_key(tiny), MtpSettings(enabled=False))
    p = _prepare_tuned(settings, str(tiny), _gpu(12 * 1024))
    assert not p.spec.mtp.enabled


def test_cpu_build_plans_for_the_cpu_even_with_a_gpu_present():
    gpu = GPU(
        index=0, vendor="nvidia", source="nvml", name="RTX 4090", vram_total_bytes=24 * GiB, vram_free_bytes=23 * GiB
    )
    mem = lambda not_counting: (32 * GiB, 16 * GiB)  # noqa: E731
    cpu_build = hardware_for_build(_caps(devices=[]), gpus=[gpu], memory=mem)
    assert (cpu_build.backend, cpu_build.gpus, cpu_build.ram_bytes) == ("cpu", [], 16 * GiB)
    cuda = _caps(devices=[Device(id="CUDA0", backend="CUDA", name="RTX 4090")])
    hw = hardware_for_build(cuda, gpus=[gpu], memory=mem)
    assert (hw.backend, hw.gpus[0].free_bytes) == ("cuda", 23 * GiB)


def test_dry_run_cli_shows_reasons_human_and_json(tiny, monkeypatch):
    # patched where serve looks it up (serve imports it from services.serve.plan at module top)
    monkeypatch.setattr("llmtp.services.serve.launch_plan.hardware_for_build", lambda caps, **kw: _gpu(12 * 1024))
    monkeypatch.setattr("llmtp.services.serve.launch_plan.cached_capabilities", lambda p, d: _caps())
    args = ["serve", str(tiny), "--server", str(SERVER), "--port", "9001", "--dry-run"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == "# -ngl all: all 2 layers and the output head fit in VRAM"
    assert lines[-1].startswith(f"{SERVER} -m {tiny} -a {tiny.stem} --host 127.0.0.1 --port 9001 -ngl 4 -c 4096 ")
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert data["reasons"][0] == {
        "what": "-ngl",
        "value": "all",
        "reason": "all 2 layers and the output head fit in VRAM",
    }
    assert data["argv"][-2:] == ["-lv", "4"]


def test_capabilities_of_a_server_are_probed_once(tmp_path, monkeypatch):
    from llmtp.services.build import probe_cache
    from llmtp.services.build.probe_cache import cached_capabilities

    server = tmp_path / "my-llama-server"  # not named llama-server: that very file is probed
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)  # serve refuses a --server it cannot execute
    calls = []
    monkeypatch.setattr(probe_cache, "probe_binary", lambda d, r, server: calls.append(server) or _caps())
    assert cached_capabilities(server, tmp_path / "cache").flags == _caps().flags
    assert cached_capabilities(server, tmp_path / "cache").flags == _caps().flags
    assert calls == [server.resolve()]
    server.write_text("#!/bin/sh\n# rebuilt\n")  # a changed binary is probed again
    cached_capabilities(server, tmp_path / "cache")
    assert len(calls) == 2


# --- calibration ---------------------------------------------------------------------------------


def test_actual_kinds_from_the_lv4_load_log_leave_out_the_draft_context():
    actual = calibration.actual_kinds(LV4_LOG.read_text(encoding="utf-8"))
    assert actual == {
        "model": round(3.06 * MiB),
        "context": round(0.25 * MiB) + round(0.01 * MiB),
        "compute": round(5.15 * MiB),
    }
    assert calibration.actual_kinds("no buffers here") is None


def test_recorded_launch_corrects_the_next_plan_without_compounding(tiny):
    from llmtp.core.plan_types import PlanRequest
    from llmtp.services.models.resolve import resolve_model
    from llmtp.services.serve.plan import plan_resolved

    settings = _settings()
    cpu = PlanHardware(ram_bytes=8 * GiB, backend="cpu")
    first = plan_resolved(resolve_model(str(tiny), settings), settings, PlanRequest(ctx=2048), cpu)
    assert first.corrections == {} and first.calibration_key == tiny.name
    rec = calibration.record_launch(
        settings,
        model_key=first.calibration_key,
        build="b1",
        plan=first.plan,
        corrections=first.corrections,
        log_text=LV4_LOG.read_text(encoding="utf-8"),
    )
    assert rec.predicted == calibration.predicted_kinds(first.plan)
    second = plan_resolved(resolve_model(str(tiny), settings), settings, PlanRequest(ctx=2048), cpu)
    assert second.corrections == calibration.factors_for(settings, tiny.name)[0] != {}
    assert second.plan.decisions[-1].what == "calibration"
    # a launch of the corrected plan records the raw prediction again: the factor does not drift
    calibration.record_launch(
        settings,
        model_key=tiny.name,
        build="b1",
        plan=second.plan,
        corrections=second.corrections,
        log_text=LV4_LOG.read_text(encoding="utf-8"),
    )
    assert calibration.factors_for(settings, tiny.name)[0] == second.corrections


@pytest.mark.llama
def test_real_launch_records_calibration(llama_bin_dir, tiny_models):
    port = free_port()
    model = tiny_models["agree"]
    proc = subprocess.Popen(
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
            "2048",
            "--foreground",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("[ready]"):  # printed after the calibration hook has run
                break
        else:
            pytest.fail("never ready")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    [rec] = calibration.load_records(_settings())
    assert (rec.model, rec.build, rec.ctx) == (model.name, "external", 2048)
    assert rec.actual["model"] > 0 and rec.actual["compute"] > 0
    assert set(rec.predicted) == {"model", "context", "compute"}


def test_unknown_backend_stays_none_and_plans_and_launches_on_the_gpu(tiny):
    """Devices never probed (caps None), a snapshot whose recommendation names no GPU profile, and a bare
    `plan --vram`: the backend is unknown, so None, never an invented "cuda"; the planner still plans
    for the GPU it was given, and the argv offloads to it."""
    from llmtp.core.hardware import CPU, HardwareSnapshot, Recommendation
    from llmtp.services.serve.plan import hardware_from_flags, hardware_from_snapshot

    gpu = GPU(
        index=0, vendor="nvidia", source="nvml", name="RTX 4090", vram_total_bytes=24 * GiB, vram_free_bytes=23 * GiB
    )
    mem = lambda not_counting: (32 * GiB, 16 * GiB)  # noqa: E731
    unprobed = hardware_for_build(None, gpus=[gpu], memory=mem)
    assert (unprobed.backend, unprobed.gpus[0].free_bytes, unprobed.ram_bytes) == (None, 23 * GiB, 16 * GiB)
    snap = HardwareSnapshot(
        os="linux",
        cpu=CPU(model="c"),
        ram_available_bytes=16 * GiB,
        gpus=[gpu],
        recommendation=Recommendation(profile="cpu", reason="test"),
    )
    assert hardware_from_snapshot(snap) == unprobed
    snap.recommendation = Recommendation(profile="vulkan", reason="test")
    assert hardware_from_snapshot(snap).backend == "vulkan"
    assert hardware_from_flags("12GiB", None).backend is None

    p = _prepare(str(tiny), unprobed, ctx=2048)
    argv = p.argv_list
    assert argv[argv.index("-ngl") + 1] == "4"  # every block and the output layer, as with backend "cuda"
