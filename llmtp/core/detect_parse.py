"""Pure parsers and conversions for GPU facts: NVML numbers, AMD sysfs/KFD text, pci.ids, system_profiler JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from llmtp.core.hardware import GPU, Vendor

AMD_VENDOR_ID = 0x1002

# gfx targets of AMD APUs (GPU on the CPU die, memory shared with the system), from the amdgpu
# kernel docs' APU table and the LLVM AMDGPU processor list: Carrizo/Stoney, Raven/Picasso, Renoir/
# Cezanne/Barcelo, Van Gogh (Steam Deck), Rembrandt, Raphael/Granite Ridge, Mendocino, Phoenix/
# Hawk Point, Strix Point, Strix Halo, Krackan Point, Cyan Skillfish.
AMD_APU_GFX_TARGETS = frozenset(
    {
        "gfx801",
        "gfx810",
        "gfx902",
        "gfx909",
        "gfx90c",
        "gfx1013",
        "gfx1033",
        "gfx1035",
        "gfx1036",
        "gfx1037",
        "gfx1103",
        "gfx1150",
        "gfx1151",
        "gfx1152",
    }
)
# Without a gfx target, a VRAM carve-out at or under this size next to a larger GTT pool means an
# APU: no discrete card worth running llama.cpp on has 1 GiB or less (Ollama uses the same bound).
APU_CARVEOUT_MAX_BYTES = 1 << 30


# --- NVIDIA (values NVML returns) ---------------------------------------------------------------


def cuda_arch(compute_capability: str) -> str:
    """ "8.9" -> "89", the spelling CMAKE_CUDA_ARCHITECTURES wants."""
    major, _, minor = compute_capability.partition(".")
    return f"{int(major)}{int(minor or 0)}"


def cuda_version_str(version: int) -> str | None:
    """nvmlSystemGetCudaDriverVersion(_v2) value 12040 -> "12.4" (CUDA encodes 1000*major + 10*minor)."""
    if version <= 0:
        return None
    return f"{version // 1000}.{(version % 1000) // 10}"


def nvml_bandwidth_gbps(bus_width_bits: int | None, max_mem_clock_mhz: int | None) -> float | None:
    """Peak memory bandwidth in GB/s from NVML's memory bus width and max memory clock.

    NVML reports the memory clock at half the effective data rate for every memory type it
    covers (GDDR6/6X/7 and HBM), so bandwidth = clock * 2 transfers * bus width / 8 bits.
    Checks: RTX 4090 (10501 MHz, 384 bit) -> 1008 GB/s; H100 SXM (2619 MHz, 5120 bit) -> 3352 GB/s,
    both the datasheet figures. Either input unknown (or 0) -> None.
    """
    if not bus_width_bits or not max_mem_clock_mhz:
        return None
    return round(max_mem_clock_mhz * 2 * bus_width_bits / 8 / 1000, 1)


def text(value: str | bytes) -> str:
    """Old pynvml releases return bytes where new ones return str."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --- AMD (sysfs and KFD topology) -----------------------------------------------------------------


def sysfs_int(raw: str | None) -> int | None:
    """A sysfs number: `25753026560\\n` (decimal) or `0x1002\\n` (hex ids). Empty/garbage -> None."""
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return int(raw, 16) if raw.lower().startswith("0x") else int(raw)
    except ValueError:
        return None


def parse_kfd_properties(text_: str) -> dict[str, int]:
    """/sys/class/kfd/kfd/topology/nodes/N/properties: one `name value` pair per line.

    Sample: `gfx_target_version 110000` / `drm_render_minor 128` / `cpu_cores_count 0`
    """
    out: dict[str, int] = {}
    for line in text_.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"-?\d+", parts[1]):
            out[parts[0]] = int(parts[1])
    return out


def gfx_target(gfx_target_version: int) -> str | None:
    """KFD `gfx_target_version` -> LLVM target: 110000 -> gfx1100, 90010 -> gfx90a, 90012 -> gfx90c.

    The value is major*10000 + minor*100 + stepping; LLVM writes minor and stepping as one hex
    digit each. 0 (CPU nodes) -> None.
    """
    if gfx_target_version <= 0:
        return None
    major, rest = divmod(gfx_target_version, 10000)
    minor, stepping = divmod(rest, 100)
    return f"gfx{major}{minor:x}{stepping:x}"


