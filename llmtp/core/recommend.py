"""The build profile llmtp recommends for a machine: a pure function of the detected GPUs, OS and tools."""

from __future__ import annotations

from llmtp.core.hardware import CPU, GPU, ProfileName, Recommendation, Tool
from llmtp.core.toolchain_versions import version_tuple

# Oldest nvcc that can compile for a compute capability (CUDA release notes; llama.cpp's
# ggml-cuda/CMakeLists.txt adds 89/90 from 11.8, 120a from 12.8, 121a from 12.9).
MIN_NVCC_FOR_CC = {"8.9": "11.8", "9.0": "11.8", "10.0": "12.8", "12.0": "12.8", "12.1": "12.9"}
# CUDA 13 removed Maxwell, Pascal and Volta (compute capability below 7.5).
CUDA13_MIN_CC = (7, 5)
MIN_CMAKE_CUDA = "3.18"  # ggml-cuda's cmake_minimum_required
MIN_HIP = "6.1"  # ggml-hip: "At least ROCM/HIP V6.1 is required"

INSTALL_CUDA = (
    "install the CUDA toolkit (Debian/Ubuntu: sudo apt install nvidia-cuda-toolkit; "
    "for a newer release, NVIDIA's cuda-toolkit package from developer.nvidia.com)"
)
INSTALL_ROCM = "install ROCm 6.1 or newer with hipcc and hipBLAS (AMD's amdgpu-install --usecase=rocm)"
INSTALL_VULKAN = "install glslc and the Vulkan headers (Debian/Ubuntu: sudo apt install glslc libvulkan-dev)"


def _present(tools: dict[str, Tool], name: str) -> Tool | None:
    tool = tools.get(name)
    return tool if tool is not None and tool.path else None


def _older(version: str | None, minimum: str) -> bool:
    have, need = version_tuple(version), version_tuple(minimum)
    return have is not None and need is not None and have < need


def recommend(
    os_name: str, gpus: list[GPU], tools: dict[str, Tool], cpu: CPU | None = None
) -> tuple[Recommendation, list[str]]:
    """Pick one of cuda/rocm/metal/vulkan/cpu and say why; the notes say what to install or fix.

    Rules, first match wins:
    1. macOS -> metal (llama.cpp's default on Apple; the shader source is embedded, so Xcode's
       Metal compiler is optional; the Command Line Tools are needed for the C/C++ compiler).
    2. NVIDIA and AMD both present -> the vendor with more dedicated VRAM (NVIDIA on a tie),
       with a note that a vulkan build can drive both.
    3. An NVIDIA GPU -> cuda, even without nvcc (the note says how to install the toolkit), with
       notes when nvcc is older than the GPU needs, when CUDA 13+ can no longer target it
       (compute capability < 7.5), or when nvcc's major version is newer than the driver's CUDA.
    4. An AMD GPU -> rocm when it has a gfx target and is discrete, or is an APU and hipcc is
       installed; otherwise vulkan (an APU or a GPU without KFD/ROCm runs well on Mesa's Vulkan).
    5. Any other GPU (Intel, ...) -> vulkan.
    6. Otherwise cpu.
    Missing cmake or C++ compiler adds a note whatever the profile.
    """
    notes: list[str] = []
    nvidia = [g for g in gpus if g.vendor == "nvidia"]
    amd = [g for g in gpus if g.vendor == "amd"]
    profile: ProfileName
    if os_name == "darwin":
        profile, reason = "metal", _metal_reason(gpus)
        if not _present(tools, "xcrun"):
            notes.append("Xcode Command Line Tools not found: run `xcode-select --install`.")
    else:
        vendor = _vendor_choice(nvidia, amd)
        if vendor == "nvidia":
            profile, reason = "cuda", _cuda_reason(nvidia)
            notes += _cuda_notes(nvidia, tools)
            if amd:
                notes.append(
                    "AMD GPU(s) also present: a cuda build uses only the NVIDIA ones; "
                    "a vulkan build can drive both vendors."
                )
        elif vendor == "amd":
            profile, reason = _amd_choice(amd, tools)
            if nvidia:
                notes.append(
                    "NVIDIA GPU(s) also present: a rocm build uses only the AMD ones; "
                    "a vulkan build can drive both vendors."
                )
            if profile == "rocm":
                hipcc = _present(tools, "hipcc")
                if hipcc is None:
                    notes.append(f"hipcc not found: {INSTALL_ROCM}, or build the vulkan profile instead.")
                elif _older(hipcc.version, MIN_HIP):
                    notes.append(f"HIP {hipcc.version} is older than llama.cpp's minimum {MIN_HIP}: {INSTALL_ROCM}.")
        elif gpus:
            profile = "vulkan"
            reason = f"{gpus[0].name} has no CUDA/ROCm/Metal backend; llama.cpp's Vulkan backend drives it."
        else:
            profile, reason = "cpu", "No GPU found (NVML, amdgpu sysfs): llama.cpp runs on the CPU" + _isa(cpu) + "."
        if profile == "vulkan" and not _present(tools, "glslc"):
            notes.append(f"glslc not found: {INSTALL_VULKAN}.")
    if not _present(tools, "cmake"):
        notes.append("cmake not found: install CMake 3.18 or newer (Debian/Ubuntu: sudo apt install cmake).")
    if not _present(tools, "c++"):
        notes.append("No C++ compiler found: install one (Debian/Ubuntu: sudo apt install build-essential).")
    return Recommendation(profile=profile, reason=reason), notes


