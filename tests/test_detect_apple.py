"""Apple: system_profiler JSON parser on captured samples, and the adapter through a fake Runner."""

from __future__ import annotations

from pathlib import Path

from llmtp.adapters.apple import PROFILER_ARGV, SYSCTL_ARGV, read_apple
from llmtp.adapters.runner import Completed
from llmtp.core.detect_parse import parse_system_profiler_displays
from llmtp.errors import ToolMissingError

FIX = Path(__file__).parent / "fixtures" / "apple"
M2_PRO_RAM = 34359738368


def test_m2_pro_is_one_unified_memory_gpu():
    (gpu,) = parse_system_profiler_displays((FIX / "m2pro-system_profiler-displays.json").read_text(), M2_PRO_RAM)
    assert gpu.model_dump(exclude_defaults=True) == {
        "index": 0,
        "vendor": "apple",
        "name": "Apple M2 Pro",
        "vram_total_bytes": M2_PRO_RAM,
        "unified_memory": True,
        "gpu_cores": 19,
        "source": "system_profiler",
    }
    assert gpu.vram_free_bytes is None  # not reported: never invented


def test_intel_mac_with_integrated_and_discrete_gpu():
    gpus = parse_system_profiler_displays((FIX / "intel-mac-2gpu-system_profiler-displays.json").read_text(), None)
    assert [(g.vendor, g.name, g.vram_total_bytes, g.unified_memory) for g in gpus] == [
        ("intel", "Intel UHD Graphics 630", 1536 << 20, True),
        ("amd", "AMD Radeon Pro 5500M", 8 << 30, False),
    ]


def test_garbage_is_no_gpu():
    for text in ("", "not json", "[]", '{"SPDisplaysDataType": "x"}', '{"SPDisplaysDataType": [{}]}'):
        assert parse_system_profiler_displays(text, None) == []


class FakeRunner:
    def __init__(self, outputs):
        self.outputs = outputs

    def which(self, name):
        return None

    def run(self, argv, *, cwd=None, env=None, timeout=60):
        if tuple(argv) not in self.outputs:
            raise ToolMissingError(f"Cannot run {argv[0]}: not found")
        return Completed(list(argv), 0, self.outputs[tuple(argv)], "")


def test_adapter_reads_sysctl_and_system_profiler():
    runner = FakeRunner(
        {
            tuple(SYSCTL_ARGV): (FIX / "m2pro-sysctl.txt").read_text(),
            tuple(PROFILER_ARGV): (FIX / "m2pro-system_profiler-displays.json").read_text(),
        }
    )
    cpu, memsize, gpus, notes = read_apple(runner, "arm64")
    assert (cpu.model, cpu.cores_logical, memsize, notes) == ("Apple M2 Pro", 12, M2_PRO_RAM, [])
    assert [(g.name, g.vram_total_bytes) for g in gpus] == [("Apple M2 Pro", M2_PRO_RAM)]


def test_adapter_without_tools_reports_unknowns():
    cpu, memsize, gpus, notes = read_apple(FakeRunner({}), "arm64")
    assert (cpu.model, memsize, gpus) == (None, None, [])
    assert notes == [
        "macOS: sysctl failed (Cannot run sysctl: not found); CPU and memory facts are unknown.",
        "macOS: system_profiler failed (Cannot run system_profiler: not found); GPUs are unknown.",
    ]
