"""Finds and reads the Vulkan headers a build would compile against (vulkan/vulkan_core.h), and the
GGML_VK_VISIBLE_DEVICES a user set."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from llmtp.core.vulkan_devices import VISIBLE_ENV
from llmtp.core.vulkan_headers import VulkanHeaders, parse_vulkan_core_h

# Where CMake's FindVulkan looks on Linux: $VULKAN_SDK/include first (LunarG's SDK), then the system.
SYSTEM_INCLUDE_DIRS = ("/usr/include", "/usr/local/include")


def header_candidates(env: Mapping[str, str], system_dirs: tuple[str, ...] = SYSTEM_INCLUDE_DIRS) -> list[Path]:
    dirs = [Path(env["VULKAN_SDK"]) / "include"] if env.get("VULKAN_SDK") else []
    return [Path(d) / "vulkan" / "vulkan_core.h" for d in [*dirs, *system_dirs]]


def installed_vulkan_headers(
    env: Mapping[str, str] | None = None, system_dirs: tuple[str, ...] = SYSTEM_INCLUDE_DIRS
) -> VulkanHeaders | None:
    """The first vulkan_core.h found, parsed; None when there is none (or it cannot be read)."""
    for path in header_candidates(os.environ if env is None else env, system_dirs):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        return parse_vulkan_core_h(text, str(path))
    return None


def visible_devices_env() -> dict[str, str]:
    """{GGML_VK_VISIBLE_DEVICES: value} when the user set it (a Vulkan device chosen on purpose), else {}."""
    value = os.environ.get(VISIBLE_ENV)
    return {VISIBLE_ENV: value} if value is not None else {}
