"""Helpers of the `systemd` tier's tests: llmtp run as a user would run it against a real manager, every command
and its output recorded (LLMTP_TEST_TRANSCRIPT=FILE appends them there: docs/service.md's transcript)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil


class Llmtp:
    """`llmtp ARGS` with `env`, recorded as a terminal session would show it."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.lines: list[str] = []

    def __call__(self, *args: str, ok: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
        done = subprocess.run(
            [sys.executable, "-m", "llmtp", *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        self.note(f"$ llmtp {' '.join(args)}", done.stdout + done.stderr, f"(exit {done.returncode})")
        if ok:
            assert done.returncode == 0, (
                f"llmtp {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
            )
        return done

    def note(self, *texts: str) -> None:
        for t in texts:
            self.lines += [line.rstrip() for line in t.rstrip("\n").splitlines()]

    def save(self, title: str) -> None:
        out = os.environ.get("LLMTP_TEST_TRANSCRIPT")
        if out:
            with Path(out).open("a", encoding="utf-8") as f:
                f.write(f"## {title}\n" + "\n".join(self.lines) + "\n\n")


def health(port: int) -> int | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code
    except httpx.HTTPError:
        return None


def wait_until(what: str, check, timeout: float = 120, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def llama_servers(main_pid: int) -> list[psutil.Process]:
    """The llama-server processes below `main_pid` (the supervisor systemd started)."""
    try:
        kids = psutil.Process(main_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [p for p in kids if p.name() == "llama-server"]


def complete(port: int, prompt: str = "one two three", n: int = 8, model: str | None = None) -> dict:
    """POST /completion; `model`: the model of a router to answer it."""
    body = {"prompt": prompt, "n_predict": n, "temperature": 0, **({"model": model} if model else {})}
    r = httpx.post(f"http://127.0.0.1:{port}/completion", json=body, timeout=120)
    r.raise_for_status()
    return r.json()
