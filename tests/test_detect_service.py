"""detect_hardware with every source replaced: Linux with NVIDIA+AMD, macOS, and a bare machine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

from test_detect_nvml import fake_pynvml

from llmtp.adapters.apple import PROFILER_ARGV, SYSCTL_ARGV
from llmtp.adapters.runner import Completed
from llmtp.errors import ToolMissingError
from llmtp.services.machine.detect import MachineSources, detect_hardware, os_name

FIX = Path(__file__).parent / "fixtures"
NO_AMDSMI = SimpleNamespace()  # any attribute access fails -> amdsmi treated as absent


class FakeRunner:
    def __init__(self, paths=None, outputs=None):
        self.paths, self.outputs = paths or {}, outputs or {}

    def which(self, name):
        return self.paths.get(name)

    def run(self, argv, *, cwd=None, env=None, timeout=60):
        if tuple(argv) not in self.outputs:
            raise ToolMissingError(f"Cannot run {argv[0]}: not found")
        return Completed(list(argv), 0, self.outputs[tuple(argv)], "")


def linux_root(tmp_path, sysfs: str | None) -> Path:
    root = tmp_path / "root"
    if sysfs:
        shutil.copytree(FIX / "sysfs" / sysfs, root)
    (root / "proc").mkdir(parents=True, exist_ok=True)
    shutil.copy(FIX / "cpuinfo/x86_64-amd-epyc-2cpu.txt", root / "proc/cpuinfo")
    return root


def test_linux_with_nvidia_and_amd(tmp_path):
    nvml = fake_pynvml(json.loads((FIX / "nvml/two-gpus-r550.json").read_text()))
    runner = FakeRunner(
        {"cmake": "/usr/bin/cmake", "nvcc": "/usr/local/cuda/bin/nvcc", "c++": "/usr/bin/c++"},
        {
            ("/usr/bin/cmake", "--version"): (FIX / "toolchains/cmake-3.25.1.txt").read_text(),
            ("/usr/local/cuda/bin/nvcc", "--version"): (FIX / "toolchains/nvcc-13.0.txt").read_text(),
        },
    )
    snap = detect_hardware(
        runner,
        sources=MachineSources(
            nvml=nvml,
            sysfs_root=linux_root(tmp_path, "rx7900xtx"),
            platform="linux",
            machine="x86_64",
            amdsmi=NO_AMDSMI,
            memory=lambda: (64 << 30, 60 << 30),
            cpu_counts=None,
            toolkit_dirs={},
        ),
    )
    assert [(g.vendor, g.index, g.name) for g in snap.gpus] == [
        ("nvidia", 0, "NVIDIA GeForce RTX 4090"),
        ("nvidia", 1, "NVIDIA GeForce RTX 3060"),
        ("amd", 0, "Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]"),
    ]
    assert (snap.os, snap.cpu.model, snap.cpu.cores_logical, snap.ram_total_bytes) == ("linux", "AMD EPYC", 2, 64 << 30)
    assert snap.recommendation.profile == "cuda"  # 36 GiB NVIDIA vs 24 GiB AMD
    assert snap.notes == [
        "nvcc 13.0.88 is newer than the driver's CUDA 12.4: binaries would fail with 'CUDA driver version is "
        "insufficient'; update the NVIDIA driver or install a CUDA 12.x toolkit.",
        "AMD GPU(s) also present: a cuda build uses only the NVIDIA ones; a vulkan build can drive both vendors.",
    ]
    assert snap.tool("nvcc").version == "13.0.88" and snap.tool("hipcc") is None


def test_bare_linux_machine(tmp_path):
    nvml = fake_pynvml(json.loads((FIX / "nvml/two-gpus-r550.json").read_text()), init_error=12)
    snap = detect_hardware(
        FakeRunner(),
        sources=MachineSources(
            nvml=nvml,
            sysfs_root=linux_root(tmp_path, None),
            platform="linux",
            machine="x86_64",
            amdsmi=NO_AMDSMI,
            memory=lambda: (None, None),
            cpu_counts=lambda: (None, None),
            toolkit_dirs={},
        ),
    )
    assert snap.gpus == [] and snap.recommendation.profile == "cpu"
    assert snap.cpu.cores_logical == 2  # psutil unknown -> /proc/cpuinfo's count stays
    assert snap.notes[0] == "NVIDIA: no GPU driver answered (NVML: NVML Shared Library Not Found)."
    assert all(t.path is None for t in snap.toolchains.values())


def test_macos(tmp_path):
    runner = FakeRunner(
        {"xcrun": "/usr/bin/xcrun", "c++": "/usr/bin/c++", "cmake": "/opt/homebrew/bin/cmake"},
        {
            tuple(SYSCTL_ARGV): (FIX / "apple/m2pro-sysctl.txt").read_text(),
            tuple(PROFILER_ARGV): (FIX / "apple/m2pro-system_profiler-displays.json").read_text(),
        },
    )

    def nvml_must_not_be_used():
        raise AssertionError("no NVML on macOS")

    snap = detect_hardware(
        runner,
        sources=MachineSources(
            nvml=SimpleNamespace(nvmlInit=nvml_must_not_be_used),
            sysfs_root=tmp_path,
            platform="darwin",
            machine="arm64",
            memory=lambda: (None, 20 << 30),
            cpu_counts=None,
        ),
    )
    assert [(g.vendor, g.name, g.unified_memory, g.vram_total_bytes) for g in snap.gpus] == [
        ("apple", "Apple M2 Pro", True, 34359738368)
    ]
    assert (snap.cpu.model, snap.cpu.flags[:2], snap.ram_total_bytes) == (
        "Apple M2 Pro",
        ["neon", "dotprod"],
        34359738368,
    )
    assert snap.recommendation.profile == "metal"
    assert "metal" in snap.toolchains and "nvcc" not in snap.toolchains


def test_os_name():
    assert [os_name(p) for p in ("linux", "darwin", "win32", "freebsd14")] == [
        "linux",
        "darwin",
        "windows",
        "freebsd14",
    ]
