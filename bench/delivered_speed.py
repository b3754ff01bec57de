"""Delivered decode speed: bare `llama-server -m FILE` with its defaults vs `llmtp serve FILE`.

Usage: python bench/delivered_speed.py [--bin-dir DIR] [--size bench|tiny] [--n-predict 256]
                                       [--threads N] [--runs 3] [--tune-runs 2] [--tune-n-predict 128]

Same llama-server binary for both sides (from --bin-dir or LLMTP_TEST_LLAMA_BIN_DIR), adopted as the
current build of a throw-away LLMTP_HOME. Both servers run side by side and take turns: per prompt,
`--runs` pairs of requests (after one warm-up each), the side that goes first alternating, so a machine
whose speed drifts during the run moves both sides alike. Five arms:
  agree        the bench-size model whose every draft is accepted: `llmtp serve` as it is, no tune
  random       the bench-size model whose drafts are rejected: `llmtp tune` first, then `llmtp serve`
  random-open  the same after `llmtp tune`, on open-ended prompts that are not in the suite (target >= 0.97x)
  random-copy  the same after `llmtp tune --workload copy-heavy`, on copy-heavy prompts not in the suite
               (the n-gram gain kept: > 1.0x)
  plain        a bench-size model without MTP heads: `llmtp serve` as it is (expect 1.0x within noise)
agree, random and plain decode the suite's held-out prompts (llmtp/data/prompts.toml: prompts tune never
selects on); random-open and random-copy decode bench/unseen_prompts.toml (prompts tune never saw at all).
Each prints median decode tok/s per prompt for each side, their ratio llmtp / bare with the spread of
the pairs' ratios, the median ratio over the prompts, and the load average before the arm (the figures
need a quiet machine: a busy one is named in the output). Each of the `--runs` rounds starts both servers
afresh and decodes every prompt once per side: an n-gram drafter remembers its server's earlier output, so a
prompt decoded twice by one server would measure its memory, not the prompt.
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
from contextlib import contextmanager
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmtp.adapters.http import LlamaClient  # noqa: E402
from llmtp.adapters.ports import free_port  # noqa: E402
from llmtp.adapters.proctree import terminate_group  # noqa: E402
from llmtp.core.families import Prompt  # noqa: E402
from llmtp.services.verify.tune import load_suite  # noqa: E402
from llmtp.testbed import cache_root  # noqa: E402
from llmtp.testbed.tiny_models import _ensure  # noqa: E402

# (arm, model kind, `llmtp tune` arguments or None for no tune, prompts: "heldout" or a family of unseen_prompts.toml)
ARMS = [
    ("agree", "agree", None, "heldout"),
    ("random", "random", [], "heldout"),
    ("random-open", "random", [], "open-ended"),
    ("random-copy", "random", ["--workload", "copy-heavy"], "copy-heavy"),
    ("plain", "plain", None, "heldout"),
]
UNSEEN = Path(__file__).resolve().parent / "unseen_prompts.toml"


def prompts_for(which: str) -> list[Prompt]:
    if which == "heldout":
        return load_suite().half("heldout")
    data = tomllib.loads(UNSEEN.read_text(encoding="utf-8"))
    return [p for p in (Prompt(**d) for d in data["prompt"]) if p.family == which]


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


@contextmanager
def server_up(argv: list[str], port: int, env: dict, log: Path):
    """A server (bare, or `llmtp serve` which starts its own), up until the block ends."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_health(proc, port)
        with LlamaClient(f"http://127.0.0.1:{port}", None, timeout=900) as client:
            yield client
    finally:
        terminate_group(proc.pid, grace=10, reap=proc.poll)  # llmtp stops its llama-server group in turn
        proc.wait()
        time.sleep(0.5)


WARMUP_TEXT = "Write one sentence about the weather."  # outside every prompt set (llmtp.services.verify.tune)


