"""`detect`: one HardwareSnapshot of this machine from every source that answers (each one optional)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtp.adapters import amd_sysfs, apple, cpuinfo, toolchains
from llmtp.adapters import nvml as nvml_adapter
from llmtp.adapters.runner import Runner, SubprocessRunner
from llmtp.core.cpu_parse import parse_proc_cpuinfo
from llmtp.core.hardware import CPU, GPU, HardwareSnapshot
from llmtp.core.recommend import recommend
from llmtp.core.toolchain_versions import TOOLKIT_DIRS
from llmtp.core.vulkan_devices import vulkan_notes
from llmtp.services.machine.vulkan_detect import detect_vulkan


def os_name(sys_platform: str = sys.platform) -> str:
    if sys_platform.startswith("linux"):
        return "linux"
    if sys_platform == "darwin":
        return "darwin"
    if sys_platform.startswith(("win", "cygwin")):
        return "windows"
    return sys_platform


@dataclass(frozen=True)
class MachineSources:
    """Where detect reads this machine from; tests replace any of it (the defaults are the real ones).

    nvml         a stand-in for the pynvml module (default: import pynvml)
    sysfs_root   root of /sys, /proc and pci.ids (AMD GPUs, /proc/cpuinfo)
    platform     "linux" / "darwin" / "windows" (default: this machine's)
    machine      "x86_64" / "aarch64" / "arm64" (default: this machine's)
    memory, cpu_counts  RAM (total, available) and cores (physical, logical); cpu_counts=None
                 keeps what /proc/cpuinfo says
    env          the environment (GGML_VK_VISIBLE_DEVICES: a Vulkan device chosen on purpose)
    """

    nvml: Any = None
    sysfs_root: Path = Path("/")
    platform: str | None = None
    machine: str | None = None
    amdsmi: Any = None
    memory: Callable[[], tuple[int | None, int | None]] = cpuinfo.memory
    cpu_counts: Callable[[], tuple[int | None, int | None]] | None = cpuinfo.cpu_counts
    toolkit_dirs: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(TOOLKIT_DIRS))
    env: Mapping[str, str] | None = None


def detect_hardware(
    runner: Runner | None = None, *, sources: MachineSources | None = None, vulkan_server: Path | None = None
) -> HardwareSnapshot:
    """Gather the snapshot: `runner` runs every subprocess (sysctl, system_profiler, tool --version);
    `sources` (MachineSources) says where the rest is read; `vulkan_server`, a Vulkan build's llama-server,
    gives each Vulkan device's memory from its --list-devices."""
    src = sources or MachineSources()
    nvml, sysfs_root, amdsmi, cpu_counts, env = src.nvml, src.sysfs_root, src.amdsmi, src.cpu_counts, src.env
    memory, platform, machine, toolkit_dirs = src.memory, src.platform, src.machine, dict(src.toolkit_dirs)
    runner = runner or SubprocessRunner()
    os_ = platform or os_name()
    arch = machine or cpuinfo.machine()
    notes: list[str] = []
    gpus: list[GPU] = []
    ram_total, ram_available = memory()

    if os_ == "darwin":
        cpu, memsize, apple_gpus, apple_notes = apple.read_apple(runner, arch)
        gpus += apple_gpus
        notes += apple_notes
        ram_total = ram_total or memsize
    else:
        cpu = _linux_cpu(sysfs_root, arch) if os_ == "linux" else CPU(model=cpuinfo.processor(), arch=arch)
        nv_gpus, nv_notes = nvml_adapter.read_nvidia_gpus(nvml)
        gpus += nv_gpus
        notes += nv_notes
        if os_ == "linux":
            amd_gpus, amd_notes = amd_sysfs.read_amd_gpus(sysfs_root, amdsmi)
            gpus += amd_gpus
            notes += amd_notes
    vulkan_devices: list = []
    if os_ != "darwin":
        vulkan_devices, vk_notes = detect_vulkan(runner, vulkan_server, env)
        notes += vk_notes + vulkan_notes(vulkan_devices, have_gpu=bool(gpus))
    if cpu_counts is not None:
        physical, logical = cpu_counts()
        cpu.cores_physical = physical or cpu.cores_physical
        cpu.cores_logical = logical or cpu.cores_logical

    tools, tool_notes = toolchains.find_toolchains(runner, os_, toolkit_dirs)
    recommendation, rec_notes = recommend(os_, gpus, tools, cpu)
    return HardwareSnapshot(
        os=os_,
        cpu=cpu,
        ram_total_bytes=ram_total,
        ram_available_bytes=ram_available,
        gpus=gpus,
        vulkan_devices=vulkan_devices,
        toolchains=tools,
        recommendation=recommendation,
        notes=notes + tool_notes + rec_notes,
    )


def _linux_cpu(root: Path, arch: str | None) -> CPU:
    text = cpuinfo.read_proc_cpuinfo(root)
    return parse_proc_cpuinfo(text, arch) if text else CPU(arch=arch)
