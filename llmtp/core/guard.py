"""The MTP guard while serving, pure part: when served acceptance stays below the break-even beyond noise,
step to the next safer setting (drop the n-gram drafts, then MTP off); retry the setting above later.

Evidence is per request: each finished request that drafted gives its acceptance (accepted / drafted).
Over the requests since the last switch (at most `window`), the guard steps down only when the upper
confidence bound of the acceptance (pooled mean + z standard errors of the per-request values) is under
the break-even `llmtp tune` measured for the setting served: one unlucky request is noise, a window of
them is not. Hysteresis: every switch starts a fresh window (at least `min_requests` requests before the
next decision), and a safer setting goes back up only after `retry_after` finished requests, a wait that
doubles each time the retried setting loses again, so a server never flaps between two settings.
Nothing here touches a process: services/verify/mtp_guard.py waits for idle slots and relaunches.
"""

from __future__ import annotations

import math
import statistics
from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core.launch import MtpSettings
from llmtp.core.metrics import LastRequest
from llmtp.core.tune import label
from llmtp.core.tune_decision import SettingBreakEven, safer

WINDOW = 16  # requests that drafted, since the last switch
MIN_REQUESTS = 6  # that drafted, before any verdict
MIN_DRAFTED = 60  # drafted tokens in the window, before any verdict
Z = 2.0  # one-sided, about 98%: the acceptance must be this many standard errors under break-even
RETRY_AFTER = 200  # finished requests on a safer setting before the one above is tried again
MAX_RETRY_AFTER = 6400


class GuardConfig(BaseModel):
    window: int = WINDOW
    min_requests: int = MIN_REQUESTS
    min_drafted: int = MIN_DRAFTED
    z: float = Z
    retry_after: int = RETRY_AFTER  # 0: never go back up
    max_retry_after: int = MAX_RETRY_AFTER


class Evidence(BaseModel):
    verdict: Literal["losing", "paying", "unknown"]
    requests: int  # that drafted, in the window
    drafted: int
    acceptance: float | None  # pooled: accepted / drafted
    upper: float | None  # acceptance + z standard errors
    break_even: float | None
    detail: str


def evidence(window: list[LastRequest], break_even: float | None, cfg: GuardConfig) -> Evidence:
    """Is the setting served losing, beyond noise, on the requests in `window`?"""
    drafted = [r for r in window if r.drafted]
    n, total = len(drafted), sum(r.drafted or 0 for r in drafted)
    acc = sum(r.accepted or 0 for r in drafted) / total if total else None
    base = dict(requests=n, drafted=total, acceptance=acc, break_even=break_even)
    if n < cfg.min_requests or total < cfg.min_drafted:
        return Evidence(
            verdict="unknown",
            upper=None,
            **base,
            detail=f"{n} request(s) with drafts, {total} drafted tokens: too few to judge",
        )
    assert acc is not None
    per = [(r.accepted or 0) / (r.drafted or 1) for r in drafted]
    upper = acc + cfg.z * statistics.stdev(per) / math.sqrt(n)
    if break_even is None:
        return Evidence(
            verdict="unknown",
            upper=upper,
            **base,
            detail=f"acceptance {acc:.2f} over {n} requests; no measured break-even for this setting",
        )
    if upper < break_even:
        return Evidence(
            verdict="losing",
            upper=upper,
            **base,
            detail=f"acceptance {acc:.2f} (at most {upper:.2f}) over {n} requests, under the "
            f"break-even {break_even:.2f}",
        )
    return Evidence(
        verdict="paying",
        upper=upper,
        **base,
        detail=f"acceptance {acc:.2f} over {n} requests; break-even {break_even:.2f}",
    )


class Switch(BaseModel):
    at: str  # ISO time, from the caller
    from_label: str
    to_label: str
    why: str