def paired_round(
    bare: LlamaClient, served: LlamaClient, prompts, n_predict: int, first: int, speeds: dict, pairs: dict
) -> None:
    """One round on servers started for it: one warm-up each on a text outside the prompts, then every prompt
    once per side, the side that goes first alternating. A prompt is never decoded twice by one server: an
    n-gram drafter (ngram-mod) remembers what its server generated, and a repeated prompt drafts its own
    earlier answer (measured: the first pair of an open-ended prompt 0.74-0.83x, its repeats 3.0-3.4x)."""
    for client in (bare, served):
        client.completion(WARMUP_TEXT, n_predict=16, temperature=0.0, seed=42)
    for turn, p in enumerate(prompts, start=first):
        order = [("bare", bare), ("llmtp", served)]
        if turn % 2:
            order.reverse()
        got = {}
        for side, client in order:
            t = client.completion(p.render(), n_predict=n_predict, temperature=0.0, seed=42)["timings"]
            got[side] = t["predicted_per_second"]
            speeds[side].setdefault(p.name, []).append(got[side])
        if got["bare"]:
            pairs.setdefault(p.name, []).append(got["llmtp"] / got["bare"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", type=Path, default=os.environ.get("LLMTP_TEST_LLAMA_BIN_DIR"))
    ap.add_argument("--size", choices=["bench", "tiny"], default="bench")
    ap.add_argument("--n-predict", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="passed to both arms (default: each one's own)")
    ap.add_argument("--tune-runs", type=int, default=2)
    ap.add_argument("--tune-n-predict", type=int, default=128)
    ap.add_argument("--arms", default="agree,random,random-open,random-copy,plain")
    ap.add_argument("--runs", type=int, default=3, help="pairs per prompt (median per side)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.bin_dir or not (Path(args.bin_dir) / "llama-server").is_file():
        sys.exit("no llama-server: pass --bin-dir DIR or set LLMTP_TEST_LLAMA_BIN_DIR")
    server = str(Path(args.bin_dir) / "llama-server")
    models = _ensure(
        cache_root() / ("bench-models" if args.size == "bench" else "models"), ("agree", "random", "plain"), args.size
    )
    threads = ["-t", str(args.threads)] if args.threads else []
    passthrough = ["--", *threads] if threads else []  # `llmtp serve` hands flags after `--` to llama-server
    wanted = args.arms.split(",")
    print(
        f"llama-server {server}; {args.size} models; {args.n_predict} tokens, temperature 0, {args.runs} pairs "
        f"per prompt side by side; load average {os.getloadavg()[0]:.1f} at the start",
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "LLMTP_HOME": home}
        llmtp = [sys.executable, "-m", "llmtp"]
        subprocess.run([*llmtp, "builds", "adopt", str(args.bin_dir)], env=env, check=True, capture_output=True)
        tuned: dict[str, str] = {}  # tune arguments -> the note of that tune (one tune per set of arguments)
        for arm, kind, tune, which in ARMS:
            if arm not in wanted:
                continue
            model = str(models[kind])
            prompts = prompts_for(which)
            note = ""
            if tune is not None:
                key = f"{kind} {' '.join(tune)}"
                if key not in tuned:
                    done = subprocess.run(
                        [
                            *llmtp,
                            "tune",
                            model,
                            "--json",
                            "--runs",
                            str(args.tune_runs),
                            "--n-predict",
                            str(args.tune_n_predict),
                            *tune,
                            *threads,
                        ],
                        env=env,
                        capture_output=True,
                        text=True,
                    )
                    if done.returncode != 0:
                        sys.exit(f"llmtp tune failed ({done.returncode}):\n{done.stderr[-2000:]}")
                    d = json.loads(done.stdout)
                    tuned[key] = f"tune {' '.join(tune)} chose {d['label']}: {d['reason']}"
                note = tuned[key]  # the stored choice is this tune's: arms sharing arguments run in order
            load = os.getloadavg()[0]
            bare_port, port = free_port(), free_port()
            dry = subprocess.run(
                [*llmtp, "serve", model, "--server", server, "--port", str(port), "--dry-run", "--json", *passthrough],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            speeds: dict[str, dict[str, list[float]]] = {"bare": {}, "llmtp": {}}
            pairs: dict[str, list[float]] = {}
            for r in range(args.runs):  # both servers started again for each round, side by side
                with (
                    server_up(
                        [server, "-m", model, "--host", "127.0.0.1", "--port", str(bare_port), *threads],
                        bare_port,
                        env,
                        Path(home) / f"bare-{arm}.log",
                    ) as bare_client,
                    server_up(
                        [*llmtp, "serve", model, "--server", server, "--port", str(port), "--foreground", *passthrough],
                        port,
                        env,
                        Path(home) / f"llmtp-{arm}.log",
                    ) as served_client,
                ):
                    paired_round(bare_client, served_client, prompts, args.n_predict, r, speeds, pairs)
            bare, served = ({k: statistics.median(v) for k, v in speeds[side].items()} for side in ("bare", "llmtp"))
            ratios = {p: served[p] / bare[p] for p in bare if bare[p]}
            results.append((arm, bare, served, ratios, note, json.loads(dry.stdout)["argv"]))
            med = statistics.median(ratios.values())
            print(
                f"\n{arm} ({which} prompts: {', '.join(p.name for p in prompts)}; load average {load:.1f} before): "
                f"llmtp serve / bare llama-server, median {med:.2f}x "
                f"({min(ratios.values()):.2f}-{max(ratios.values()):.2f}x)",
                flush=True,
            )
            if note:
                print(f"  {note}")
            print(f"  llmtp argv: {' '.join(results[-1][5][1:])}")
            for p in bare:
                spread = f"   pairs {min(pairs[p]):.2f}-{max(pairs[p]):.2f}x" if pairs.get(p) else ""
                print(
                    f"  {p:10} bare {bare[p]:8.1f} tok/s   llmtp {served[p]:8.1f} tok/s   {ratios[p]:.2f}x{spread}",
                    flush=True,
                )
    print(f"\nsummary (median ratio over each arm's prompts; load average {os.getloadavg()[0]:.1f} at the end):")
    for arm, _, _, ratios, _, _ in results:
        print(f"  {arm:11} {statistics.median(ratios.values()):.2f}x")


if __name__ == "__main__":
    main()
