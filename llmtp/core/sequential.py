"""Sequential A/B statistics, pure: the paired speedup's interval, when to stop, how long each run is."""

from __future__ import annotations

import math
import statistics
from typing import Literal

from pydantic import BaseModel

# Two-sided 99% Student t quantiles (0.995) by degrees of freedom. The check looks after every pair,
# so each look uses a stricter level than the 95% a single test would: repeated looks add errors.
_T995 = (
    63.657,
    9.925,
    5.841,
    4.604,
    4.032,
    3.707,
    3.499,
    3.355,
    3.250,
    3.169,
    3.106,
    3.055,
    3.012,
    2.977,
    2.947,
    2.921,
    2.898,
    2.878,
    2.861,
    2.845,
    2.831,
    2.819,
    2.807,
    2.797,
    2.787,
    2.779,
    2.771,
    2.763,
    2.756,
    2.750,
)


class SpeedupInterval(BaseModel):
    """The speedup of paired runs: the geometric mean of MTP/plain ratios and its 99% interval."""

    pairs: int
    speedup: float
    low: float | None  # None: too few pairs for an interval
    high: float | None


def speedup_interval(ratios: list[float]) -> SpeedupInterval | None:
    """Student t interval on log(MTP/plain) of paired runs: a pair shares prompt, temperature, seed and
    the moment it ran, so the machine's drift cancels within a pair."""
    logs = [math.log(r) for r in ratios if r and r > 0]
    if not logs:
        return None
    mean = statistics.fmean(logs)
    if len(logs) < 2:
        return SpeedupInterval(pairs=1, speedup=math.exp(mean), low=None, high=None)
    se = statistics.stdev(logs) / math.sqrt(len(logs))
    t = _T995[min(len(logs) - 1, len(_T995)) - 1]
    return SpeedupInterval(
        pairs=len(logs), speedup=math.exp(mean), low=math.exp(mean - t * se), high=math.exp(mean + t * se)
    )


Stop = Literal["above", "below", "budget"]


def sequential_stop(
    ratios: list[float], threshold: float, *, min_pairs: int, spent_s: float, budget_s: float, next_cost_s: float = 0.0
) -> Stop | None:
    """After each pair: "above"/"below" once the interval lies wholly on one side of `threshold`
    (never before `min_pairs`), "budget" when the generation time is spent or the next pair (costing
    about `next_cost_s`, e.g. the mean pair so far) would overrun it, else None: go on.
    The budget wins over `min_pairs`: the wall time stays bounded on a slow or busy machine."""
    iv = speedup_interval(ratios)
    if iv is not None and iv.pairs >= max(min_pairs, 2) and iv.low is not None and iv.high is not None:
        if iv.low > threshold:
            return "above"
        if iv.high < threshold:
            return "below"
    if ratios and spent_s + next_cost_s >= budget_s:
        return "budget"
    return None


MIN_RUN_TOKENS = 32


def run_tokens(
    n_predict: int, budget_left_s: float, min_pairs: int, mtp_tps: float | None, plain_tps: float | None
) -> int:
    """Tokens per run so that `min_pairs` pairs fit in what is left of the budget, at the speeds the
    warm-ups showed; never more than asked, never under 32. A slow arm (rejected drafts on a busy CPU
    can decode at 1 tok/s) would otherwise spend the whole budget on its first run."""
    if not mtp_tps or not plain_tps or budget_left_s <= 0:
        return min(n_predict, MIN_RUN_TOKENS) if budget_left_s <= 0 else n_predict
    per_token_pair = 1.0 / mtp_tps + 1.0 / plain_tps
    fit = int(budget_left_s / (max(min_pairs, 2) * per_token_pair))
    return max(min(n_predict, MIN_RUN_TOKENS), min(n_predict, fit))


class Sequential(BaseModel):
    """How a sequential check ended, for the report."""

    pairs: int
    n_predict: int | None = None  # tokens per run, fitted so min_pairs fit into the budget
    n_predict_last: int | None = None  # refitted after each pair to the mean time per token seen
    stopped: Stop
    generation_s: float
    budget_s: float
    interval: SpeedupInterval | None
