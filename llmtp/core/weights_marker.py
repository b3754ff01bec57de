"""verify's GPU marker from evidence: where the server put the model's weights, read from its load log."""

from __future__ import annotations

from llmtp.core.calibrate import parse_load_log
from llmtp.core.load_check import device_bytes, is_host, parse_offloaded
from llmtp.core.verify import Marker

MiB = 1024 * 1024


def weights_marker(log: str, *, expect_gpu: bool, listed: list[str] | None) -> Marker:
    """ok: model weights sit in a GPU device's buffer (e.g. `Vulkan0 model buffer size = 290.1 MiB`).
    False: a GPU was expected (a GPU profile, or a launch that offloads layers) and every weight is in host
    memory, or the build lists no GPU device. None: no GPU expected and none used, or the log says nothing.
    `listed`: the GPU device ids the build's --list-devices shows (None: not probed)."""
    buffers = parse_load_log(log)
    on_gpu = {d: b for d in buffers.buffers if not is_host(d) if (b := device_bytes(buffers, d).get("model", 0)) > 0}
    offload = parse_offloaded(log)
    layers = f", {offload.layers}/{offload.of} layers offloaded" if offload else ""
    if on_gpu:
        where = ", ".join(f"{d} {b / MiB:.1f} MiB" for d, b in sorted(on_gpu.items()))
        return Marker(ok=True, detail=f"model weights on {where}{layers}")
    if not expect_gpu:
        return Marker(ok=None, detail="no GPU expected; weights in system RAM")
    if listed is not None and not listed:
        return Marker(
            ok=False,
            detail=f"a GPU launch was planned, but this build lists no GPU device (a CPU "
            f"build, or no driver visible): every weight is in system RAM{layers}",
        )
    if not buffers.buffers:
        return Marker(
            ok=False,
            detail="a GPU launch was planned, but the server's log shows no weight buffer (run at -lv 4 to print them)",
        )
    return Marker(ok=False, detail=f"a GPU launch was planned, but every weight is in system RAM{layers}")
