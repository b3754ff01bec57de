"""Verify baselines, pure part: the key, the stored record and the regression comparison."""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, Field

DEFAULT_TOLERANCE = 0.10


def baseline_key(model_key: str, profile: str | None, gpu: str | None) -> str:
    """One baseline per (model, build profile, GPU); safe as a file name."""
    raw = f"{model_key}__{profile or 'unknown'}__{gpu or 'nogpu'}"
    return re.sub(r"[^A-Za-z0-9._-]+", "_", raw)


def last_ab_key(key: str) -> str:
    """Where the latest A/B of a baseline key is kept whatever its verdict (the baseline itself is only
    ever a pass): `verify --port` judges a running server's acceptance against its break-even."""
    return f"{key}__last-ab"


class Baseline(BaseModel):
    key: str
    model_key: str
    profile: str | None = None
    gpu: str | None = None
    build_id: str | None = None
    created: str | None = None  # ISO time, passed in by the service
    n_predict: int
    mtp_tokens_per_s: dict[str, float] = Field(default_factory=dict)  # case key -> median
    plain_tokens_per_s: dict[str, float] = Field(default_factory=dict)
    speedup: float | None = None
    break_even_acceptance: float | None = None  # for the live check while serving
    argv: list[str] = Field(default_factory=list)  # the MTP arm's llama-server argv, --port blanked: the plan
    verdict: int | None = None  # the A/B's exit code (a stored baseline is always 0)


class CaseDelta(BaseModel):
    case: str
    baseline: float
    current: float
    change: float  # current / baseline - 1


class BaselineComparison(BaseModel):
    build_id: str | None  # the baseline's build
    tolerance: float
    cases: list[CaseDelta]
    change: float | None  # geometric mean of the per-case ratios, minus 1
    regression: bool
    note: str | None = None


def compare(
    baseline: Baseline, current_mtp: dict[str, float], n_predict: int, tolerance: float = DEFAULT_TOLERANCE
) -> BaselineComparison:
    """Regression = MTP tok/s over the cases both runs measured dropped by more than `tolerance`.

    The aggregate (not any single case) decides: one noisy temperature-0.7 run must not fail an upgrade.
    """
    deltas = [
        CaseDelta(case=k, baseline=b, current=current_mtp[k], change=current_mtp[k] / b - 1.0)
        for k, b in baseline.mtp_tokens_per_s.items()
        if k in current_mtp and b > 0
    ]
    note = None
    if n_predict != baseline.n_predict:
        note = f"baseline measured {baseline.n_predict} tokens per run, this run {n_predict}"
    if not deltas:
        return BaselineComparison(
            build_id=baseline.build_id,
            tolerance=tolerance,
            cases=[],
            change=None,
            regression=False,
            note=note or "no case in common with the baseline",
        )

    change = math.exp(sum(math.log(1.0 + d.change) for d in deltas) / len(deltas)) - 1.0
    return BaselineComparison(
        build_id=baseline.build_id,
        tolerance=tolerance,
        cases=deltas,
        change=change,
        regression=change < -tolerance,
        note=note,
    )


def regression_reason(cmp: BaselineComparison | None) -> str | None:
    if cmp is None or not cmp.regression or cmp.change is None:
        return None
    return (
        f"MTP tok/s {cmp.change * 100:+.1f}% against the baseline of build {cmp.build_id or 'unknown'} "
        f"(tolerance {cmp.tolerance * 100:.0f}%)"
    )