def _isa(cpu: CPU | None) -> str:
    """The widest SIMD the CPU build will use (GGML_NATIVE compiles for this machine)."""
    flags = set(cpu.flags) if cpu else set()
    for flag, label in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("sve", "SVE"), ("neon", "NEON"), ("avx", "AVX")):
        if flag in flags:
            return f" with {label}"
    return ""


def _vram(gpus: list[GPU]) -> int:
    return sum(g.vram_total_bytes or 0 for g in gpus if not g.unified_memory)


def _vendor_choice(nvidia: list[GPU], amd: list[GPU]) -> str | None:
    if nvidia and amd:
        return "amd" if _vram(amd) > _vram(nvidia) else "nvidia"
    return "nvidia" if nvidia else "amd" if amd else None


def _metal_reason(gpus: list[GPU]) -> str:
    apple = next((g for g in gpus if g.vendor == "apple"), None)
    if apple is not None:
        return f"{apple.name} with unified memory: llama.cpp's Metal backend is the fast path on Apple silicon."
    return "macOS: llama.cpp builds its Metal backend by default."


def _cuda_reason(nvidia: list[GPU]) -> str:
    archs = sorted({g.cuda_arch for g in nvidia if g.cuda_arch}, key=int)
    names = ", ".join(dict.fromkeys(g.name for g in nvidia))
    arch_text = f"; build for CMAKE_CUDA_ARCHITECTURES={';'.join(archs)}" if archs else ""
    return f"NVIDIA GPU found through NVML ({names}){arch_text}."


def _cuda_notes(nvidia: list[GPU], tools: dict[str, Tool]) -> list[str]:
    notes: list[str] = []
    nvcc = _present(tools, "nvcc")
    if nvcc is None:
        notes.append(f"nvcc not found: {INSTALL_CUDA}.")
    else:
        for cc in sorted({g.compute_capability for g in nvidia if g.compute_capability}):
            need = MIN_NVCC_FOR_CC.get(cc)
            if need and _older(nvcc.version, need):
                notes.append(
                    f"nvcc {nvcc.version} cannot compile for compute capability {cc}: CUDA {need} or newer is needed."
                )
            cct, have = version_tuple(cc), version_tuple(nvcc.version)
            if cct is not None and have is not None and have[0] >= 13 and cct < CUDA13_MIN_CC:
                notes.append(
                    f"nvcc {nvcc.version} (CUDA 13+) dropped compute capability {cc}: "
                    "install a CUDA 12.x toolkit for this GPU."
                )
        driver_cuda = {g.cuda_driver_version for g in nvidia if g.cuda_driver_version}
        have = version_tuple(nvcc.version)
        for dv in sorted(driver_cuda):
            dvt = version_tuple(dv)
            if have is not None and dvt is not None and have[0] > dvt[0]:
                notes.append(
                    f"nvcc {nvcc.version} is newer than the driver's CUDA {dv}: binaries would fail "
                    "with 'CUDA driver version is insufficient'; update the NVIDIA driver or "
                    f"install a CUDA {dvt[0]}.x toolkit."
                )
    cmake = _present(tools, "cmake")
    if cmake is not None and _older(cmake.version, MIN_CMAKE_CUDA):
        notes.append(f"cmake {cmake.version} is too old for the CUDA backend: {MIN_CMAKE_CUDA} or newer is needed.")
    return notes


def _amd_choice(amd: list[GPU], tools: dict[str, Tool]) -> tuple[ProfileName, str]:
    discrete = [g for g in amd if g.gfx_target and not g.unified_memory]
    if discrete:
        g = discrete[0]
        return "rocm", f"AMD {g.name} ({g.gfx_target}): build the HIP backend with GPU_TARGETS={g.gfx_target}."
    apu = next((g for g in amd if g.gfx_target and g.unified_memory), None)
    if apu is not None and _present(tools, "hipcc"):
        return "rocm", (
            f"AMD APU {apu.name} ({apu.gfx_target}) with ROCm installed: "
            f"build the HIP backend with GPU_TARGETS={apu.gfx_target}."
        )
    g = amd[0]
    if g.unified_memory:
        return "vulkan", (
            f"AMD APU {g.name} shares system memory; without ROCm installed, llama.cpp's "
            "Vulkan backend (Mesa RADV) is the simplest fast path."
        )
    return "vulkan", f"AMD {g.name} has no ROCm gfx target visible (no KFD): llama.cpp's Vulkan backend drives it."
