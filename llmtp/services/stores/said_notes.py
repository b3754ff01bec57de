"""Notes said once: a note that would repeat on every command (the hub cannot be reached, so plans use the
catalog's sizes) is said in full the first time each day, and in a few words after that."""

from __future__ import annotations

import time
from pathlib import Path

from llmtp.adapters.files import read_json_cache, write_json_atomic


def first_today(settings, key: str, now: float | None = None) -> bool:
    """True the first time `key` is asked about on a calendar day (and then remembered under the cache dir);
    True as well when nothing can be remembered (better said twice than never)."""

    path = Path(settings.cache_dir) / "notes-said.json"
    day = time.strftime("%Y-%m-%d", time.localtime(time.time() if now is None else now))
    said = read_json_cache(path, dict[str, str]) or {}
    if said.get(key) == day:
        return False
    try:
        write_json_atomic(path, {**said, key: day})
    except OSError:
        pass
    return True
