"""The live MTP check while serving, pure part: rolling acceptance and speed over the last requests,
judged against the break-even acceptance that `llmtp tune` (or a passing `llmtp verify`) measured.

Acceptance alone decides: speed depends on each request's context and prompt, so served tok/s cannot be
compared with a benchmark's plain figure, but the acceptance a draft needs to pay for itself can. The
verdict only advises (the fix is `llmtp tune MODEL`); nothing restarts a server because of it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Literal

from pydantic import BaseModel

from llmtp.core.metrics import LastRequest

WINDOW = 20  # requests
MIN_REQUESTS = 5  # with drafts, before a verdict
MIN_DRAFTED = 100  # drafted tokens in the window, before a verdict

LiveState = Literal["winning", "losing", "unknown", "off"]


class LiveMtp(BaseModel):
    state: LiveState
    requests: int  # in the window
    drafted: int
    acceptance: float | None  # accepted / drafted over the window
    tokens_per_second: float | None  # effective: generated tokens / eval time over the window
    break_even_acceptance: float | None
    detail: str
    fix: str | None = None  # the command that fixes it, when losing or unmeasured


class RollingMtp:
    """The last `window` finished requests of one served model."""

    def __init__(self, window: int = WINDOW):
        self._window: deque[LastRequest] = deque(maxlen=window)

    def add(self, requests: Iterable[LastRequest]) -> None:
        self._window.extend(requests)

    def assess(self, break_even: float | None, model: str) -> LiveMtp:
        return assess(list(self._window), break_even, model)


def assess(requests: list[LastRequest], break_even: float | None, model: str) -> LiveMtp:
    """Verdict over `requests` (the window). `model` names the model in the fix command."""
    fix = f"llmtp tune {model}"
    drafted = sum(r.drafted or 0 for r in requests)
    accepted = sum(r.accepted or 0 for r in requests if r.drafted)
    eval_s = sum((r.eval_ms or 0.0) for r in requests) / 1000.0
    tokens = sum(r.tokens for r in requests if r.eval_ms)
    tps = tokens / eval_s if eval_s > 0 else None
    acc = accepted / drafted if drafted else None
    with_drafts = sum(1 for r in requests if r.drafted)
    base = dict(
        requests=len(requests), drafted=drafted, acceptance=acc, tokens_per_second=tps, break_even_acceptance=break_even
    )
    if requests and not drafted:
        return LiveMtp(state="off", detail="no request drafted a token: MTP is off or never drafts", **base)
    if with_drafts < MIN_REQUESTS or drafted < MIN_DRAFTED:
        return LiveMtp(
            state="unknown",
            detail=f"{with_drafts} request(s), {drafted} drafted tokens so far: too few to judge",
            **base,
        )
    assert acc is not None
    if break_even is None:
        return LiveMtp(
            state="unknown",
            fix=fix,
            **base,
            detail=f"acceptance {acc:.2f} over {len(requests)} requests; no measured break-even "
            "acceptance for this model",
        )
    if acc < break_even:
        return LiveMtp(
            state="losing",
            fix=fix,
            **base,
            detail=f"MTP is losing: acceptance {acc:.2f} over the last {len(requests)} requests is "
            f"under the break-even {break_even:.2f} measured by tune or verify, so "
            "drafting costs more than it saves",
        )
    return LiveMtp(
        state="winning",
        **base,
        detail=f"acceptance {acc:.2f} over the last {len(requests)} requests, above the break-even {break_even:.2f}",
    )
