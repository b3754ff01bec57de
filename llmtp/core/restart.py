"""The restart policy: how often a crashed llama-server is restarted, how long to wait, when to give up.

Pure, like supervisord's startretries/backoff and circus' max_retry: a crash is recorded with the
time it happened; the decision depends only on the recent crash history and the clock value passed in.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class RestartPolicy(BaseModel):
    max_crashes: int = Field(5, ge=0)  # more than this many crashes within window_s -> give up
    window_s: float = Field(300.0, gt=0)
    backoff_initial_s: float = Field(0.25, ge=0)  # first restart is quick: kill -9 must heal in < 10 s
    backoff_factor: float = Field(2.0, ge=1)
    backoff_max_s: float = Field(30.0, ge=0)
    stable_after_s: float = Field(60.0, ge=0)  # a run that stayed up this long resets the backoff


class RestartHistory(BaseModel):
    crash_times: list[float] = Field(default_factory=list)  # monotonic seconds of recent crashes
    consecutive: int = 0  # crashes since the last stable run; drives the backoff exponent


class RestartDecision(BaseModel):
    action: Literal["restart", "give_up"]
    delay_s: float = 0.0
    crashes_in_window: int
    reason: str


def backoff(policy: RestartPolicy, consecutive: int) -> float:
    """Delay before restart number `consecutive` (1-based): initial * factor^(n-1), capped."""
    if consecutive <= 0:
        return 0.0
    return min(policy.backoff_max_s, policy.backoff_initial_s * policy.backoff_factor ** (consecutive - 1))


def record_crash(
    policy: RestartPolicy, history: RestartHistory, now: float, uptime_s: float | None
) -> tuple[RestartHistory, RestartDecision]:
    """Record one crash at `now` after a run of `uptime_s` (None: it never came up) and decide."""
    recent = [t for t in history.crash_times if now - t <= policy.window_s] + [now]
    stable = uptime_s is not None and uptime_s >= policy.stable_after_s
    consecutive = 1 if stable else history.consecutive + 1
    new = RestartHistory(crash_times=recent, consecutive=consecutive)
    if len(recent) > policy.max_crashes:
        return new, RestartDecision(
            action="give_up",
            crashes_in_window=len(recent),
            reason=f"{len(recent)} crashes within {policy.window_s:.0f} s (limit {policy.max_crashes})",
        )
    delay = backoff(policy, consecutive)
    return new, RestartDecision(
        action="restart",
        delay_s=delay,
        crashes_in_window=len(recent),
        reason=f"crash {len(recent)} of at most {policy.max_crashes} "
        f"within {policy.window_s:.0f} s; restarting in {delay:.2f} s",
    )
