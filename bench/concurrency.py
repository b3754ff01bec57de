"""Concurrent clients: aggregate and per-client decode tok/s with 1, 2 and 4 clients, MTP on and off.

Usage: python bench/concurrency.py [--bin-dir DIR] [--size bench|tiny] [--models agree,random]
                                   [--clients 1,2,4] [--n-predict 128] [--repeats 3] [--threads N] [--json]

Same llama-server binary for every arm (from --bin-dir or LLMTP_TEST_LLAMA_BIN_DIR). The launch is llmtp's
own plan for the model on this machine (`resolve_launch`, no tune record), and each arm is a variant of it
built by the same argv builder: `--parallel N` (one slot per client), MTP on (`--spec-type draft-mtp` as
planned) or off, nothing else changed. For each client count both arms run side by side (the weights are
mmapped once) and take turns: per repeat, N clients send one non-streaming chat completion each at the same
moment (greedy, `--n-predict` tokens, EOS ignored so every answer has the same length) to one arm, then the
same N prompts to the other; the arm that goes first alternates, so a machine whose speed drifts moves both
alike. The prompts are those of the held-out half of the tune suite (llmtp/data/prompts.toml: several
families) that fit one slot at the most clients (llama-server splits -c among its slots); client i of round r
takes prompt (r * N + i), so concurrent clients decode different text.

Per client: llama-server's own `timings.predicted_per_second`. Aggregate: every client's predicted tokens
over the round's wall time (first request sent to last answer, so the prompts' processing, which MTP also
slows, is included: what the users see). Decode-sum: the clients' decode rates added up (their decode spans
nearly coincide: same start, same length), the aggregate without prompt processing.
Printed per model and client count: median aggregate and per-client tok/s of each arm, draft acceptance,
and MTP-on / MTP-off ratios (median of the paired rounds, with their range); then the crossover per model:
the highest client count up to which MTP's aggregate stayed within 5% of plain or above (the rule
core/concurrency.py applies). `--size tiny` runs the same on the tiny test models: a quick proof it works.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmtp.adapters.ports import free_port  # noqa: E402
from llmtp.adapters.server_process import ServerProcess  # noqa: E402
from llmtp.core.concurrency import TOLERANCE  # noqa: E402
from llmtp.core.families import Prompt  # noqa: E402
from llmtp.core.launch import MtpSettings  # noqa: E402
from llmtp.core.launch_plan import LaunchPlan, LaunchRequest  # noqa: E402
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch  # noqa: E402
from llmtp.services.verify.tune import load_suite  # noqa: E402
from llmtp.settings import load_settings  # noqa: E402
from llmtp.testbed import cache_root  # noqa: E402
from llmtp.testbed.tiny_models import _ensure  # noqa: E402

ARMS = ("mtp-off", "mtp-on")


def arm_plans(home: str, server: str, model: Path, clients: int, threads: int | None) -> dict[str, LaunchPlan]:
    """llmtp's plan for `model` here (no tune record: MTP as the planner decides it), as the two arms."""
    settings = load_settings(env={"LLMTP_HOME": home}).settings
    request = LaunchRequest(model=str(model), server=server, port=free_port(), threads=threads)
    plan = resolve_launch(settings, request, LaunchDeps(tune_record=lambda p: None))
    if not plan.mtp.enabled:
        sys.exit(f"llmtp's plan has no MTP for {model.name}: nothing to compare")
    return {
        "mtp-on": plan.variant(parallel=clients, port=free_port()),
        "mtp-off": plan.variant(parallel=clients, port=free_port(), mtp=MtpSettings(enabled=False)),
    }


def fitting(suite: list[Prompt], slot_ctx: int, n_predict: int) -> list[Prompt]:
    """The prompts whose answer fits one slot at the most clients: llama-server splits -c among the slots.
    UTF-8 bytes bound the tokens (the test-bed vocabulary is byte-level); 64 for the chat template."""
    fit = [p for p in suite if len(p.render().encode()) + n_predict + 64 <= slot_ctx]
    if not fit:
        sys.exit(f"no prompt of the suite fits a {slot_ctx}-token slot with {n_predict} tokens to predict")
    return fit


