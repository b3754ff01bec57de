"""The recommendation table: profile, reason and notes for each kind of machine."""

from __future__ import annotations

import pytest

from llmtp.core.hardware import CPU, GPU, Tool
from llmtp.core.recommend import recommend

GiB = 1 << 30


def nv(name="NVIDIA GeForce RTX 4090", cc="8.9", vram=24 * GiB, cuda="12.4"):
    return GPU(
        index=0,
        vendor="nvidia",
        name=name,
        vram_total_bytes=vram,
        compute_capability=cc,
        cuda_arch=cc.replace(".", ""),
        cuda_driver_version=cuda,
        source="nvml",
    )


def amd(name="Radeon RX 7900 XTX", gfx="gfx1100", vram=24 * GiB, apu=False):
    return GPU(
        index=0, vendor="amd", name=name, vram_total_bytes=vram, gfx_target=gfx, unified_memory=apu, source="sysfs"
    )


def tools(**versions):
    """cmake and c++ present unless overridden; other tools from keywords (None = absent)."""
    base = {"cmake": "3.25.1", "c++": "12.2.0"}
    base.update(versions)
    return {
        name: Tool(name=name, path=f"/usr/bin/{name}" if v is not None else None, version=v) for name, v in base.items()
    }


@pytest.mark.parametrize(
    "os_name, gpus, have, profile, notes",
    [
        ("linux", [nv()], tools(nvcc="12.4.131"), "cuda", []),
        (
            "linux",
            [nv()],
            tools(),
            "cuda",
            [
                "nvcc not found: install the CUDA toolkit (Debian/Ubuntu: sudo apt install nvidia-cuda-toolkit; for a newer "
                "release, NVIDIA's cuda-toolkit package from developer.nvidia.com)."
            ],
        ),
        (
            "linux",
            [nv(cuda="12.4")],
            tools(nvcc="13.0.88"),
            "cuda",
            [
                "nvcc 13.0.88 is newer than the driver's CUDA 12.4: binaries would fail with 'CUDA driver version is "
                "insufficient'; update the NVIDIA driver or install a CUDA 12.x toolkit."
            ],
        ),
        (
            "linux",
            [nv("NVIDIA GeForce GTX 1080 Ti", "6.1", cuda="13.0")],
            tools(nvcc="13.0.88"),
            "cuda",
            ["nvcc 13.0.88 (CUDA 13+) dropped compute capability 6.1: install a CUDA 12.x toolkit for this GPU."],
        ),
        (
            "linux",
            [nv("NVIDIA GeForce RTX 5090", "12.0", 32 * GiB, "12.8")],
            tools(nvcc="12.4.131"),
            "cuda",
            ["nvcc 12.4.131 cannot compile for compute capability 12.0: CUDA 12.8 or newer is needed."],
        ),
        ("linux", [amd()], tools(hipcc="6.2.41133"), "rocm", []),
        (
            "linux",
            [amd()],
            tools(hipcc="6.0.32830"),
            "rocm",
            [
                "HIP 6.0.32830 is older than llama.cpp's minimum 6.1: install ROCm 6.1 or newer with hipcc and hipBLAS "
                "(AMD's amdgpu-install --usecase=rocm)."
            ],
        ),
        ("linux", [amd("Phoenix1", "gfx1103", GiB // 2, apu=True)], tools(glslc="2023.2"), "vulkan", []),
        ("linux", [amd("Phoenix1", "gfx1103", GiB // 2, apu=True)], tools(hipcc="6.2.41133"), "rocm", []),
        (
            "linux",
            [amd("Navi 31", None)],
            tools(),
            "vulkan",
            [
                "glslc not found: install glslc and the Vulkan headers (Debian/Ubuntu: sudo apt install glslc libvulkan-dev)."
            ],
        ),
        ("linux", [], tools(), "cpu", []),
        (
            "linux",
            [],
            tools(cmake=None, **{"c++": None}),
            "cpu",
            [
                "cmake not found: install CMake 3.18 or newer (Debian/Ubuntu: sudo apt install cmake).",
                "No C++ compiler found: install one (Debian/Ubuntu: sudo apt install build-essential).",
            ],
        ),
        (
            "darwin",
            [GPU(index=0, vendor="apple", name="Apple M2 Pro", unified_memory=True, source="system_profiler")],
            tools(xcrun="70"),
            "metal",
            [],
        ),
        ("darwin", [], tools(), "metal", ["Xcode Command Line Tools not found: run `xcode-select --install`."]),
    ],
)
def test_recommendation_table(os_name, gpus, have, profile, notes):
    rec, got_notes = recommend(os_name, gpus, have)
    assert (rec.profile, got_notes) == (profile, notes)


def test_reasons_name_the_hardware_and_the_build_target():
    rec, _ = recommend("linux", [nv(), nv("NVIDIA GeForce RTX 3060", "8.6", 12 * GiB)], tools(nvcc="12.4.131"))
    assert rec.reason == (
        "NVIDIA GPU found through NVML (NVIDIA GeForce RTX 4090, NVIDIA GeForce RTX 3060); "
        "build for CMAKE_CUDA_ARCHITECTURES=86;89."
    )
    rec, _ = recommend("linux", [amd()], tools(hipcc="6.2.41133"))
    assert rec.reason == "AMD Radeon RX 7900 XTX (gfx1100): build the HIP backend with GPU_TARGETS=gfx1100."
    rec, _ = recommend("linux", [], tools(), CPU(flags=["avx", "avx2", "avx512f"]))
    assert rec.reason == "No GPU found (NVML, amdgpu sysfs): llama.cpp runs on the CPU with AVX-512."


def test_mixed_vendors_pick_the_larger_vram_and_say_so():
    rec, notes = recommend("linux", [nv(vram=8 * GiB), amd(vram=24 * GiB)], tools(nvcc="12.4.131", hipcc="6.2.41133"))
    assert rec.profile == "rocm"
    assert notes == [
        "NVIDIA GPU(s) also present: a rocm build uses only the AMD ones; a vulkan build can drive both vendors."
    ]
    rec, _ = recommend("linux", [nv(vram=24 * GiB), amd(vram=24 * GiB)], tools(nvcc="12.4.131"))
    assert rec.profile == "cuda"  # tie -> NVIDIA
