"""NVIDIA GPUs through NVML: the only module that imports pynvml (nvidia-ml-py)."""

from __future__ import annotations

from typing import Any

from llmtp.core.detect_parse import cuda_arch, cuda_version_str, nvml_bandwidth_gbps, text
from llmtp.core.hardware import GPU


def load_pynvml() -> Any | None:
    try:
        import pynvml
    except ImportError:
        return None
    return pynvml


def read_nvidia_gpus(
    nvml: Any | None = None, *, not_counting: frozenset[int] = frozenset()
) -> tuple[list[GPU], list[str]]:
    """Every NVIDIA GPU NVML sees, in NVML (PCI bus) order, and notes on what could not be read.

    `not_counting`: pids whose GPU memory counts as free (a warm-started llama-server that the
    plan being made now will replace or adopt: its own allocation must not shrink that plan).

    `nvml` is the pynvml module or a stand-in with the same functions (tests pass a fake).
    No pynvml, no driver or no libnvidia-ml -> ([], [note]); a value a GPU does not report -> None.
    """
    if nvml is None:
        nvml = load_pynvml()
        if nvml is None:
            return [], ["NVIDIA: the nvidia-ml-py package is not installed; NVIDIA GPUs were not looked for."]
    try:
        nvml.nvmlInit()
    except nvml.NVMLError as exc:
        return [], [f"NVIDIA: no GPU driver answered (NVML: {_reason(exc)})."]
    notes: list[str] = []
    try:
        driver = _opt(nvml, nvml.nvmlSystemGetDriverVersion)
        cuda = _cuda_driver_version(nvml)
        count = nvml.nvmlDeviceGetCount()
        gpus = []
        for i in range(count):
            try:
                gpus.append(_read_one(nvml, i, driver, cuda, notes, not_counting))
            except nvml.NVMLError as exc:  # e.g. "GPU is lost": report it, keep the others
                notes.append(f"NVIDIA GPU {i}: NVML cannot open it ({_reason(exc)}).")
    except nvml.NVMLError as exc:
        return [], [f"NVIDIA: NVML failed while listing GPUs ({_reason(exc)})."]
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass  # nothing left to release
    return gpus, notes


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _opt(nvml: Any, fn: Any, *args: Any) -> Any | None:
    """Call an NVML query; NotSupported, FunctionNotFound (old driver) and friends -> None."""
    try:
        return fn(*args)
    except nvml.NVMLError:
        return None


def _cuda_driver_version(nvml: Any) -> str | None:
    for name in ("nvmlSystemGetCudaDriverVersion_v2", "nvmlSystemGetCudaDriverVersion"):
        fn = getattr(nvml, name, None)
        value = _opt(nvml, fn) if fn is not None else None
        if value:
            return cuda_version_str(int(value))
    return None


def _memory(nvml: Any, handle: Any) -> tuple[int | None, int | None]:
    """(total, free) bytes. The v2 API counts memory the driver reserves as used rather than
    free (what gpustat and nvidia-smi show); drivers before r510 lack it -> v1."""
    version = getattr(nvml, "nvmlMemory_v2", None)
    mem = None
    if version is not None:
        try:
            mem = nvml.nvmlDeviceGetMemoryInfo(handle, version=version)
        except (nvml.NVMLError, TypeError):  # TypeError: a pynvml too old for the version argument
            mem = None
    if mem is None:
        mem = _opt(nvml, nvml.nvmlDeviceGetMemoryInfo, handle)
    if mem is None:
        return None, None
    return int(mem.total), int(mem.free)


def _used_by(nvml: Any, handle: Any, pids: frozenset[int]) -> int:
    """Bytes the processes `pids` hold on this GPU (0 where NVML cannot tell)."""
    procs = _opt(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []
    return sum(int(p.usedGpuMemory or 0) for p in procs if p.pid in pids)


def process_vram(pids: list[int], nvml: Any | None = None) -> dict[int, int | None]:
    """GPU memory each of `pids` holds, summed over every GPU NVML sees; None where NVML does not
    see the pid (no NVIDIA driver, a CPU-only process, another pid namespace) or hides its usage."""
    out: dict[int, int | None] = dict.fromkeys(pids)
    if nvml is None:
        nvml = load_pynvml()
    if nvml is None or not pids:
        return out
    try:
        nvml.nvmlInit()
    except nvml.NVMLError:
        return out
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = _opt(nvml, nvml.nvmlDeviceGetHandleByIndex, i)
            procs = (_opt(nvml, nvml.nvmlDeviceGetComputeRunningProcesses, handle) or []) if handle is not None else []
            for p in procs:
                if p.pid in out and p.usedGpuMemory is not None:
                    out[p.pid] = (out[p.pid] or 0) + int(p.usedGpuMemory)
    except nvml.NVMLError:
        pass  # what was read so far stands; the rest stays unknown
    finally:
        try:
            nvml.nvmlShutdown()
        except nvml.NVMLError:
            pass
    return out


def _read_one(
    nvml: Any, index: int, driver: Any, cuda: str | None, notes: list[str], not_counting: frozenset[int] = frozenset()
) -> GPU:
    handle = nvml.nvmlDeviceGetHandleByIndex(index)
    name = _opt(nvml, nvml.nvmlDeviceGetName, handle)
    total, free = _memory(nvml, handle)
    if free is not None and not_counting:
        free = min(total or free, free + _used_by(nvml, handle, not_counting))
    if total is None:
        notes.append(f"NVIDIA GPU {index}: NVML does not report its memory.")
    cc = _opt(nvml, nvml.nvmlDeviceGetCudaComputeCapability, handle)
    compute_capability = f"{cc[0]}.{cc[1]}" if cc else None
    pci = _opt(nvml, nvml.nvmlDeviceGetPciInfo, handle)
    bus_width = _opt(nvml, nvml.nvmlDeviceGetMemoryBusWidth, handle)
    mem_clock = _opt(nvml, nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_MEM)
    return GPU(
        index=index,
        vendor="nvidia",
        name=text(name) if name else f"NVIDIA GPU {index}",
        vram_total_bytes=total,
        vram_free_bytes=free,
        compute_capability=compute_capability,
        cuda_arch=cuda_arch(compute_capability) if compute_capability else None,
        driver_version=text(driver) if driver else None,
        cuda_driver_version=cuda,
        # Max link = what the GPU and its slot negotiate under load; the current link drops to
        # gen 1 at idle to save power, so it would understate the transfer rate.
        pcie_generation=_opt(nvml, nvml.nvmlDeviceGetMaxPcieLinkGeneration, handle),
        pcie_width=_opt(nvml, nvml.nvmlDeviceGetMaxPcieLinkWidth, handle),
        memory_bandwidth_gbps=nvml_bandwidth_gbps(bus_width, mem_clock),
        pci_bus_id=_short_bus_id(text(pci.busId)) if pci is not None else None,
        source="nvml",
    )


def _short_bus_id(bus_id: str) -> str:
    """NVML pads the PCI domain to 8 digits ("00000000:01:00.0"); sysfs and lspci use 4."""
    domain, sep, rest = bus_id.partition(":")
    return f"{domain[-4:]}:{rest}".lower() if sep and len(domain) > 4 else bus_id.lower()
