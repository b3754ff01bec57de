"""Stop signals (SIGTERM, SIGINT) routed to one callback while a foreground supervisor runs (stdlib)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def on_stop_signals(stop: Callable[[], None], *, install: bool = True) -> Iterator[None]:
    """Call `stop` on SIGTERM or SIGINT inside the block, and put the previous handlers back after
    it. `install=False` leaves the handlers alone (a caller that is not the main thread, or a test)."""
    previous = {}
    if install:
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, lambda *_: stop())
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
