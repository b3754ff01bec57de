"""AMD through a fake sysfs tree: a discrete RX 7900 XTX and a Phoenix APU; plus the pure helpers."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmtp.adapters.amd_sysfs import read_amd_gpus
from llmtp.core.detect_parse import gfx_target, is_amd_apu, parse_kfd_properties, pci_ids_name, sysfs_int

SYSFS = Path(__file__).parent / "fixtures" / "sysfs"
NO_AMDSMI = SimpleNamespace(amdsmi_init=lambda: (_ for _ in ()).throw(RuntimeError("no ROCm")))


@pytest.mark.parametrize(
    "value, target",
    [
        (110000, "gfx1100"),
        (90010, "gfx90a"),
        (90012, "gfx90c"),
        (100300, "gfx1030"),
        (110501, "gfx1151"),
        (90402, "gfx942"),
        (120001, "gfx1201"),
        (0, None),
    ],
)
def test_gfx_target_from_kfd_version(value, target):
    assert gfx_target(value) == target


def test_kfd_properties_parser_on_fixture():
    props = parse_kfd_properties((SYSFS / "rx7900xtx/sys/class/kfd/kfd/topology/nodes/1/properties").read_text())
    assert (props["gfx_target_version"], props["drm_render_minor"], props["vendor_id"]) == (110000, 128, 4098)


def test_sysfs_int():
    assert (sysfs_int("0x1002\n"), sysfs_int("25769803776\n"), sysfs_int(""), sysfs_int(None)) == (
        4098,
        25769803776,
        None,
        None,
    )


def test_pci_ids_lookup_stays_inside_the_vendor():
    lines = (SYSFS / "rx7900xtx/usr/share/misc/pci.ids").read_text().splitlines()
    assert pci_ids_name(lines, 0x1002, 0x744C) == "Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]"
    assert pci_ids_name(lines, 0x1002, 0x2000) is None  # 2000 exists, but under ASPEED
    assert pci_ids_name(lines, 0x1A03, 0x2000) == "ASPEED Graphics Family"


def test_discrete_card():
    gpus, notes = read_amd_gpus(SYSFS / "rx7900xtx", amdsmi=NO_AMDSMI)
    assert notes == []
    assert [g.model_dump() for g in gpus] == [
        {
            "index": 0,
            "vendor": "amd",
            "name": "Navi 31 [Radeon RX 7900 XT/7900 XTX/7900 GRE/7900M]",
            "vram_total_bytes": 25769803776,
            "vram_free_bytes": 25769803776 - 1104150528,
            "unified_memory": False,
            "gtt_total_bytes": 33554432000,
            "compute_capability": None,
            "cuda_arch": None,
            "gfx_target": "gfx1100",
            "driver_version": None,
            "cuda_driver_version": None,
            "pcie_generation": None,
            "pcie_width": None,
            "memory_bandwidth_gbps": None,
            "pci_bus_id": "0000:03:00.0",
            "gpu_cores": None,
            "source": "sysfs",
        }
    ]


def test_apu_is_unified_memory():
    (gpu,), notes = read_amd_gpus(SYSFS / "apu-phoenix", amdsmi=NO_AMDSMI)
    assert notes == []
    assert (gpu.name, gpu.gfx_target, gpu.unified_memory) == ("Phoenix1", "gfx1103", True)
    assert (gpu.vram_total_bytes, gpu.vram_free_bytes, gpu.gtt_total_bytes) == (536870912, 369098752, 16106127360)


def test_apu_without_kfd_is_recognised_by_its_carve_out(tmp_path):
    root = tmp_path / "apu"
    shutil.copytree(SYSFS / "apu-phoenix", root)
    shutil.rmtree(root / "sys/class/kfd")
    (gpu,), notes = read_amd_gpus(root, amdsmi=NO_AMDSMI)
    assert (gpu.gfx_target, gpu.unified_memory) == (None, True)
    assert notes == [
        "AMD: no KFD topology (/sys/class/kfd): the amdgpu driver runs without ROCm compute "
        "support, so gfx targets are unknown."
    ]


def test_amdsmi_market_name_wins_when_installed():
    amdsmi = SimpleNamespace(
        amdsmi_init=lambda: None,
        amdsmi_shut_down=lambda: None,
        amdsmi_get_processor_handles=lambda: ["h0"],
        amdsmi_get_gpu_device_bdf=lambda h: "0000:03:00.0",
        amdsmi_get_gpu_asic_info=lambda h: {"market_name": "Radeon RX 7900 XTX", "vendor_id": "0x1002"},
    )
    (gpu,), _ = read_amd_gpus(SYSFS / "rx7900xtx", amdsmi=amdsmi)
    assert (gpu.name, gpu.source) == ("Radeon RX 7900 XTX", "sysfs+amdsmi")


def test_no_amd_card_and_no_sysfs(tmp_path):
    assert read_amd_gpus(tmp_path, amdsmi=NO_AMDSMI) == ([], [])


@pytest.mark.parametrize(
    "gfx, vram, gtt, cpu_cores, apu",
    [
        ("gfx1151", 512 << 20, 64 << 30, 0, True),  # Strix Halo, known APU target
        ("gfx1100", 24 << 30, 32 << 30, 0, False),  # discrete, whatever the GTT
        (None, 512 << 20, 16 << 30, None, True),  # no KFD: small carve-out + large GTT
        (None, 4 << 30, 16 << 30, None, False),  # no KFD: a 4 GiB discrete card
        (None, 512 << 20, None, None, False),  # GTT unknown: not claimed
        (None, 8 << 30, 16 << 30, 4, True),  # KFD node holding CPU cores
    ],
)
def test_apu_rule(gfx, vram, gtt, cpu_cores, apu):
    assert is_amd_apu(gfx, vram, gtt, cpu_cores) is apu
