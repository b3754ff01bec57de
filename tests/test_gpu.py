"""GPU-only checks, run on a machine with an NVIDIA GPU (skipped elsewhere, see conftest.py).

They prove on real hardware what the fast tier proves on captured output: NVML sees the card, the
CUDA build lists it (no silent CPU-only build), and MTP is on and faster on it. The CUDA build comes
from LLMTP_TEST_GPU_BIN_DIR, or is built once through llmtp's own build code and cached.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = [pytest.mark.gpu, pytest.mark.llama]


@pytest.fixture(scope="session")
def hardware():
    from llmtp.services.machine.detect import detect_hardware

    return detect_hardware()


@pytest.fixture(scope="session")
def gpu_bin_dir(hardware) -> Path:
    override = os.environ.get("LLMTP_TEST_GPU_BIN_DIR")
    if override:
        return Path(override)
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.build.pipeline import build
    from llmtp.services.build.request import BuildRequest
    from llmtp.settings import load_settings
    from llmtp.testbed import cache_root

    settings = load_settings({"home": cache_root() / "llmtp-home-gpu"}).settings
    return build(settings, BuildRequest(source="pypi", profile="cuda"), SubprocessRunner(), hw=hardware).bin_dir


def test_nvml_reports_the_gpu(hardware):
    nvidia = [g for g in hardware.gpus if g.vendor == "nvidia"]
    assert nvidia, hardware.notes
    for gpu in nvidia:
        assert gpu.vram_total_bytes and gpu.vram_free_bytes is not None and gpu.cuda_arch
        assert 0 < gpu.vram_free_bytes <= gpu.vram_total_bytes
    assert hardware.recommendation.profile == "cuda"


def test_cuda_build_lists_the_gpu(gpu_bin_dir, hardware):
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.build.installed import probe_binary

    caps = probe_binary(gpu_bin_dir, SubprocessRunner())
    cuda = [d for d in caps.devices or [] if d.backend == "CUDA"]
    assert cuda, f"a CUDA build that lists no CUDA device: {caps.devices}"
    names = {g.name for g in hardware.gpus if g.vendor == "nvidia"}
    assert any(d.name in names for d in cuda), (cuda, names)
    assert caps.mtp_dialect == "upstream"


def test_mtp_is_on_and_faster_on_the_gpu(gpu_bin_dir, bench_models):
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.core.launch_plan import LaunchRequest
    from llmtp.core.verify import Method, VerdictCode
    from llmtp.services.build.installed import adopt
    from llmtp.services.verify.ab_plan import run_verify
    from llmtp.settings import load_settings

    settings = load_settings().settings
    adopt(settings, gpu_bin_dir, SubprocessRunner())
    report = run_verify(
        settings,
        LaunchRequest(model=str(bench_models["agree"])),
        Method(n_predict=128, warmups=1, runs=3, temperatures=[0.0]),
    )
    assert report.markers.gpu.ok is not False, report.markers.gpu
    assert report.markers.runtime.ok and report.acceptance == 1.0
    assert report.verdict.code == VerdictCode.PASS, report.verdict
