"""CPU and RAM facts on Linux and elsewhere: /proc/cpuinfo text, core counts and memory through psutil."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def read_proc_cpuinfo(root: Path = Path("/")) -> str | None:
    try:
        return (root / "proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def cpu_counts() -> tuple[int | None, int | None]:
    """(physical, logical) cores as the OS schedules them (psutil reads the sysfs topology,
    which also covers aarch64, where /proc/cpuinfo has no core ids)."""
    import psutil

    return psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)


def machine() -> str | None:
    """This machine's architecture as the OS names it ("x86_64", "aarch64", "arm64"); None if unknown."""

    return platform.machine() or None


def processor() -> str | None:
    """The OS's name for the processor where there is no /proc/cpuinfo (platform.processor may run
    `uname -p`); None if unknown."""

    return platform.processor() or None


def usable_cores() -> int | None:
    """Cores this process may run on (its CPU affinity where the OS has one, else all logical cores)."""

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def memory(not_counting: frozenset[int] = frozenset()) -> tuple[int | None, int | None]:
    """(total, available) bytes of RAM. `not_counting`: pids whose private memory counts as
    available (see nvml.read_nvidia_gpus); their file-backed pages (the mmapped model) already do."""
    import psutil

    vm = psutil.virtual_memory()
    available = int(vm.available)
    for pid in not_counting:
        try:
            info = psutil.Process(pid).memory_info()
        except psutil.Error:
            continue
        available += max(0, int(info.rss) - int(getattr(info, "shared", 0)))
    return int(vm.total), min(int(vm.total), available)
