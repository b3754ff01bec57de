"""Vulkan devices as values: `vulkaninfo --summary` and a Vulkan build's `--list-devices`, merged; which of
them are CPU implementations (lavapipe, SwiftShader) that llmtp never picks unless chosen on purpose."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pydantic import BaseModel

from llmtp.core.capabilities import Device

# The environment variable ggml-vulkan reads (b11434, ggml_vk_instance_init): a comma-separated list of
# device indices. Without it, CPU-type devices are skipped; with it, exactly the named devices are used.
VISIBLE_ENV = "GGML_VK_VISIBLE_DEVICES"

# vulkaninfo --summary (vulkan-tools 1.3.239), one block per device:
#   GPU0:
#   	apiVersion         = 1.3.230
#   	deviceType         = PHYSICAL_DEVICE_TYPE_CPU
#   	deviceName         = llvmpipe (LLVM 15.0.6, 256 bits)
#   	driverName         = llvmpipe
#   	driverInfo         = Mesa 22.3.6 (LLVM 15.0.6)
_GPU_HEADER = re.compile(r"^GPU(\d+):\s*$")
_FIELD = re.compile(r"^\s+(\w+)\s*=\s*(.*?)\s*$")
_TYPES = {
    "PHYSICAL_DEVICE_TYPE_CPU": "cpu",
    "PHYSICAL_DEVICE_TYPE_DISCRETE_GPU": "discrete",
    "PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU": "integrated",
    "PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU": "virtual",
    "PHYSICAL_DEVICE_TYPE_OTHER": "other",
}
# Names of Vulkan drivers that run on the CPU, for a device known only from --list-devices (no type there).
_CPU_DRIVER_NAMES = re.compile(r"llvmpipe|lavapipe|SwiftShader", re.I)


class VulkanDevice(BaseModel):
    index: int  # the Vulkan physical-device index (what GGML_VK_VISIBLE_DEVICES names)
    name: str
    device_type: str | None = None  # "discrete", "integrated", "virtual", "cpu", "other"; None: unknown
    api_version: str | None = None
    driver: str | None = None  # driverInfo, else driverName: "Mesa 22.3.6 (LLVM 15.0.6)"
    total_mib: int | None = None  # from a Vulkan build's --list-devices; vulkaninfo --summary has no memory
    free_mib: int | None = None
    source: str = "vulkaninfo"  # "vulkaninfo", "list-devices", or both joined by "+"
    chosen: bool = False  # named in GGML_VK_VISIBLE_DEVICES

    @property
    def cpu_type(self) -> bool:
        """A Vulkan implementation that executes on the CPU: reported, never recommended."""
        if self.device_type is not None:
            return self.device_type == "cpu"
        return _CPU_DRIVER_NAMES.search(self.name) is not None


def parse_vulkaninfo_summary(text: str) -> list[VulkanDevice]:
    """Every `GPUn:` block of `vulkaninfo --summary`; [] when there is none."""
    devices: list[VulkanDevice] = []
    fields: dict[str, str] = {}
    index: int | None = None

    def flush() -> None:
        if index is not None and fields.get("deviceName"):
            devices.append(
                VulkanDevice(
                    index=index,
                    name=fields["deviceName"],
                    device_type=_TYPES.get(fields.get("deviceType", "")),
                    api_version=fields.get("apiVersion"),
                    driver=fields.get("driverInfo") or fields.get("driverName"),
                )
            )

    for line in text.splitlines():
        header = _GPU_HEADER.match(line)
        if header:
            flush()
            index, fields = int(header.group(1)), {}
            continue
        m = _FIELD.match(line)
        if m and index is not None:
            fields[m.group(1)] = m.group(2)
        elif index is not None and line.strip() and not line.startswith((" ", "\t")):
            flush()  # the next section ('DISPLAY' ... or another header) ends the block
            index, fields = None, {}
    flush()
    return devices


def parse_visible(value: str | None) -> list[int] | None:
    """GGML_VK_VISIBLE_DEVICES as indices: "0,2" -> [0, 2]; None when unset or empty. Entries that are not
    numbers are dropped, as ggml-vulkan's std::stoi would fail on them."""
    if not value or not value.strip():
        return None
    out = [int(p) for p in (s.strip() for s in value.split(",")) if p.isdigit()]
    return out or None


def list_devices_env(devices: Sequence[VulkanDevice]) -> dict[str, str]:
    """The environment that makes a Vulkan build list every device vulkaninfo found, CPU-type ones included
    (to read their memory); {} when vulkaninfo found none (the build then lists what it picks itself)."""
    return {VISIBLE_ENV: ",".join(str(d.index) for d in devices)} if devices else {}


def merge_list_devices(
    devices: Sequence[VulkanDevice], listed: Sequence[Device], visible: list[int] | None, chosen: list[int] | None
) -> list[VulkanDevice]:
    """Memory from a Vulkan build's --list-devices joined to vulkaninfo's devices. `visible`: the indices the
    build was shown (VulkanN is visible[N]); None: the build chose itself, so names are matched instead.
    Devices only the build lists are added. `chosen`: the user's GGML_VK_VISIBLE_DEVICES."""
    out = [d.model_copy() for d in devices]
    by_index = {d.index: d for d in out}
    vk = [d for d in listed if d.backend == "Vulkan"]
    for n, dev in enumerate(vk):
        number = int(dev.id[len("Vulkan") :]) if dev.id[len("Vulkan") :].isdigit() else n
        index = visible[number] if visible is not None and number < len(visible) else None
        match = (
            by_index.get(index)
            if index is not None
            else next((d for d in out if d.name == dev.name and d.total_mib is None), None)
        )
        if match is None:
            match = VulkanDevice(index=index if index is not None else number, name=dev.name, source="list-devices")
            out.append(match)
        elif "list-devices" not in match.source:
            match.source += "+list-devices"
        match.total_mib, match.free_mib = dev.total_mib, dev.free_mib
    for d in out:
        d.chosen = chosen is not None and d.index in chosen
    return sorted(out, key=lambda d: d.index)


def vulkan_notes(devices: Sequence[VulkanDevice], have_gpu: bool) -> list[str]:
    """What detect says about CPU-type Vulkan devices: what they are, that llmtp does not pick them, and how
    to choose one on purpose."""
    notes = []
    for d in devices:
        if not d.cpu_type:
            continue
        if d.chosen:
            notes.append(
                f"Vulkan device {d.index} ({d.name}) runs on the CPU and is chosen by {VISIBLE_ENV}: "
                "a Vulkan build will use it (useful for testing GPU code paths; slower than the "
                "CPU backend)."
            )
            continue
        instead = "the GPU found above" if have_gpu else "the cpu profile"
        notes.append(
            f"Vulkan device {d.index} ({d.name}) is a CPU implementation of Vulkan, not a GPU: llmtp "
            f"does not recommend it ({instead} is faster). To use it on purpose (testing), build the "
            f"vulkan profile and set {VISIBLE_ENV}={d.index}."
        )
    return notes


def listed_vulkan_gpus(listed: Sequence[Device]) -> list[tuple[str, int | None, int | None]]:
    """(name, total bytes, free bytes) of each Vulkan device a build lists: what a plan on a Vulkan build
    may use where NVML and sysfs see no GPU (an Intel GPU; lavapipe chosen with GGML_VK_VISIBLE_DEVICES)."""
    mib = 1024 * 1024
    return [
        (
            f"{d.id}: {d.name}",
            d.total_mib * mib if d.total_mib is not None else None,
            d.free_mib * mib if d.free_mib is not None else None,
        )
        for d in listed
        if d.backend == "Vulkan"
    ]