class GuardState(BaseModel):
    """One served model's guard: the ladder (tuned setting first, each next one safer), where it is on it."""

    ladder: list[SettingBreakEven]
    level: int = 0  # index into `ladder`; len(ladder) means MTP off
    window: list[LastRequest] = Field(default_factory=list)  # since the last switch, at most cfg.window that drafted
    since_switch: int = 0  # finished requests since the last switch
    retry_after: int = RETRY_AFTER  # the current wait before going back up
    retrying: bool = False  # the current level was reached by going back up: losing again doubles the wait
    switches: list[Switch] = Field(default_factory=list)
    last: Evidence | None = None

    @property
    def served(self) -> MtpSettings:
        return self.ladder[self.level].mtp if self.level < len(self.ladder) else MtpSettings(enabled=False)

    @property
    def served_label(self) -> str:
        return label(self.served)


def ladder_for(served: MtpSettings, stored: list[SettingBreakEven], break_even: float | None) -> list[SettingBreakEven]:
    """The steps from `served` down: the stored ladder (from `llmtp tune`) when it starts at what is served,
    else `served` with `break_even` (tune's or verify's figure) and safer settings of unknown break-even."""

    def same(a: MtpSettings, b: MtpSettings) -> bool:
        return a.model_copy(update={"draft_model": None}) == b.model_copy(update={"draft_model": None})

    if stored and same(stored[0].mtp, served):
        return [
            r.model_copy(update={"mtp": r.mtp.model_copy(update={"draft_model": served.draft_model})}) for r in stored
        ]
    out = []
    mtp: MtpSettings | None = served
    be = break_even
    while mtp is not None and mtp.enabled:
        out.append(SettingBreakEven(mtp=mtp, label=label(mtp), break_even_acceptance=be))
        mtp, be = safer(mtp), None
    return out


def start(ladder: list[SettingBreakEven], cfg: GuardConfig | None = None) -> GuardState:
    cfg = cfg or GuardConfig()
    return GuardState(ladder=ladder, retry_after=cfg.retry_after)


def observe(state: GuardState, requests: list[LastRequest], cfg: GuardConfig) -> GuardState:
    """Add finished requests of the setting served now."""
    window = [*state.window, *requests]
    drafted = [i for i, r in enumerate(window) if r.drafted]
    if len(drafted) > cfg.window:
        window = window[drafted[-cfg.window] :]
    return state.model_copy(update={"window": window, "since_switch": state.since_switch + len(requests)})


class Action(BaseModel):
    direction: Literal["down", "up"]
    to: MtpSettings
    to_label: str
    why: str


def decide(state: GuardState, cfg: GuardConfig) -> tuple[GuardState, Action | None]:
    """What to do now: step down on evidence of losing, step up after the wait, else nothing."""
    if state.level < len(state.ladder):
        rung = state.ladder[state.level]
        ev = evidence(state.window, rung.break_even_acceptance, cfg)
        state = state.model_copy(update={"last": ev})
        if ev.verdict == "losing":
            below = state.level + 1
            nxt = state.ladder[below].mtp if below < len(state.ladder) else MtpSettings(enabled=False)
            return state, Action(
                direction="down",
                to=nxt,
                to_label=label(nxt),
                why=f"{rung.label} is losing: {ev.detail}, so drafting costs more than it saves",
            )
    if state.level > 0 and cfg.retry_after and state.since_switch >= state.retry_after:
        up = state.ladder[state.level - 1]
        return state, Action(
            direction="up",
            to=up.mtp,
            to_label=up.label,
            why=f"{state.since_switch} requests on {state.served_label} since the last switch: "
            f"trying {up.label} again (the traffic may have changed)",
        )
    return state, None


def switched(state: GuardState, action: Action, at: str, cfg: GuardConfig) -> GuardState:
    """The state once the mechanism has served `action.to`: a fresh window, the wait updated."""
    level = state.level + (1 if action.direction == "down" else -1)
    wait = state.retry_after
    if action.direction == "down" and state.retrying:  # the setting tried again lost again: wait longer
        wait = min(cfg.max_retry_after, wait * 2)
    return state.model_copy(
        update={
            "level": level,
            "window": [],
            "since_switch": 0,
            "retry_after": wait,
            "retrying": action.direction == "up",
            "switches": [
                *state.switches,
                Switch(at=at, from_label=state.served_label, to_label=action.to_label, why=action.why),
            ],
        }
    )