def chat(url: str, prompt: str, n_predict: int) -> tuple[dict, float]:
    """One greedy chat completion; llama-server's timings and the moment the answer arrived."""
    body = {
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": n_predict,
        "temperature": 0.0,
        "seed": 42,
        "ignore_eos": True,
        "cache_prompt": False,
    }
    resp = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=900)
    if resp.status_code != 200:
        sys.exit(f"{url} answered {resp.status_code}: {resp.text[:300]}")
    timings = resp.json().get("timings")
    if not timings or "predicted_per_second" not in timings:
        sys.exit(f"no timings in the answer of {url}: {resp.text[:300]}")
    return timings, time.monotonic()


def one_round(pool: ThreadPoolExecutor, url: str, prompts: list[str], n_predict: int) -> dict:
    """len(prompts) clients at once against one server."""
    start = time.monotonic()
    done = [f.result() for f in [pool.submit(chat, url, p, n_predict) for p in prompts]]
    wall = max(end for _, end in done) - start
    timings = [t for t, _ in done]
    drafted = sum(t.get("draft_n", 0) for t in timings)
    return {
        "aggregate": sum(t["predicted_n"] for t in timings) / wall,
        "decode_sum": sum(t["predicted_per_second"] for t in timings),
        "per_client": [t["predicted_per_second"] for t in timings],
        "drafted": drafted,
        "accepted": sum(t.get("draft_n_accepted", 0) for t in timings),
        "wall_s": wall,
    }


def measure(
    plans: dict[str, LaunchPlan], prompts: list[str], clients: int, n_predict: int, repeats: int, logs: Path
) -> dict[str, list[dict]]:
    """Both arms up side by side; `repeats` paired rounds, the arm that goes first alternating."""
    servers = {}
    try:
        for arm, plan in plans.items():
            servers[arm] = ServerProcess(
                plan.argv_list, log_path=logs / f"{arm}-{clients}.log", host="127.0.0.1", port=plan.spec.port
            ).start()
        for s in servers.values():
            s.wait_ready(300)
        rounds: dict[str, list[dict]] = {arm: [] for arm in plans}
        with ThreadPoolExecutor(max_workers=clients) as pool:
            for s in servers.values():  # warm-up: every slot once
                one_round(pool, s.base_url, prompts[:clients], 8)
            for r in range(repeats):
                batch = [prompts[(r * clients + i) % len(prompts)] for i in range(clients)]
                order = list(ARMS) if r % 2 == 0 else list(reversed(ARMS))
                for arm in order:
                    rounds[arm].append(one_round(pool, servers[arm].base_url, batch, n_predict))
        return rounds
    finally:
        for s in servers.values():
            s.stop(grace=10)


def summarize(rounds: dict[str, list[dict]]) -> dict:
    out: dict = {}
    for arm, rs in rounds.items():
        drafted = sum(r["drafted"] for r in rs)
        out[arm] = {
            "aggregate_tok_s": statistics.median(r["aggregate"] for r in rs),
            "decode_sum_tok_s": statistics.median(r["decode_sum"] for r in rs),
            "per_client_tok_s": statistics.median(x for r in rs for x in r["per_client"]),
            "acceptance": sum(r["accepted"] for r in rs) / drafted if drafted else None,
        }
    pairs = list(zip(rounds["mtp-on"], rounds["mtp-off"]))
    agg = [on["aggregate"] / off["aggregate"] for on, off in pairs]
    per = [statistics.median(on["per_client"]) / statistics.median(off["per_client"]) for on, off in pairs]
    dec = [on["decode_sum"] / off["decode_sum"] for on, off in pairs]
    out["ratio"] = {
        "decode_sum": statistics.median(dec),
        "aggregate": statistics.median(agg),
        "aggregate_range": [min(agg), max(agg)],
        "per_client": statistics.median(per),
        "per_client_range": [min(per), max(per)],
    }
    return out


