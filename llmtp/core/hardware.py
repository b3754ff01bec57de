"""The hardware snapshot: what `llmtp detect` found. Unknown values are None, never invented."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core.vulkan_devices import VulkanDevice

Vendor = Literal["nvidia", "amd", "apple", "intel", "other"]
ProfileName = Literal["cuda", "rocm", "metal", "vulkan", "cpu"]


class GPU(BaseModel):
    index: int
    vendor: Vendor
    name: str
    vram_total_bytes: int | None = None
    vram_free_bytes: int | None = None
    unified_memory: bool = False  # Apple and AMD APUs share system RAM
    gtt_total_bytes: int | None = None  # AMD: system memory the GPU can map
    compute_capability: str | None = None  # NVIDIA, e.g. "8.9"
    cuda_arch: str | None = None  # NVIDIA, e.g. "89" (CMAKE_CUDA_ARCHITECTURES)
    gfx_target: str | None = None  # AMD, e.g. "gfx1100" (GPU_TARGETS)
    driver_version: str | None = None
    cuda_driver_version: str | None = None  # highest CUDA the driver supports, e.g. "12.4"
    pcie_generation: int | None = None
    pcie_width: int | None = None
    memory_bandwidth_gbps: float | None = None  # GB/s peak: NVML bus width x max memory clock; None elsewhere
    pci_bus_id: str | None = None  # "0000:01:00.0": ties this GPU to a backend's device list
    gpu_cores: int | None = None  # Apple: GPU cores (system_profiler sppci_cores)
    source: str  # "nvml", "sysfs", "amdsmi", "system_profiler", ...


class CPU(BaseModel):
    model: str | None = None
    arch: str | None = None  # "x86_64", "aarch64", "arm64"
    cores_physical: int | None = None
    cores_logical: int | None = None
    flags: list[str] = Field(default_factory=list)  # the ISA features llama.cpp cares about: avx2, avx512f, neon, ...


class Tool(BaseModel):
    name: str
    path: str | None = None  # None: not present
    version: str | None = None  # None: present but version unknown, or absent
    family: str | None = None  # compilers only: "gcc", "clang", "apple-clang"


class Recommendation(BaseModel):
    profile: ProfileName
    reason: str


class HardwareSnapshot(BaseModel):
    os: str  # "linux", "darwin", "windows"
    cpu: CPU
    ram_total_bytes: int | None = None
    ram_available_bytes: int | None = None
    gpus: list[GPU] = Field(default_factory=list)
    # Every Vulkan device (vulkaninfo, a Vulkan build's --list-devices), CPU-type ones (lavapipe) included
    # and marked: they are reported, never counted as GPUs nor recommended.
    vulkan_devices: list[VulkanDevice] = Field(default_factory=list)
    toolchains: dict[str, Tool] = Field(
        default_factory=dict
    )  # keyed by tool name: cmake, ninja, cc, c++, nvcc, hipcc, xcrun, metal, ccache, git
    recommendation: Recommendation
    notes: list[str] = Field(default_factory=list)  # what was looked for and not found, with the fix

    def tool(self, name: str) -> Tool | None:
        t = self.toolchains.get(name)
        return t if t is not None and t.path else None
