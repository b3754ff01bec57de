"""Time-to-ready of `llmtp serve --foreground` vs bare llama-server on the same model and flags.

All are timed the same way, from process start until GET /health answers 200 (polled every 5 ms
from outside): bare llama-server, `llmtp serve` the first time a command line is served (no warm
record: typer, settings and plan load before the spawn) and the repeat (warm start: the recorded
llama-server is spawned before the CLI loads, then adopted). Prints medians, extra seconds and ratios
(target: <= 0.3 s extra). Last, `llmtp serve` without --foreground, as users type it, repeated: its
detached child is started before the launcher's CLI loads.

    python bench/serve_overhead.py --server /path/to/llama-server [--model M.gguf] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from llmtp.adapters.ports import free_port
from llmtp.adapters.proctree import terminate_group


def time_to_ready(argv: list[str], port: int, env: dict[str, str], timeout: float = 120.0,
                  state_file: Path | None = None) -> float:
    """Seconds from start to /health 200. With `state_file` (an llmtp serve) the process is kept until
    llmtp has seen the ready state too (not timed): that is when it records its launch."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)
    try:
        with httpx.Client(timeout=1.0, trust_env=False) as client:
            while time.perf_counter() - t0 < timeout:
                if proc.poll() is not None:
                    raise SystemExit(f"exited with {proc.returncode}: {' '.join(argv)}")
                try:
                    if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                        took = time.perf_counter() - t0
                        while state_file is not None and time.perf_counter() - t0 < timeout:
                            try:
                                if json.loads(state_file.read_text(encoding="utf-8"))["state"] == "ready":
                                    break
                            except (OSError, ValueError):
                                pass
                            time.sleep(0.01)
                        return took
                except httpx.HTTPError:
                    pass
                time.sleep(0.005)
        raise SystemExit(f"not ready in {timeout} s: {' '.join(argv)}")
    finally:
        # SIGTERM to the group: llmtp stops its own llama-server group in turn.
        terminate_group(proc.pid, grace=10, reap=proc.poll)
        proc.wait()
        time.sleep(0.2)  # let the llama-server child of llmtp finish exiting before the next run


def detached_time_to_ready(argv: list[str], port: int, env: dict[str, str], timeout: float = 120.0) -> float:
    """`llmtp serve` as users type it: the launcher returns once its detached child is ready; timed
    to /health 200 like the others, then stopped with `llmtp stop`."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    took = None
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while took is None and time.perf_counter() - t0 < timeout:
            try:
                if client.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    took = time.perf_counter() - t0
            except httpx.HTTPError:
                time.sleep(0.005)
    proc.wait(timeout=timeout)  # the launcher returns when the child says ready (and records its launch)
    subprocess.run([*argv[:3], "stop", "--port", str(port)], env=env, check=True, capture_output=True)
    if took is None:
        raise SystemExit(f"not ready in {timeout} s: {' '.join(argv)}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", required=True, help="llama-server binary")
    ap.add_argument("--model", help="GGUF (default: the tiny `plain` test model)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    model = args.model
    if model is None:
        from llmtp.testbed import cache_root
        from llmtp.testbed.tiny_models import ensure_tiny_models

        model = str(ensure_tiny_models(cache_root() / "models")["plain"])
    bare, cold, warm, detached = [], [], [], []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "LLMTP_HOME": home}
        port = free_port()  # one port for all runs: a warm start is keyed by the whole command line
        records = Path(home) / "state" / "warm-start"
        state = Path(home) / "state" / f"serve-{port}.json"
        llmtp_argv = [sys.executable, "-m", "llmtp", "serve", model, "--server", args.server,
                      "--port", str(port), "--foreground"]
        # the same flags llmtp passes for this model (see `llmtp serve --dry-run`)
        dry = subprocess.run([*llmtp_argv[:-1], "--dry-run", "--json"], capture_output=True, text=True,
                             env=env, check=True)
        for _ in range(args.runs):
            bare.append(time_to_ready(json.loads(dry.stdout)["argv"], port, env))
            shutil.rmtree(records, ignore_errors=True)  # first serve of this command line: full path
            cold.append(time_to_ready(llmtp_argv, port, env, state_file=state))
            warm.append(time_to_ready(llmtp_argv, port, env, state_file=state))  # repeat: warm start, adoption
            detached.append(detached_time_to_ready(llmtp_argv[:-1], port, env))  # `llmtp serve`, repeat
        adopted = sum(line.count("adopted the warm-started")
                      for line in (Path(home) / "state" / "logs" / f"llmtp-serve-{port}.log").open())
    b, c, w, d = (statistics.median(x) for x in (bare, cold, warm, detached))
    print(f"model: {model}")
    print(f"bare llama-server          median {b:.3f} s  runs {[round(x, 3) for x in bare]}")
    print(f"llmtp serve, first time    median {c:.3f} s  runs {[round(x, 3) for x in cold]}")
    print(f"llmtp serve, repeat (warm) median {w:.3f} s  runs {[round(x, 3) for x in warm]}  "
          f"(warm server adopted in {adopted} of {2 * args.runs} repeats)")
    print(f"llmtp serve (detached)     median {d:.3f} s  runs {[round(x, 3) for x in detached]}")
    print(f"extra, first time: {c - b:+.3f} s   ratio {c / b:.2f}")
    print(f"extra, repeat:     {w - b:+.3f} s   ratio {w / b:.2f}   (target: extra <= 0.300 s)")
    print(f"extra, detached:   {d - b:+.3f} s   ratio {d / b:.2f}   (target: extra <= 0.300 s)")


if __name__ == "__main__":
    main()
