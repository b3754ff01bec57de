"""`llmtp status` memory: RSS of each llama-server (proven to be the recorded process) and its VRAM where
NVML sees the pid."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import psutil
import pytest
from test_detect_nvml import NVMLError
from typer.testing import CliRunner

from llmtp.adapters.nvml import process_vram
from llmtp.adapters.ports import free_port
from llmtp.cli.main import app


def _nvml(procs_per_gpu: list[list[tuple[int, int | None]]], fail_init: bool = False):
    def init():
        if fail_init:
            raise NVMLError(9)

    return SimpleNamespace(
        NVMLError=NVMLError,
        nvmlInit=init,
        nvmlShutdown=lambda: None,
        nvmlDeviceGetCount=lambda: len(procs_per_gpu),
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetComputeRunningProcesses=lambda h: [
            SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in procs_per_gpu[h]
        ],
    )


def test_process_vram_sums_over_gpus_and_keeps_unknown_unknown():
    fake = _nvml([[(10, 2 << 30), (11, None)], [(10, 1 << 30), (99, 5)]])
    assert process_vram([10, 11, 12], nvml=fake) == {10: 3 << 30, 11: None, 12: None}
    assert process_vram([10], nvml=_nvml([], fail_init=True)) == {10: None}  # no driver: unknown, not 0


@pytest.mark.llama
def test_status_shows_rss_and_vram_per_server(llama_bin_dir, tiny_models, monkeypatch):
    port = free_port()
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "llmtp",
            "serve",
            str(tiny_models["plain"]),
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
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    server_pid = json.loads(r.stdout)["server_pid"]
    runner = CliRunner()
    try:
        [entry] = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
        rss = psutil.Process(server_pid).memory_info().rss
        assert entry["rss_bytes"] == pytest.approx(rss, rel=0.2) and entry["rss_bytes"] > 1 << 20
        # a CPU build holds no VRAM: unknown (None), never 0 invented
        assert entry["vram_bytes"] is None
        # where NVML sees the pid, its number is reported as is
        import llmtp.adapters.nvml as nvml_adapter

        monkeypatch.setattr(nvml_adapter, "load_pynvml", lambda: _nvml([[(server_pid, 3 << 30)]]))
        [entry] = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
        assert entry["vram_bytes"] == 3 << 30
        out = runner.invoke(app, ["status", "--wide"]).stdout  # memory columns: the wide view
        assert "3.0 GiB" in out and "MiB" in out  # VRAM, and the RSS of a tiny model
    finally:
        runner.invoke(app, ["stop", "--port", str(port)])
