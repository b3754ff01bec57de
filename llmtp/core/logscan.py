"""Distil llama-server's log into the few lines that explain a failure, and classify it.

A failed start prints hundreds of load lines; a user needs the two that say why. Samples (b11434):
  `0.00.420.606 W llama_init_from_model: context type MTP requested but model doesn't contain MTP layers`
  `0.00.005.815 E llama_model_load: error loading model: llama_model_loader: failed to load model from /x.gguf`
  `error: invalid argument: --bogus-flag`
  `ggml_backend_cuda_buffer_type_alloc_buffer: allocating 1234.00 MiB on device 0: cudaMalloc failed: out of memory`
"""

from __future__ import annotations

import re
import signal
from typing import Literal

FailureKind = Literal["oom", "mtp_missing", "bad_argument", "model_load", "crash", "unknown"]

# `0.00.420.606 W ` : llama.cpp's common log prefix (timestamp, level letter).
_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ ([DIWE]) ")

# Ordered by how much they explain; the first kind that matches classifies the failure.
_PATTERNS: tuple[tuple[FailureKind, re.Pattern[str]], ...] = (
    (
        "oom",
        re.compile(
            r"out of memory|cudaMalloc failed|failed to allocate|unable to allocate"
            r"|ErrorOutOfDeviceMemory|hipErrorOutOfMemory|insufficient memory",
            re.I,
        ),
    ),
    ("mtp_missing", re.compile(r"doesn't contain MTP layers|failed to create MTP context")),
    (
        "bad_argument",
        re.compile(
            r"error: invalid argument|unknown argument|the argument has been removed"
            r"|error: unknown value|unknown speculative type"
        ),
    ),
    (
        "crash",
        re.compile(
            r"GGML_ASSERT|CUDA error|ROCm error|HIP error|Segmentation fault|SIGSEGV"
            r"|terminate called|Aborted"
        ),
    ),
    ("model_load", re.compile(r"error loading model|failed to load model")),
)


def strip_prefix(line: str) -> str:
    return _PREFIX.sub("", line.rstrip())


def meaningful_lines(text: str, limit: int = 6) -> list[str]:
    """The lines that explain a failure: known patterns first, then error-level lines, in log order."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    picked: list[int] = []
    for i, line in enumerate(lines):
        if any(p.search(line) for _, p in _PATTERNS):
            picked.append(i)
    for i, line in enumerate(lines):
        m = _PREFIX.match(line)
        if m and m.group(1) == "E" and i not in picked:
            picked.append(i)
    # Keep log order but prefer pattern hits when the budget is short.
    out: list[str] = []
    for i in sorted(picked):
        text_i = strip_prefix(lines[i])
        if text_i not in out:  # fit retries the load and repeats the same errors
            out.append(text_i)
    return out[:limit]


def classify(text: str) -> FailureKind:
    for kind, pattern in _PATTERNS:
        if pattern.search(text):
            return kind
    return "unknown"


def exit_description(returncode: int | None) -> str:
    """`code 1`, or the signal that killed the process (subprocess reports it as -N), with what a
    SIGILL means: the binary was built for instructions this CPU (or VM) does not run."""
    if returncode is None or returncode >= 0:
        return f"code {returncode}"

    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        return f"code {returncode}"
    if name == "SIGILL":
        return (
            f"{name} (illegal instruction: the build uses CPU instructions this machine cannot run; "
            "rebuild with `llmtp build --portable`)"
        )
    return f"{name} (code {returncode})"
