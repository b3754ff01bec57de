"""Vulkan devices: vulkaninfo --summary and a Vulkan build's --list-devices (captured on lavapipe), merged;
a CPU-type device is reported as what it is, never recommended, and chosen only on purpose."""

from __future__ import annotations

import json
from pathlib import Path

from test_detect_nvml import fake_pynvml
from test_detect_service import NO_AMDSMI, linux_root

from llmtp.core.hardware import GPU
from llmtp.core.probe import parse_list_devices
from llmtp.core.recommend import recommend
from llmtp.core.vulkan_devices import (
    VulkanDevice,
    list_devices_env,
    merge_list_devices,
    parse_visible,
    parse_vulkaninfo_summary,
    vulkan_notes,
)
from llmtp.services.machine.detect import MachineSources, detect_hardware
from llmtp.services.machine.vulkan_detect import detect_vulkan

FIX = Path(__file__).parent / "fixtures" / "vulkan"
SUMMARY = (FIX / "vulkaninfo-summary-lavapipe.txt").read_text(encoding="utf-8")
LISTED = (FIX / "list-devices-lavapipe.txt").read_text(encoding="utf-8")  # GGML_VK_VISIBLE_DEVICES=0
LISTED_DEFAULT = (FIX / "list-devices-lavapipe-default.txt").read_text(encoding="utf-8")  # variable unset
LLVMPIPE = "llvmpipe (LLVM 15.0.6, 256 bits)"


class Runner:
    def __init__(self, outputs: dict[tuple[str, ...], str], paths: dict[str, str]):
        self.outputs, self.paths, self.calls = outputs, paths, []

    def which(self, name):
        return self.paths.get(name)

    def run(self, argv, *, cwd=None, env=None, timeout=60):
        from llmtp.adapters.runner import Completed

        self.calls.append((tuple(argv), dict(env or {})))
        return Completed(list(argv), 0, self.outputs[tuple(argv)], "")


def test_parse_vulkaninfo_summary_lavapipe():
    (d,) = parse_vulkaninfo_summary(SUMMARY)
    assert (d.index, d.name, d.device_type, d.api_version) == (0, LLVMPIPE, "cpu", "1.3.230")
    assert d.driver == "Mesa 22.3.6 (LLVM 15.0.6)" and d.cpu_type and d.total_mib is None


def test_parse_vulkaninfo_summary_nothing():
    assert parse_vulkaninfo_summary("") == []
    assert parse_vulkaninfo_summary("ERROR: [Loader Message] Code 0 : vkCreateInstance: Found no drivers!\n") == []


def test_list_devices_of_the_vulkan_build():
    (d,) = parse_list_devices(LISTED)
    assert (d.id, d.backend, d.name, d.total_mib, d.free_mib) == ("Vulkan0", "Vulkan", LLVMPIPE, 2048, 2048)
    # Without GGML_VK_VISIBLE_DEVICES ggml-vulkan skips the CPU-type device: the build lists none.
    assert [x.backend for x in parse_list_devices(LISTED_DEFAULT)] == []


def test_merge_memory_by_visible_index_and_chosen():
    devices = parse_vulkaninfo_summary(SUMMARY)
    (d,) = merge_list_devices(devices, parse_list_devices(LISTED), [0], chosen=None)
    assert (d.total_mib, d.free_mib, d.source, d.chosen) == (2048, 2048, "vulkaninfo+list-devices", False)
    (d,) = merge_list_devices(devices, parse_list_devices(LISTED), [0], chosen=[0])
    assert d.chosen
    # Known only from the build (no vulkaninfo installed): a CPU-type driver is still recognised by name.
    (d,) = merge_list_devices([], parse_list_devices(LISTED), None, chosen=None)
    assert d.device_type is None and d.cpu_type and d.total_mib == 2048 and d.source == "list-devices"


def test_visible_env():
    assert parse_visible(None) is None and parse_visible("") is None and parse_visible(" , ") is None
    assert parse_visible("0, 2") == [0, 2]
    assert list_devices_env(parse_vulkaninfo_summary(SUMMARY)) == {"GGML_VK_VISIBLE_DEVICES": "0"}
    assert list_devices_env([]) == {}


