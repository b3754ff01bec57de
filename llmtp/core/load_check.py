"""A plan against what llama-server says it did at load: layers offloaded, and model / KV / recurrent-state
buffer bytes on the GPU device and on the CPU. The ground truth for a plan on a real device."""

from __future__ import annotations

import re

from pydantic import BaseModel

from llmtp.core.calibrate import LoadBuffers, parse_load_log

# load_tensors: offloaded 9/9 layers to GPU   (src/llama-model.cpp, b11434)
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
HOST_DEVICES = ("CPU", "Host")  # parse_load_log folds CPU_Mapped into "CPU"


def is_host(name: str) -> bool:
    """A buffer in system memory. parse_load_log strips `_Host`, so a backend's pinned host buffer
    (`Vulkan_Host  output buffer`, `CUDA_Host compute buffer`) arrives as "Vulkan" / "CUDA": a device
    always carries its index (Vulkan0, CUDA1, ROCm0, MTL0)."""
    return name.startswith(HOST_DEVICES) or not name[-1:].isdigit()


# llama_model_loader: loaded meta data with 41 key-value pairs and 125 tensors from /path/model.gguf
LOAD_START = "llama_model_loader: loaded meta data"
# common_speculative_init_result: creating MTP draft context against the target model '/path/model.gguf'
DRAFT_START = "creating MTP draft context"
TOLERANCE = 0.05  # bytes: planned within 5% of what the server allocated


class Offload(BaseModel):
    layers: int
    of: int


class CheckRow(BaseModel):
    what: str  # "layers on Vulkan0", "model on Vulkan0", "KV on CPU", ...
    planned: int | None
    measured: int | None
    ok: bool | None  # None: nothing to compare (neither side has it)


def parse_offloaded(text: str) -> Offload | None:
    """The last `offloaded N/M layers to GPU` line (the main model's; a draft context prints none)."""
    found = _OFFLOADED.findall(text)
    return Offload(layers=int(found[-1][0]), of=int(found[-1][1])) if found else None


def last_load(text: str) -> str:
    """The log from the last model load on: a restarted server appends a second set of buffer lines."""
    at = text.rfind(LOAD_START)
    return text[at:] if at >= 0 else text


# sched_reserve:    Vulkan0 compute buffer size =    30.52 MiB  (printed again when the graph is re-reserved:
# the last one is the buffer's size, not a second buffer)
_COMPUTE = re.compile(r"sched_reserve:\s+(\S+) compute buffer size =\s+([\d.]+) MiB")


def last_compute(text: str, device: str) -> int:
    sizes = [float(m.group(2)) for m in _COMPUTE.finditer(text) if m.group(1) == device]
    return round(sizes[-1] * 1024 * 1024) if sizes else 0


def split_draft(text: str) -> tuple[str, str]:
    """(the target model's load, the MTP draft context's): the draft context prints its own KV and compute
    buffer lines after DRAFT_START, which the target's KV must not absorb."""
    at = text.find(DRAFT_START)
    return (text, "") if at < 0 else (text[:at], text[at:])


def device_bytes(buffers: LoadBuffers, device: str) -> dict[str, int]:
    """model / KV / RS / compute bytes on one device; for "CPU" every host buffer summed."""
    if device in HOST_DEVICES:
        out: dict[str, int] = {}
        for name, kinds in buffers.buffers.items():
            if is_host(name):
                for k, v in kinds.items():
                    out[k] = out.get(k, 0) + v
        return out
    return dict(buffers.buffers.get(device, {}))


def gpu_devices(text: str) -> dict[str, int]:
    """Bytes in use per non-host device, from one load's log (see last_load): model + KV + RS + output, and
    each context's compute buffer once (the target's and the MTP draft context's; a re-reserved graph prints
    its size again, which is not a second buffer)."""
    out: dict[str, int] = {}
    for part in split_draft(text):
        for name, kinds in parse_load_log(part).buffers.items():
            if not is_host(name):
                out[name] = (
                    out.get(name, 0) + sum(v for k, v in kinds.items() if k != "compute") + last_compute(part, name)
                )
    return out


def _close(planned: int | None, measured: int | None, tol: float) -> bool | None:
    if not planned and not measured:
        return None
    if planned is None or measured is None:
        return False
    return abs(planned - measured) <= tol * max(planned, measured)


def check_plan(
    plan, offload: Offload | None, buffers: LoadBuffers, device: str, tol: float = TOLERANCE, draft: str = ""
) -> list[CheckRow]:
    """Rows comparing a core.plan.Plan with the load log (the target model's part, see split_draft). Layers
    must match exactly: the plan's -ngl, capped at what the model has (llama.cpp caps it the same way), is what
    the server says it offloaded. `draft`: the MTP draft context's part of the log, its buffers reported beside
    the plan's draft reserve without a verdict (the plan reserves verify headroom there, not a buffer
    llama-server prints)."""
    gpu = next((m for m in plan.memory if not m.device.startswith("CPU")), None)
    cpu = next((m for m in plan.memory if m.device.startswith("CPU")), None)  # "CPU (system RAM)"
    measured_gpu, measured_cpu = device_bytes(buffers, device), device_bytes(buffers, "CPU")
    rows = []
    if plan.n_gpu_layers is not None:
        want = min(plan.n_gpu_layers, offload.of) if offload else plan.n_gpu_layers
        got = offload.layers if offload else None
        rows.append(CheckRow(what=f"layers on {device}", planned=want, measured=got, ok=got == want))
    for label, mem, measured in ((device, gpu, measured_gpu), ("CPU", cpu, measured_cpu)):
        planned = {
            "model": mem.weights if mem else 0,
            "KV": mem.kv_cache if mem else 0,
            "RS": mem.recurrent_state if mem else 0,
        }
        for kind in ("model", "KV", "RS"):
            p, m = planned[kind], measured.get(kind, 0)
            rows.append(CheckRow(what=f"{kind} on {label}", planned=p, measured=m, ok=_close(p, m, tol)))
    if draft:
        kv = device_bytes(parse_load_log(draft), device).get("KV", 0)
        rows.append(
            CheckRow(
                what=f"MTP draft context on {device} (KV + compute)",
                planned=gpu.mtp_draft if gpu else 0,
                measured=kv + last_compute(draft, device),
                ok=None,
            )
        )
    return rows
