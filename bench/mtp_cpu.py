"""Plain vs draft-mtp decode speed of the bench-size test models on the real llama-server (CPU).

Usage: python bench/mtp_cpu.py [--bin-dir DIR] [--n-predict 256] [--reps 2] [--threads N]

The binary comes from --bin-dir or LLMTP_TEST_LLAMA_BIN_DIR. The two ~290 MiB models (`agree`:
every draft accepted; `random`: drafts rejected) are generated once into the user cache dir
(or LLMTP_TESTBED_CACHE). Prints decode tok/s without and with `--spec-type draft-mtp`
(n-max 3 and 6) and the ratio to plain, per model, at temperature 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmtp.adapters.ports import free_port  # noqa: E402
from llmtp.adapters.server_process import ServerProcess  # noqa: E402
from llmtp.testbed import cache_root  # noqa: E402
from llmtp.testbed.tiny_models import ensure_bench_models  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog. " * 4
CONFIGS = [("plain", []), ("draft-mtp n-max 3", ["--spec-type", "draft-mtp", "--spec-draft-n-max", "3"]),
           ("draft-mtp n-max 6", ["--spec-type", "draft-mtp", "--spec-draft-n-max", "6"])]


def measure(bin_dir: Path, model: Path, extra: list[str], n_predict: int, reps: int, threads: int) -> dict:
    """Best-of-`reps` decode tok/s for one server configuration, plus draft counts of that run."""
    port = free_port()
    argv = [str(bin_dir / "llama-server"), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
            "-c", "2048", "--parallel", "1", "-t", str(threads), *extra]
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(argv, log_path=Path(tmp) / "server.log", host="127.0.0.1", port=port).start()
        try:
            server.wait_ready(120)
            with server.client(timeout=600) as client:
                opts = {"ignore_eos": True}
                client.completion(PROMPT, n_predict=8, **opts)  # warm-up
                best: dict = {}
                for _ in range(reps):
                    t = client.completion(PROMPT, n_predict=n_predict, **opts)["timings"]
                    if not best or t["predicted_per_second"] > best["predicted_per_second"]:
                        best = t
            return best
        finally:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=os.environ.get("LLMTP_TEST_LLAMA_BIN_DIR"))
    parser.add_argument("--n-predict", type=int, default=256)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    # A SIGTERM (e.g. from `timeout`) must still run the finally blocks that stop llama-server.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not args.bin_dir or not (Path(args.bin_dir) / "llama-server").is_file():
        sys.exit("no llama-server: pass --bin-dir DIR or set LLMTP_TEST_LLAMA_BIN_DIR")

    models = ensure_bench_models(cache_root() / "bench-models")
    print(f"llama-server: {args.bin_dir}  threads: {args.threads}  n_predict: {args.n_predict}  "
          f"temperature 0, best of {args.reps}")
    print(f"{'model':8} {'config':18} {'tok/s':>8} {'ratio':>6} {'drafts':>8} {'accepted':>9}")
    for kind, path in models.items():
        plain = None
        for label, extra in CONFIGS:
            t = measure(Path(args.bin_dir), path, extra, args.n_predict, args.reps, args.threads)
            tps = t["predicted_per_second"]
            plain = plain or tps
            drafts = t.get("draft_n", 0)
            accepted = t.get("draft_n_accepted", 0)
            acc = f"{accepted / drafts:.0%}" if drafts else "-"
            print(f"{kind:8} {label:18} {tps:8.1f} {tps / plain:5.2f}x {drafts:8d} {acc:>9}", flush=True)


if __name__ == "__main__":
    main()