def test_cpu_type_device_is_never_recommended():
    lavapipe = VulkanDevice(index=0, name=LLVMPIPE, device_type="cpu")
    (note,) = vulkan_notes([lavapipe], have_gpu=False)
    assert "CPU implementation of Vulkan, not a GPU" in note and "the cpu profile is faster" in note
    assert "GGML_VK_VISIBLE_DEVICES=0" in note
    (note,) = vulkan_notes([lavapipe], have_gpu=True)
    assert "the GPU found above is faster" in note
    chosen = lavapipe.model_copy(update={"chosen": True})
    assert "chosen by GGML_VK_VISIBLE_DEVICES" in vulkan_notes([chosen], have_gpu=False)[0]
    assert vulkan_notes([VulkanDevice(index=0, name="AMD Radeon RX 7900 XTX", device_type="discrete")], False) == []


def test_detect_reports_lavapipe_with_memory_and_recommends_cpu(tmp_path):
    server = tmp_path / "llama-server"
    runner = Runner(
        {("/usr/bin/vulkaninfo", "--summary"): SUMMARY, (str(server), "--list-devices"): LISTED},
        {"vulkaninfo": "/usr/bin/vulkaninfo"},
    )
    devices, notes = detect_vulkan(runner, server, env={})
    assert notes == [] and [(d.name, d.total_mib, d.chosen) for d in devices] == [(LLVMPIPE, 2048, False)]
    # The build was asked with every vulkaninfo device visible, so the CPU-type one reports its memory.
    assert runner.calls[-1] == ((str(server), "--list-devices"), {"GGML_VK_VISIBLE_DEVICES": "0"})
    nvml = fake_pynvml(json.loads((FIX.parent / "nvml/two-gpus-r550.json").read_text()), init_error=12)
    snap = detect_hardware(
        runner,
        sources=MachineSources(
            nvml=nvml,
            sysfs_root=linux_root(tmp_path, None),
            platform="linux",
            machine="x86_64",
            amdsmi=NO_AMDSMI,
            memory=lambda: (None, None),
            cpu_counts=lambda: (None, None),
            toolkit_dirs={},
            env={},
        ),
        vulkan_server=server,
    )
    assert snap.gpus == [] and snap.recommendation.profile == "cpu"
    assert snap.vulkan_devices[0].cpu_type and any("not a GPU" in n for n in snap.notes)


def test_lavapipe_beside_a_real_gpu_keeps_the_gpu_recommendation():
    gpus = [
        GPU(
            index=0,
            vendor="nvidia",
            name="RTX 4060 Ti",
            vram_total_bytes=16 << 30,
            cuda_arch="89",
            compute_capability="8.9",
            source="nvml",
        )
    ]
    rec, _ = recommend("linux", gpus, {})
    assert rec.profile == "cuda"  # vulkan devices never enter `gpus`: lavapipe cannot take the recommendation


def test_vulkan_tier_skip_reasons(monkeypatch):
    """The exact reason the `vulkan` tests skip with, for each missing piece."""
    from llmtp.testbed import vulkan as tier

    runner = Runner(
        {("/usr/bin/vulkaninfo", "--summary"): SUMMARY},
        {"vulkaninfo": "/usr/bin/vulkaninfo", "glslc": "/usr/bin/glslc"},
    )
    monkeypatch.setattr(tier, "installed_vulkan_headers", lambda: VulkanDevice(index=0, name="h"))
    assert tier.vulkan_tier_problem(runner) is None
    assert tier.test_device(parse_vulkaninfo_summary(SUMMARY)).name == LLVMPIPE
    gpu = VulkanDevice(index=1, name="AMD Radeon RX 7900 XTX", device_type="discrete")
    assert tier.test_device([*parse_vulkaninfo_summary(SUMMARY), gpu]) is gpu  # a real GPU wins
    runner.outputs[("/usr/bin/vulkaninfo", "--summary")] = "ERROR: Found no drivers!\n"
    assert tier.vulkan_tier_problem(runner) == (
        "vulkan tier: vulkaninfo lists no Vulkan device (Debian/Ubuntu: apt install mesa-vulkan-drivers)"
    )
    del runner.paths["vulkaninfo"]
    assert tier.vulkan_tier_problem(runner) == (
        "vulkan tier: vulkaninfo not found (Debian/Ubuntu: apt install vulkan-tools mesa-vulkan-drivers)"
    )
    monkeypatch.setattr(tier, "installed_vulkan_headers", lambda: None)
    assert tier.vulkan_tier_problem(runner) == (
        "vulkan tier: no Vulkan headers (vulkan/vulkan_core.h; Debian/Ubuntu: apt install libvulkan-dev)"
    )
    del runner.paths["glslc"]
    assert tier.vulkan_tier_problem(runner) == "vulkan tier: glslc not found (Debian/Ubuntu: apt install glslc)"
