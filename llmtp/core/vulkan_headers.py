"""The installed Vulkan headers (vulkan_core.h) as values, and which conditional patches they call for."""

from __future__ import annotations

import re

from pydantic import BaseModel

# vulkan_core.h (Debian 12's libvulkan-dev 1.3.239):
#   #define VK_HEADER_VERSION 239
#   #define VK_HEADER_VERSION_COMPLETE VK_MAKE_API_VERSION(0, 1, 3, VK_HEADER_VERSION)
# and, in headers that have the extension (1.3.261 and later):
#   #define VK_EXT_layer_settings 1
_HEADER_VERSION = re.compile(r"^#define\s+VK_HEADER_VERSION\s+(\d+)\s*$", re.M)
_COMPLETE = re.compile(
    r"^#define\s+VK_HEADER_VERSION_COMPLETE\s+VK_MAKE_API_VERSION\(\s*\d+\s*,\s*(\d+)\s*,"
    r"\s*(\d+)\s*,\s*VK_HEADER_VERSION\s*\)",
    re.M,
)
_LAYER_SETTINGS = re.compile(r"^#define\s+VK_EXT_layer_settings\s+1\b", re.M)

# The conditions a series line may carry (`NAME.patch SHA256 when=CONDITION`), each with the backend it is
# about: a patch for the Vulkan headers never touches (nor rehashes) a CPU or CUDA build.
CONDITIONS = {"vulkan-headers-lack-layer-settings": "vulkan"}


class VulkanHeaders(BaseModel):
    """What one vulkan_core.h says. `version` is "1.3.239"; None when the file does not say."""

    path: str
    version: str | None = None
    layer_settings: bool = False  # defines VK_EXT_layer_settings (vk::LayerSettingEXT in vulkan.hpp)


def parse_vulkan_core_h(text: str, path: str) -> VulkanHeaders:
    """The version and the extension this patch set cares about, from the header's text."""
    patch = _HEADER_VERSION.search(text)
    complete = _COMPLETE.search(text)
    version = None
    if patch and complete:
        version = f"{complete.group(1)}.{complete.group(2)}.{patch.group(1)}"
    elif patch:
        version = f"1.x.{patch.group(1)}"  # the major.minor line is missing: say only what the file says
    return VulkanHeaders(path=path, version=version, layer_settings=_LAYER_SETTINGS.search(text) is not None)


def condition_holds(condition: str, backend: str, vulkan: VulkanHeaders | None) -> str | None:
    """Why a conditional patch applies to this build (the line the build report shows), or None when it
    does not. Headers not found: None; the configure step then names the missing package."""
    if CONDITIONS.get(condition) != backend:
        return None
    if condition == "vulkan-headers-lack-layer-settings":
        if vulkan is None or vulkan.layer_settings:
            return None
        return (
            f"the Vulkan headers {vulkan.version or '(version unknown)'} at {vulkan.path} lack "
            "VK_EXT_layer_settings, which ggml-vulkan uses unguarded; the patch creates the instance "
            "without the validation layer's settings"
        )
    return None
