"""Test helper: run the real llama-server on a free port, watch /health, always stop it."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from llmtp.adapters.ports import free_port


@dataclass
class Server:
    proc: subprocess.Popen
    base_url: str
    log_path: Path
    health_codes: list[int] = field(default_factory=list)  # every /health status seen while starting

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base_url + path, timeout=30)

    def complete(self, prompt: str, n_predict: int, **extra) -> dict:
        body = {"prompt": prompt, "n_predict": n_predict, "temperature": 0, "return_tokens": True, **extra}
        r = httpx.post(self.base_url + "/completion", json=body, timeout=60)
        r.raise_for_status()
        return r.json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextlib.contextmanager
def llama_server(
    bin_dir: Path, model: Path, log_path: Path, extra: list[str] = (), timeout: float = 60
) -> Iterator[Server]:
    """Start llama-server, poll /health until 200 (recording 503s), yield, then stop it."""
    port = free_port()
    argv = [
        str(bin_dir / "llama-server"),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        "512",
        "--parallel",
        "1",
        "-t",
        "2",
        *extra,
    ]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    server = Server(proc, f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"llama-server exited with {proc.returncode}:\n{server.log()[-2000:]}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"llama-server not ready after {timeout}s:\n{server.log()[-2000:]}")
                try:
                    code = client.get(server.base_url + "/health").status_code
                except httpx.TransportError:
                    time.sleep(0.002)  # not listening yet
                    continue
                server.health_codes.append(code)
                if code == 200:
                    break
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_to_exit(bin_dir: Path, model: Path, extra: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """Run llama-server expecting it to exit on its own (a refused start)."""
    argv = [
        str(bin_dir / "llama-server"),
        "-m",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        "-c",
        "512",
        "--parallel",
        "1",
        "-t",
        "2",
        *extra,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