def crossover(rows: list[dict]) -> int | None:
    """The highest client count up to which MTP's aggregate held (core/concurrency.py's rule)."""
    held = None
    for row in sorted(rows, key=lambda r: r["clients"]):
        if row["ratio"]["aggregate"] < 1.0 - TOLERANCE:
            break
        held = row["clients"]
    return held


def print_row(row: dict) -> None:
    off, on, ratio = row["mtp-off"], row["mtp-on"], row["ratio"]
    acc = f"{on['acceptance']:.0%}" if on["acceptance"] is not None else "-"
    a_lo, a_hi = ratio["aggregate_range"]
    print(
        f"  {row['clients']:>2} clients   off {off['aggregate_tok_s']:7.1f} agg {off['per_client_tok_s']:7.1f}/client"
        f"   on {on['aggregate_tok_s']:7.1f} agg {on['per_client_tok_s']:7.1f}/client (acc {acc:>4})"
        f"   on/off agg {ratio['aggregate']:.2f}x ({a_lo:.2f}-{a_hi:.2f})  per-client {ratio['per_client']:.2f}x"
        f"  decode-sum {ratio['decode_sum']:.2f}x",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin-dir", type=Path, default=os.environ.get("LLMTP_TEST_LLAMA_BIN_DIR"))
    ap.add_argument("--size", choices=["bench", "tiny"], default="bench")
    ap.add_argument("--models", default="agree", help="test-bed kinds with MTP heads: agree, random")
    ap.add_argument("--clients", default="1,2,4")
    ap.add_argument("--n-predict", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3, help="paired rounds per client count")
    ap.add_argument("--threads", type=int, default=None, help="llama-server -t (default: the plan's)")
    ap.add_argument("--json", action="store_true", help="the figures as JSON on stdout (the table on stderr)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the servers on `timeout`
    if not args.bin_dir or not (Path(args.bin_dir) / "llama-server").is_file():
        sys.exit("no llama-server: pass --bin-dir DIR or set LLMTP_TEST_LLAMA_BIN_DIR")
    if args.json:
        sys.stdout = sys.stderr  # the table goes to stderr; the JSON is written to the real stdout at the end
    server = str(Path(args.bin_dir) / "llama-server")
    kinds = tuple(args.models.split(","))
    counts = [int(c) for c in args.clients.split(",")]
    models = _ensure(cache_root() / ("bench-models" if args.size == "bench" else "models"), kinds, args.size)
    suite = load_suite().half("heldout")
    load = os.getloadavg()[0]
    print(
        f"llama-server {server}; {args.size} models {', '.join(kinds)}; clients {args.clients}; "
        f"{args.n_predict} tokens greedy; {args.repeats} paired rounds; load average {load:.2f} at the start"
    )
    results = []
    with tempfile.TemporaryDirectory() as home:
        for kind in kinds:
            rows = []
            print(f"\n{kind} ({models[kind].name})")
            for n in counts:
                plans = arm_plans(home, server, models[kind], n, args.threads)
                if n == counts[0]:
                    prompts = fitting(suite, plans["mtp-on"].spec.ctx_size // max(counts), args.n_predict)
                    print(f"  argv (mtp-on): {' '.join(plans['mtp-on'].argv_list[1:])}")
                    print(f"  prompts: {', '.join(f'{p.name} ({p.family})' for p in prompts)}")
                rounds = measure(plans, [p.render() for p in prompts], n, args.n_predict, args.repeats, Path(home))
                rows.append({"clients": n, **summarize(rounds), "rounds": rounds})
                print_row(rows[-1])
            held = crossover(rows)
            print(f"  crossover: MTP held (aggregate >= {1 - TOLERANCE:.2f}x plain) up to {held} client(s)")
            results.append({"model": kind, "file": models[kind].name, "rows": rows, "crossover": held})
    end_load = os.getloadavg()[0]
    print(f"\nload average {end_load:.2f} at the end")
    if args.json:
        sys.stdout = sys.__stdout__
        meta = {
            "server": server,
            "size": args.size,
            "n_predict": args.n_predict,
            "repeats": args.repeats,
            "load_start": load,
            "load_end": end_load,
        }
        print(json.dumps({**meta, "models": results}, indent=1))


if __name__ == "__main__":
    main()