def is_amd_apu(
    gfx: str | None, vram_total: int | None, gtt_total: int | None, kfd_cpu_cores: int | None = None
) -> bool:
    """An AMD GPU that shares system memory (an APU): a known APU gfx target, a KFD node that also
    holds CPU cores, or - with no gfx target known - a carve-out of at most 1 GiB beside a larger GTT."""
    if gfx is not None:
        return gfx in AMD_APU_GFX_TARGETS
    if kfd_cpu_cores:
        return True
    return (
        vram_total is not None
        and gtt_total is not None
        and vram_total <= APU_CARVEOUT_MAX_BYTES
        and gtt_total > vram_total
    )


def pci_ids_name(lines: Iterable[str], vendor: int, device: int) -> str | None:
    """The device name from a pci.ids file (/usr/share/misc/pci.ids, /usr/share/hwdata/pci.ids).

    Sample:
        1002  Advanced Micro Devices, Inc. [AMD/ATI]
        <TAB>744c  Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]
    """
    want_vendor, want_device = f"{vendor:04x}", f"{device:04x}"
    in_vendor = False
    for line in lines:
        if not line or line.startswith("#"):
            continue
        if not line.startswith("\t"):
            if in_vendor:
                return None  # left the vendor's section without a match
            in_vendor = line[:4].lower() == want_vendor
        elif in_vendor and not line.startswith("\t\t") and line[1:5].lower() == want_device:
            return line[5:].strip() or None
    return None


# --- Apple (system_profiler) ----------------------------------------------------------------------

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(MB|GB|TB)\s*$", re.I)
_UNITS = {"mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}


def _size_bytes(value: object) -> int | None:
    """system_profiler sizes: "1536 MB", "8 GB" (binary units, as macOS shows VRAM)."""
    m = _SIZE.match(value) if isinstance(value, str) else None
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()]) if m else None


def _vendor(raw: str, name: str) -> Vendor:
    """spdisplays_vendor is "sppci_vendor_Apple" / "sppci_vendor_amd" on recent macOS and
    "ATI (0x1002)" / "NVIDIA (0x10de)" on older ones; the model name decides otherwise."""
    words = (raw + " " + name).lower()
    if "apple" in raw.lower() or name.startswith("Apple "):
        return "apple"
    if re.search(r"\b(amd|ati|radeon)\b|_amd|0x1002", words):
        return "amd"
    if re.search(r"nvidia|geforce|quadro|0x10de", words):
        return "nvidia"
    if re.search(r"intel|0x8086", words):
        return "intel"
    return "other"


def parse_system_profiler_displays(json_text: str, memsize: int | None) -> list[GPU]:
    """GPUs from `system_profiler SPDisplaysDataType -json`.

    Sample entry (Apple M2 Pro):
        {"_name": "Apple M2 Pro", "sppci_cores": "19", "sppci_model": "Apple M2 Pro",
         "spdisplays_vendor": "sppci_vendor_Apple", "sppci_device_type": "spdisplays_gpu", ...}
    Apple silicon shares all of `memsize` (sysctl hw.memsize) with the CPU: unified memory, and the
    free part is not reported (None). Intel Macs give "spdisplays_vram": "8 GB" or, for an
    integrated GPU, "spdisplays_vram_shared": "1536 MB". Unparseable JSON -> [].
    """
    try:
        data = json.loads(json_text)
    except ValueError:
        return []
    entries = data.get("SPDisplaysDataType") if isinstance(data, dict) else None
    gpus: list[GPU] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("sppci_model") or entry.get("_name") or "").strip()
        if not name:
            continue
        vendor = _vendor(str(entry.get("spdisplays_vendor", "")), name)
        cores = entry.get("sppci_cores")
        gpu = GPU(
            index=len(gpus),
            vendor=vendor,
            name=name,
            source="system_profiler",
            gpu_cores=int(cores) if isinstance(cores, str) and cores.isdigit() else None,
        )
        if vendor == "apple":
            gpu.unified_memory = True
            gpu.vram_total_bytes = memsize
        elif _size_bytes(entry.get("spdisplays_vram_shared")) is not None:
            gpu.unified_memory = True
            gpu.vram_total_bytes = _size_bytes(entry.get("spdisplays_vram_shared"))
        else:
            gpu.vram_total_bytes = _size_bytes(entry.get("spdisplays_vram"))
        gpus.append(gpu)
    return gpus
