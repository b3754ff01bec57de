"""A plan against what llama-server says it did at load: layers offloaded, and model / KV / recurrent-state
buffer bytes on the GPU device and on the CPU. The ground truth for a plan on a real device."""

from __future__ import annotations

import re

from pydantic import BaseModel

from llmtp.core.calibrate import LoadBuffers

# load_tensors: offloaded 9/9 layers to GPU   (src/llama-model.cpp, b11434)
_OFFLOADED = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
HOST_DEVICES = ("CPU", "Host")  # parse_load_log folds CPU_Mapped / CPU_REPACK-free names into "CPU"
# llama_model_loader: loaded meta data with 41 key-value pairs and 125 tensors from /path/model.gguf
LOAD_START = "llama_model_loader: loaded meta data"
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


def device_bytes(buffers: LoadBuffers, device: str) -> dict[str, int]:
    """model / KV / RS / compute bytes on one device; for "CPU" every host buffer summed."""
    if device in HOST_DEVICES:
        out: dict[str, int] = {}
        for name, kinds in buffers.buffers.items():
            if name.startswith(HOST_DEVICES):
                for k, v in kinds.items():
                    out[k] = out.get(k, 0) + v
        return out
    return dict(buffers.buffers.get(device, {}))


def gpu_devices(buffers: LoadBuffers) -> dict[str, int]:
    """Bytes in use per non-host device (model + KV + RS + compute + output): the device memory a server holds."""
    return {name: sum(kinds.values()) for name, kinds in buffers.buffers.items() if not name.startswith(HOST_DEVICES)}


def _close(planned: int | None, measured: int | None, tol: float) -> bool | None:
    if not planned and not measured:
        return None
    if planned is None or measured is None:
        return False
    return abs(planned - measured) <= tol * max(planned, measured)


def check_plan(plan, offload: Offload | None, buffers: LoadBuffers, device: str,
               tol: float = TOLERANCE) -> list[CheckRow]:
    """Rows comparing a core.plan.Plan with the load log. Layers must match exactly: the plan's -ngl, capped at
    what the model has (llama.cpp caps it the same way), is what the server says it offloaded."""
    gpu = next((m for m in plan.memory if not m.device.startswith("CPU")), None)
    cpu = next((m for m in plan.memory if m.device.startswith("CPU")), None)  # "CPU (system RAM)"
    measured_gpu, measured_cpu = device_bytes(buffers, device), device_bytes(buffers, "CPU")
    rows = []
    if plan.n_gpu_layers is not None:
        want = min(plan.n_gpu_layers, offload.of) if offload else plan.n_gpu_layers
        got = offload.layers if offload else None
        rows.append(CheckRow(what=f"layers on {device}", planned=want, measured=got, ok=got == want))
    for label, mem, measured in ((device, gpu, measured_gpu), ("CPU", cpu, measured_cpu)):
        planned = {"model": mem.weights if mem else 0, "KV": mem.kv_cache if mem else 0,
                   "RS": mem.recurrent_state if mem else 0}
        for kind in ("model", "KV", "RS"):
            p, m = planned[kind], measured.get(kind, 0)
            rows.append(CheckRow(what=f"{kind} on {label}", planned=p, measured=m, ok=_close(p, m, tol)))
    return rows
