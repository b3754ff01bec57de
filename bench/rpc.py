"""Local vs two RPC workers on loopback: decode tok/s of the bench-size test model, and the bytes per token
that cross the network.

Usage: python bench/rpc.py [--bin-dir DIR] [--n-predict 128] [--reps 2] [--threads N]

The binaries come from --bin-dir or LLMTP_TEST_RPC_BIN_DIR (a `llmtp build --rpc`: llama-server and
ggml-rpc-server). The `agree` bench model (~290 MiB, every MTP draft accepted) is generated once into the
user cache dir (or LLMTP_TESTBED_CACHE). Every worker binds to 127.0.0.1.

Speed runs connect llama-server to the workers directly. The byte count is a separate run through a
counting TCP relay per worker (the relay adds latency, so it never times anything): the bytes of an
n-token completion minus those of a 1-token one (same prompt), divided by n - 1, in both directions.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from llmtp.adapters.gguf_file import read_model_info  # noqa: E402
from llmtp.adapters.ports import free_port  # noqa: E402
from llmtp.adapters.server_process import ServerProcess  # noqa: E402
from llmtp.core.probe import parse_list_devices  # noqa: E402
from llmtp.core.rpc import plan_split, worker_argv  # noqa: E402
from llmtp.services.rpc.worker import WorkerProcess  # noqa: E402
from llmtp.testbed import cache_root  # noqa: E402
from llmtp.testbed.tiny_models import ensure_bench_models  # noqa: E402

PROMPT = "The quick brown fox jumps over the lazy dog. " * 4
MTP = ["--spec-type", "draft-mtp", "--spec-draft-n-max", "3"]


class Relay:
    """127.0.0.1:port -> target, counting the bytes both ways (one client at a time, as a worker serves)."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.bytes = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                with self._lock:
                    self.bytes += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def start_server(bin_dir: Path, model: Path, extra: list[str], threads: int, tmp: Path) -> ServerProcess:
    port = free_port()
    argv = [str(bin_dir / "llama-server"), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
            "-c", "2048", "--parallel", "1", "-t", str(threads), *extra]
    server = ServerProcess(argv, log_path=tmp / f"server-{port}.log", host="127.0.0.1", port=port).start()
    server.wait_ready(300)
    return server


def decode(server: ServerProcess, n_predict: int, reps: int) -> dict:
    with server.client(timeout=900) as client:
        client.completion(PROMPT, n_predict=8, ignore_eos=True)  # warm-up
        best: dict = {}
        for _ in range(reps):
            t = client.completion(PROMPT, n_predict=n_predict, ignore_eos=True)["timings"]
            if not best or t["predicted_per_second"] > best["predicted_per_second"]:
                best = t
    return best


def rpc_args(bin_dir: Path, ports: list[int], model: Path) -> list[str]:
    """--rpc, -dev/-ts (RPC first, by free memory) and -ngl as `llmtp serve --rpc` launches a CPU host."""
    import subprocess

    endpoints = ",".join(f"127.0.0.1:{p}" for p in ports)
    out = subprocess.run([str(bin_dir / "llama-server"), "--rpc", endpoints, "--list-devices"],
                         capture_output=True, text=True, timeout=60)
    split = plan_split(parse_list_devices(out.stdout + out.stderr) or [])
    return ["--rpc", endpoints, *split.argv(), "-ngl", str(read_model_info(model, cache_dir=False).block_count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin-dir", type=Path, default=os.environ.get("LLMTP_TEST_RPC_BIN_DIR"))
    parser.add_argument("--n-predict", type=int, default=128)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="threads of llama-server and of each worker")
    args = parser.parse_args()
    if args.bin_dir is None or not (args.bin_dir / "ggml-rpc-server").is_file():
        sys.exit("pass --bin-dir (or LLMTP_TEST_RPC_BIN_DIR) pointing at a `llmtp build --rpc` bin dir")
    model = ensure_bench_models(cache_root() / "bench-models")["agree"]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        workers = []
        try:
            for _ in range(2):
                port = free_port()
                argv = worker_argv(str(args.bin_dir / "ggml-rpc-server"), host="127.0.0.1", port=port,
                                   threads=args.threads)
                w = WorkerProcess(argv, log_path=tmp / f"worker-{port}.log", host="127.0.0.1", port=port).start()
                w.wait_ready(60)
                workers.append(w)
            ports = [w.port for w in workers]
            remote = rpc_args(args.bin_dir, ports, model)
            print(f"model {model.name}, {args.n_predict} tokens, best of {args.reps}, threads {args.threads}")
            for label, extra in (("plain", []), ("draft-mtp n-max 3", MTP)):
                rows = {}
                for where, more in (("local", []), ("2 RPC workers", remote)):
                    server = start_server(args.bin_dir, model, extra + more, args.threads, tmp)
                    try:
                        rows[where] = decode(server, args.n_predict, args.reps)
                    finally:
                        server.stop()
                loc, rem = rows["local"]["predicted_per_second"], rows["2 RPC workers"]["predicted_per_second"]
                drafts = rows["2 RPC workers"].get("draft_n")
                accepted = rows["2 RPC workers"].get("draft_n_accepted")
                print(f"{label:<18} local {loc:7.1f} tok/s   2 RPC workers {rem:7.1f} tok/s   ratio {rem / loc:.2f}"
                      + (f"   drafts {accepted}/{drafts} accepted" if drafts else ""))
            relays = [Relay(p) for p in ports]
            counted = rpc_args(args.bin_dir, [r.port for r in relays], model)
            for label, extra in (("plain", []), ("draft-mtp n-max 3", MTP)):
                server = start_server(args.bin_dir, model, extra + counted, args.threads, tmp)
                try:
                    with server.client(timeout=900) as client:
                        client.completion(PROMPT, n_predict=8, ignore_eos=True)
                        before = sum(r.bytes for r in relays)
                        client.completion(PROMPT, n_predict=1, ignore_eos=True)
                        one = sum(r.bytes for r in relays) - before
                        before = sum(r.bytes for r in relays)
                        client.completion(PROMPT, n_predict=args.n_predict, ignore_eos=True)
                        many = sum(r.bytes for r in relays) - before
                finally:
                    server.stop()
                per_token = (many - one) / (args.n_predict - 1)
                print(f"{label:<18} network: {per_token / 1024:.1f} KiB per decoded token "
                      f"(prompt + 1 token: {one / 1024:.1f} KiB)")
        finally:
            for w in workers:
                w.stop()


if __name__ == "__main__":
    main()
