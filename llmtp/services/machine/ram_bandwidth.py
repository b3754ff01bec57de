"""The RAM bandwidth a CPU plan predicts speed from: stated (--ram-bw), else measured once and cached for
a week under the cache dir (adapters/membw.py), so `plan` shows a tok/s figure instead of `?`."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel

from llmtp.adapters.files import read_json_cache, write_json_atomic

MAX_AGE_S = 7 * 24 * 3600


class Measured(BaseModel):
    gbps: float
    at: float


def cache_path(settings) -> Path:
    return Path(settings.cache_dir) / "ram-bandwidth.json"


def cached_ram_bandwidth(settings, now: float | None = None) -> float | None:
    """The measurement `plan` cached, while it is fresh; None otherwise (nothing is measured here)."""

    now = time.time() if now is None else now
    cached = read_json_cache(cache_path(settings), Measured)
    return cached.gbps if cached is not None and 0 <= now - cached.at < MAX_AGE_S else None


def ram_bandwidth(settings, measure=None, now: float | None = None) -> tuple[float | None, str]:
    """(GB/s, where it came from) - measured now, or the cached measurement; (None, why) when it failed."""

    now = time.time() if now is None else now
    cached = read_json_cache(cache_path(settings), Measured)
    if cached is not None and 0 <= now - cached.at < MAX_AGE_S:
        return cached.gbps, f"measured {time.strftime('%Y-%m-%d', time.localtime(cached.at))}"
    if measure is None:
        from llmtp.adapters.membw import measure_gbps as measure
    gbps = measure()
    if gbps is None:
        return None, "could not be measured"
    try:
        write_json_atomic(cache_path(settings), Measured(gbps=gbps, at=now))
    except OSError:
        pass  # a cache only: measured again next time
    return gbps, "measured now"
