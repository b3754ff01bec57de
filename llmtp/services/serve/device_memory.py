"""Device memory a running llama-server holds, from its own load lines, where NVML cannot say (Vulkan,
ROCm, Metal; lavapipe): `Vulkan0 model buffer size = ...` + KV + RS + compute + output."""

from __future__ import annotations

from pathlib import Path

from llmtp.adapters import files
from llmtp.core.load_check import gpu_devices, last_load

HEAD_BYTES = 512 * 1024  # the load lines come first; -lv 4 keeps them (serve adds it for calibration)


def device_bytes_from_log(log_path: Path) -> dict[str, int] | None:
    """Bytes per GPU device of the server's last load; None when the log (or its rotated `.1`) shows none."""
    text = ""
    for path in (log_path.with_name(log_path.name + ".1"), log_path):
        try:
            text += files.head_text(path, HEAD_BYTES)
        except OSError:
            continue
    found = gpu_devices(last_load(text))
    return found or None
