"""Planned vs measured on a Vulkan device: the bench agree model served through llmtp's serve path for several
device budgets, each launch's load lines compared with its plan (the table in docs/planning.md).

Usage: python bench/vulkan_plan_table.py [--bin-dir DIR] [--budgets 1536:mtp,900,740,720]

DIR defaults to the test bed's Vulkan build (built first when missing, ~10-25 min on 2 shared cores). Where
the only Vulkan device is lavapipe, GGML_VK_VISIBLE_DEVICES=0 is set (ggml-vulkan skips CPU-type devices
otherwise). A budget suffixed `:mtp` is served with MTP, the others with --no-mtp. Prints one markdown table
row per (budget, quantity): planned MiB, measured MiB, and whether they agree (layers exactly, bytes 5%).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmtp.adapters.ports import free_port  # noqa: E402
from llmtp.adapters.runner import SubprocessRunner  # noqa: E402
from llmtp.testbed import cache_root  # noqa: E402

MiB = 1024 * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin-dir", type=Path)
    ap.add_argument("--budgets", default="1536:mtp,900,740,720")
    args = ap.parse_args()
    os.environ.setdefault("GGML_VK_VISIBLE_DEVICES", "0")
    home = Path(tempfile.mkdtemp(prefix="llmtp-vkplan-"))
    os.environ["LLMTP_HOME"] = str(home)
    from llmtp.services.build.installed import adopt
    from llmtp.services.verify.plan_check import device_budget, serve_and_check
    from llmtp.settings import load_settings
    from llmtp.testbed.build import testbed_vulkan_build
    from llmtp.testbed.tiny_models import ensure_bench_models

    bin_dir = args.bin_dir or testbed_vulkan_build(cache_root() / "llmtp-home")
    model = ensure_bench_models(cache_root() / "bench-models")["agree"]
    settings = load_settings().settings
    adopt(settings, bin_dir, SubprocessRunner())
    print("| budget | MTP | plan | quantity | planned | measured | agrees |")
    print("|---|---|---|---|---:|---:|---|")
    for item in args.budgets.split(","):
        mib, _, flag = item.partition(":")
        mtp = flag == "mtp"
        run = serve_and_check(settings, model, bin_dir / "llama-server", device_budget("Vulkan0", int(mib) * MiB, 8 << 30),
                              "Vulkan0", port=free_port(), log_path=home / f"serve-{mib}.log", no_mtp=not mtp)
        p = run.plan
        how = (f"-ngl {p.n_gpu_layers} --n-cpu-ffn {p.n_cpu_ffn}" if p.n_cpu_ffn else f"-ngl {p.n_gpu_layers}")
        for r in run.rows:
            layers = r.what.startswith("layers")
            fmt = (lambda v: "-" if v is None else str(v)) if layers else \
                (lambda v: "-" if v is None else f"{v / MiB:.2f} MiB")
            agrees = {True: "yes", False: "**no**", None: "-"}[r.ok]
            print(f"| {mib} MiB | {'on' if mtp else 'off'} | `{how}` | {r.what} | {fmt(r.planned)} | "
                  f"{fmt(r.measured)} | {agrees} |", flush=True)
        print(f"<!-- {mib} MiB: device bytes in use {run.device_bytes}, log {run.log_path} -->", flush=True)


if __name__ == "__main__":
    main()
