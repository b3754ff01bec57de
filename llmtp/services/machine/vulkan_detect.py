"""Vulkan devices of this machine: `vulkaninfo --summary`, then a Vulkan build's `--list-devices` for memory."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from llmtp.adapters.runner import Runner
from llmtp.adapters.vulkan_sdk import visible_devices_env
from llmtp.core.hardware import GPU
from llmtp.core.probe import parse_list_devices
from llmtp.core.vulkan_devices import (
    VISIBLE_ENV,
    VulkanDevice,
    list_devices_env,
    listed_vulkan_gpus,
    merge_list_devices,
    parse_visible,
    parse_vulkaninfo_summary,
)
from llmtp.errors import LlmtpError


def detect_vulkan(
    runner: Runner, server: Path | None = None, env: Mapping[str, str] | None = None
) -> tuple[list[VulkanDevice], list[str]]:
    """(devices, notes). `server`: a Vulkan build's llama-server, asked for memory with every device made
    visible (so a CPU-type one is measured too); None: vulkaninfo alone (memory unknown)."""
    if env is None:
        env = visible_devices_env()
    notes: list[str] = []
    devices: list[VulkanDevice] = []
    vulkaninfo = runner.which("vulkaninfo")
    if vulkaninfo:
        try:
            done = runner.run([vulkaninfo, "--summary"], timeout=30)
            devices = parse_vulkaninfo_summary(done.output)
        except LlmtpError as exc:
            notes.append(f"vulkaninfo --summary failed: {exc.message}")
    chosen = parse_visible(env.get(VISIBLE_ENV))
    if server is None:
        return merge_list_devices(devices, [], None, chosen), notes
    show = list_devices_env(devices)
    try:
        done = runner.run([str(server), "--list-devices"], env=show or None, timeout=120)
    except LlmtpError as exc:
        notes.append(f"{server} --list-devices failed: {exc.message}")
        return merge_list_devices(devices, [], None, chosen), notes
    listed = parse_list_devices(done.output) or []
    visible = parse_visible(show.get(VISIBLE_ENV)) if show else parse_visible(env.get(VISIBLE_ENV))
    return merge_list_devices(devices, listed, visible, chosen), notes


def gpus_of_build(caps) -> list[GPU]:
    """The Vulkan devices a build's probe listed, as GPUs a plan can use (memory from --list-devices). A
    CPU-type device appears only when GGML_VK_VISIBLE_DEVICES named it at probe time: chosen on purpose."""
    return [
        GPU(index=i, vendor="other", name=name, vram_total_bytes=total, vram_free_bytes=free, source="list-devices")
        for i, (name, total, free) in enumerate(listed_vulkan_gpus(caps.devices or []))
    ]
