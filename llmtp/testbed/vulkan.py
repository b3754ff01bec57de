"""What the Vulkan test tier needs on this machine (glslc, headers, a Vulkan device), and which device it uses."""

from __future__ import annotations

from llmtp.adapters.runner import Runner
from llmtp.adapters.vulkan_sdk import installed_vulkan_headers
from llmtp.core.vulkan_devices import VulkanDevice, parse_vulkaninfo_summary
from llmtp.errors import LlmtpError


def vulkan_devices(runner: Runner) -> list[VulkanDevice] | None:
    """vulkaninfo's devices; None when vulkaninfo is missing or fails."""
    exe = runner.which("vulkaninfo")
    if exe is None:
        return None
    try:
        return parse_vulkaninfo_summary(runner.run([exe, "--summary"], timeout=30).output)
    except LlmtpError:
        return None


def vulkan_tier_problem(runner: Runner) -> str | None:
    """Why the Vulkan tier cannot run here (the skip reason), or None when it can."""
    if runner.which("glslc") is None:
        return "vulkan tier: glslc not found (Debian/Ubuntu: apt install glslc)"
    if installed_vulkan_headers() is None:
        return "vulkan tier: no Vulkan headers (vulkan/vulkan_core.h; Debian/Ubuntu: apt install libvulkan-dev)"
    devices = vulkan_devices(runner)
    if devices is None:
        return "vulkan tier: vulkaninfo not found (Debian/Ubuntu: apt install vulkan-tools mesa-vulkan-drivers)"
    if not devices:
        return "vulkan tier: vulkaninfo lists no Vulkan device (Debian/Ubuntu: apt install mesa-vulkan-drivers)"
    return None


def test_device(devices: list[VulkanDevice]) -> VulkanDevice:
    """The device the tier runs on: a real GPU when there is one, else the first (lavapipe)."""
    return next((d for d in devices if not d.cpu_type), devices[0])


test_device.__test__ = False  # type: ignore[attr-defined]
