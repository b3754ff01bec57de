"""AMD GPUs through the amdgpu driver's sysfs files and the KFD topology; amdsmi adds names where installed.

Files read (under `root`, "/" on a real machine, a fake tree in tests):
  sys/class/drm/cardN/device/{vendor,device,uevent,mem_info_vram_total,mem_info_vram_used,
                              mem_info_gtt_total,product_name,drm/renderD*}
  sys/class/kfd/kfd/topology/nodes/*/properties   (gfx_target_version, drm_render_minor)
  usr/share/misc/pci.ids or usr/share/hwdata/pci.ids   (device names, as lspci shows them)
rocm-smi is not consulted: its product names come from the same pci.ids.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from llmtp.core.detect_parse import AMD_VENDOR_ID, gfx_target, is_amd_apu, parse_kfd_properties, pci_ids_name, sysfs_int
from llmtp.core.hardware import GPU

PCI_IDS = ("usr/share/misc/pci.ids", "usr/share/hwdata/pci.ids")


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cards(root: Path) -> list[Path]:
    drm = root / "sys/class/drm"
    try:
        entries = [p for p in drm.iterdir() if re.fullmatch(r"card\d+", p.name)]
    except OSError:
        return []
    return sorted(entries, key=lambda p: int(p.name[4:]))


def _kfd_nodes(root: Path) -> dict[int, dict[str, int]]:
    """KFD GPU nodes keyed by DRM render minor (CPU nodes have no gfx target and are skipped)."""
    nodes: dict[int, dict[str, int]] = {}
    base = root / "sys/class/kfd/kfd/topology/nodes"
    try:
        dirs = list(base.iterdir())
    except OSError:
        return nodes
    for node in dirs:
        props = parse_kfd_properties(_read(node / "properties") or "")
        if props.get("gfx_target_version", 0) > 0 and "drm_render_minor" in props:
            nodes[props["drm_render_minor"]] = props
    return nodes


def _render_minor(device: Path) -> int | None:
    try:
        names = [p.name for p in (device / "drm").iterdir()]
    except OSError:
        return None
    minors = [int(n[len("renderD") :]) for n in names if re.fullmatch(r"renderD\d+", n)]
    return minors[0] if minors else None


def _uevent(device: Path) -> dict[str, str]:
    """`PCI_SLOT_NAME=0000:03:00.0` / `DRIVER=amdgpu` lines."""
    out: dict[str, str] = {}
    for line in (_read(device / "uevent") or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _pci_name(root: Path, vendor: int, device: int) -> str | None:
    for rel in PCI_IDS:
        try:
            with open(root / rel, encoding="utf-8", errors="replace") as fh:
                return pci_ids_name((line.rstrip("\n") for line in fh), vendor, device)
        except OSError:
            continue
    return None


def read_amd_gpus(root: Path = Path("/"), amdsmi: Any | None = None) -> tuple[list[GPU], list[str]]:
    """Every card the amdgpu driver exposes, with VRAM/GTT and the gfx target from KFD."""
    notes: list[str] = []
    cards = [c for c in _cards(root) if sysfs_int(_read(c / "device/vendor")) == AMD_VENDOR_ID]
    if not cards:
        return [], []
    kfd = _kfd_nodes(root)
    if not kfd:
        notes.append(
            "AMD: no KFD topology (/sys/class/kfd): the amdgpu driver runs without ROCm "
            "compute support, so gfx targets are unknown."
        )
    market = _amdsmi_names(amdsmi)
    gpus: list[GPU] = []
    for card in cards:
        dev = card / "device"
        uevent = _uevent(dev)
        if uevent.get("DRIVER", "amdgpu") != "amdgpu":
            notes.append(f"AMD {card.name}: driven by {uevent['DRIVER']}, not amdgpu; skipped.")
            continue
        device_id = sysfs_int(_read(dev / "device"))
        vram_total = sysfs_int(_read(dev / "mem_info_vram_total"))
        vram_used = sysfs_int(_read(dev / "mem_info_vram_used"))
        gtt_total = sysfs_int(_read(dev / "mem_info_gtt_total"))
        minor = _render_minor(dev)
        props = kfd.get(minor, {}) if minor is not None else {}
        gfx = gfx_target(props.get("gfx_target_version", 0))
        bus_id = uevent.get("PCI_SLOT_NAME", "").lower() or None
        name = (
            market.get(bus_id or "")
            or (_read(dev / "product_name") or "").strip()
            or (_pci_name(root, AMD_VENDOR_ID, device_id) if device_id is not None else None)
            or (f"AMD GPU 0x{device_id:04x}" if device_id is not None else f"AMD GPU {card.name}")
        )
        gpus.append(
            GPU(
                index=len(gpus),
                vendor="amd",
                name=name,
                vram_total_bytes=vram_total,
                vram_free_bytes=vram_total - vram_used if vram_total is not None and vram_used is not None else None,
                unified_memory=is_amd_apu(gfx, vram_total, gtt_total, props.get("cpu_cores_count")),
                gtt_total_bytes=gtt_total,
                gfx_target=gfx,
                pci_bus_id=bus_id,
                source="sysfs+amdsmi" if bus_id in market else "sysfs",
            )
        )
    return gpus, notes


def _amdsmi_names(amdsmi: Any | None) -> dict[str, str]:
    """PCI bus id -> market name ("Radeon RX 7900 XTX") from amdsmi, when the ROCm library is
    installed. Optional: any failure just leaves the pci.ids name in place."""
    if amdsmi is None:
        try:
            import amdsmi as amdsmi_module  # ships with ROCm, not on PyPI's default path
        except Exception:  # ImportError, or the library failing to load its .so
            return {}
        amdsmi = amdsmi_module
    names: dict[str, str] = {}
    try:
        amdsmi.amdsmi_init()
        try:
            for handle in amdsmi.amdsmi_get_processor_handles():
                bdf = str(amdsmi.amdsmi_get_gpu_device_bdf(handle)).lower()
                market_name = amdsmi.amdsmi_get_gpu_asic_info(handle).get("market_name")
                if market_name and market_name != "N/A":
                    names[bdf] = str(market_name)
        finally:
            amdsmi.amdsmi_shut_down()
    except Exception:  # amdsmi raises its own AmdSmiException family on any driver trouble
        return names
    return names
