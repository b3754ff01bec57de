"""Delivered decode speed: bare `llama-server -m FILE` with its defaults vs `llmtp serve FILE`.

Usage: python bench/delivered_speed.py [--bin-dir DIR] [--size bench|tiny] [--n-predict 256]
                                       [--threads N] [--tune-runs 2] [--tune-n-predict 128]

Same llama-server binary for both arms (from --bin-dir or LLMTP_TEST_LLAMA_BIN_DIR), adopted as the
current build of a throw-away LLMTP_HOME. Three arms, one run each (after one warm-up request):
  agree   the bench-size model whose every draft is accepted: `llmtp serve` as it is, no tune
  random  the bench-size model whose drafts are rejected: `llmtp tune` first, then `llmtp serve`
  plain   a bench-size model without MTP heads: `llmtp serve` as it is (expect 1.0x within noise)
Each arm decodes the suite's held-out prompts (llmtp/data/prompts.toml: prompts tune never selects
on) greedily, and prints decode tok/s per prompt, the ratio llmtp / bare per prompt, and their median.
`--size tiny` runs the same thing on the tiny test models: a quick proof that the bench runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmtp.adapters.http import LlamaClient  # noqa: E402
from llmtp.adapters.ports import free_port  # noqa: E402
from llmtp.adapters.proctree import terminate_group  # noqa: E402
from llmtp.services.tune import load_suite  # noqa: E402
from llmtp.testbed import cache_root  # noqa: E402
from llmtp.testbed.tiny_models import _ensure  # noqa: E402

ARMS = [("agree", False), ("random", True), ("plain", False)]  # (model kind, tune first)


def wait_health(proc: subprocess.Popen, port: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    with LlamaClient(f"http://127.0.0.1:{port}", None, timeout=2) as client:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"exited with {proc.returncode}: {' '.join(map(str, proc.args))}")
            try:
                if client.health(timeout=2.0) == 200:
                    return
            except Exception:  # not listening yet
                pass
            time.sleep(0.1)
    raise SystemExit(f"not ready in {timeout:.0f} s: {' '.join(map(str, proc.args))}")


def decode_speeds(argv: list[str], port: int, env: dict, prompts, n_predict: int, log: Path) -> dict[str, float]:
    """Start a server (bare or llmtp), one warm-up, then one greedy run per prompt: decode tok/s."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_health(proc, port)
        speeds = {}
        with LlamaClient(f"http://127.0.0.1:{port}", None, timeout=900) as client:
            client.completion(prompts[0].render(), n_predict=16, temperature=0.0, seed=42)
            for p in prompts:
                t = client.completion(p.render(), n_predict=n_predict, temperature=0.0, seed=42)["timings"]
                speeds[p.name] = t["predicted_per_second"]
        return speeds
    finally:
        terminate_group(proc.pid, grace=10, reap=proc.poll)  # llmtp stops its llama-server group in turn
        proc.wait()
        time.sleep(0.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", type=Path, default=os.environ.get("LLMTP_TEST_LLAMA_BIN_DIR"))
    ap.add_argument("--size", choices=["bench", "tiny"], default="bench")
    ap.add_argument("--n-predict", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="passed to both arms (default: each one's own)")
    ap.add_argument("--tune-runs", type=int, default=2)
    ap.add_argument("--tune-n-predict", type=int, default=128)
    ap.add_argument("--arms", default="agree,random,plain")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.bin_dir or not (Path(args.bin_dir) / "llama-server").is_file():
        sys.exit("no llama-server: pass --bin-dir DIR or set LLMTP_TEST_LLAMA_BIN_DIR")
    server = str(Path(args.bin_dir) / "llama-server")
    models = _ensure(cache_root() / ("bench-models" if args.size == "bench" else "models"),
                     ("agree", "random", "plain"), args.size)
    prompts = load_suite().half("heldout")
    threads = ["-t", str(args.threads)] if args.threads else []
    passthrough = ["--", *threads] if threads else []  # `llmtp serve` hands flags after `--` to llama-server
    wanted = args.arms.split(",")
    print(f"llama-server {server}; {args.size} models; held-out prompts {', '.join(p.name for p in prompts)}; "
          f"{args.n_predict} tokens, temperature 0, one run each", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "LLMTP_HOME": home}
        llmtp = [sys.executable, "-m", "llmtp"]
        subprocess.run([*llmtp, "builds", "adopt", str(args.bin_dir)], env=env, check=True, capture_output=True)
        for kind, tune in ARMS:
            if kind not in wanted:
                continue
            model = str(models[kind])
            note = ""
            if tune:
                done = subprocess.run([*llmtp, "tune", model, "--json", "--runs", str(args.tune_runs),
                                       "--n-predict", str(args.tune_n_predict), *threads],
                                      env=env, capture_output=True, text=True)
                if done.returncode != 0:
                    sys.exit(f"llmtp tune failed ({done.returncode}):\n{done.stderr[-2000:]}")
                d = json.loads(done.stdout)
                note = f"tune chose {d['label']}: {d['reason']}"
            port = free_port()
            bare = decode_speeds([server, "-m", model, "--host", "127.0.0.1", "--port", str(port), *threads],
                                 port, env, prompts, args.n_predict, Path(home) / f"bare-{kind}.log")
            port = free_port()
            dry = subprocess.run([*llmtp, "serve", model, "--server", server, "--port", str(port), "--dry-run",
                                  "--json", *passthrough], env=env, capture_output=True, text=True, check=True)
            served = decode_speeds([*llmtp, "serve", model, "--server", server, "--port", str(port),
                                    "--foreground", *passthrough], port, env, prompts, args.n_predict,
                                   Path(home) / f"llmtp-{kind}.log")
            ratios = {p: served[p] / bare[p] for p in bare if bare[p]}
            results.append((kind, bare, served, ratios, note, json.loads(dry.stdout)["argv"]))
            med = statistics.median(ratios.values())
            print(f"\n{kind}: llmtp serve / bare llama-server, median {med:.2f}x "
                  f"({min(ratios.values()):.2f}-{max(ratios.values()):.2f}x)", flush=True)
            if note:
                print(f"  {note}")
            print(f"  llmtp argv: {' '.join(results[-1][5][1:])}")
            for p in bare:
                print(f"  {p:10} bare {bare[p]:8.1f} tok/s   llmtp {served[p]:8.1f} tok/s   {ratios[p]:.2f}x",
                      flush=True)
    print("\nsummary (median ratio over held-out prompts):")
    for kind, _, _, ratios, _, _ in results:
        print(f"  {kind:7} {statistics.median(ratios.values()):.2f}x")


if __name__ == "__main__":
    main()
