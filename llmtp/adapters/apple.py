"""macOS facts through `sysctl` and `system_profiler`, run with the injected Runner."""

from __future__ import annotations

from llmtp.adapters.runner import Runner
from llmtp.core.cpu_parse import parse_sysctl_cpu, parse_sysctl_values
from llmtp.core.detect_parse import parse_system_profiler_displays, sysfs_int
from llmtp.core.hardware import CPU, GPU
from llmtp.errors import LlmtpError

# One sysctl call: `machdep.cpu` lists brand_string (and features on Intel Macs), `hw.optional`
# the ISA features of Apple silicon. A name the machine lacks only adds a line on stderr.
SYSCTL_ARGV = ["sysctl", "hw.memsize", "hw.physicalcpu", "hw.logicalcpu", "machdep.cpu", "hw.optional"]
PROFILER_ARGV = ["system_profiler", "SPDisplaysDataType", "-json"]


def read_apple(runner: Runner, arch: str | None) -> tuple[CPU, int | None, list[GPU], list[str]]:
    """(cpu, hw.memsize bytes, GPUs, notes). A missing or failing tool leaves its facts None."""
    notes: list[str] = []
    values: dict[str, str] = {}
    try:
        values = parse_sysctl_values(runner.run(SYSCTL_ARGV, timeout=20).stdout)
    except LlmtpError as exc:
        notes.append(f"macOS: sysctl failed ({exc.message}); CPU and memory facts are unknown.")
    memsize = sysfs_int(values.get("hw.memsize"))
    gpus: list[GPU] = []
    try:
        done = runner.run(PROFILER_ARGV, timeout=60)
        gpus = parse_system_profiler_displays(done.stdout, memsize)
        if done.returncode != 0 or not gpus:
            notes.append("macOS: system_profiler SPDisplaysDataType listed no GPU.")
    except LlmtpError as exc:
        notes.append(f"macOS: system_profiler failed ({exc.message}); GPUs are unknown.")
    return parse_sysctl_cpu(values, arch), memsize, gpus, notes
