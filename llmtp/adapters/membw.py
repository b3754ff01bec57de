"""System RAM bandwidth, measured: copy a buffer much larger than the CPU caches a few times and keep the
best rate (a copy reads and writes each byte, so it counts twice). It is what a CPU decode reads weights
at; a loaded machine measures low, so `plan` says where the figure came from."""

from __future__ import annotations

import time

BUFFER_BYTES = 256 * 2**20
ROUNDS = 4


def measure_gbps(buffer_bytes: int = BUFFER_BYTES, rounds: int = ROUNDS) -> float | None:
    """GB/s (10^9 bytes) of the best of `rounds` copies; None when numpy or the memory is missing."""
    try:
        import numpy as np

        src = np.ones(buffer_bytes // 8, dtype=np.float64)
        dst = np.empty_like(src)
    except (ImportError, MemoryError):
        return None
    best = None
    for _ in range(rounds):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        dt = time.perf_counter() - t0
        best = dt if best is None or dt < best else best
    return round(2 * buffer_bytes / best / 1e9, 1) if best else None
