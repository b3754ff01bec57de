"""MTP tuning, pure part: which configurations to try, and which one to keep.

The sweep runs in stages so it stays short: n-max 1-6 at p-min 0, then p-min 0.5 and 0.75 on the best
n-max, then ngram-mod stacked on the best (where the binary offers it). Plain decoding is the reference.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from llmtp.core.launch import MtpSettings
from llmtp.core.verify import Stats

N_MAX_RANGE = [1, 2, 3, 4, 5, 6]
P_MIN_VALUES = [0.5, 0.75]
# MTP costs memory and prompt speed: keep it only when it is clearly faster than plain decoding.
DEFAULT_MIN_GAIN = 0.03


def stage_n_max(base: MtpSettings) -> list[MtpSettings]:
    return [base.model_copy(update={"enabled": True, "n_max": n, "p_min": 0.0, "extra_types": []})
            for n in N_MAX_RANGE]


def stage_p_min(best: MtpSettings) -> list[MtpSettings]:
    return [best.model_copy(update={"p_min": p}) for p in P_MIN_VALUES]


def stage_stack(best: MtpSettings, spec_types: list[str]) -> list[MtpSettings]:
    """ngram-mod stacked on draft-mtp, only where `--spec-type` lists it."""
    if "ngram-mod" not in spec_types or "ngram-mod" in best.extra_types:
        return []
    return [best.model_copy(update={"extra_types": [*best.extra_types, "ngram-mod"]})]


def label(mtp: MtpSettings) -> str:
    if not mtp.enabled:
        return "plain"
    text = f"n-max {mtp.n_max}, p-min {mtp.p_min if mtp.p_min is not None else 0:g}"
    if mtp.extra_types:
        text += " + " + ",".join(mtp.extra_types)
    return text


class Trial(BaseModel):
    mtp: MtpSettings
    label: str
    tokens_per_s: Stats | None
    acceptance: float | None = None
    error: str | None = None  # launch or run failure: the trial is skipped, not fatal


def best_trial(trials: list[Trial]) -> Trial | None:
    """The fastest MTP trial that drafted: one that never drafted (p-min too high) is plain decoding."""
    ok = [t for t in trials if t.tokens_per_s is not None and t.mtp.enabled and t.acceptance is not None]
    return max(ok, key=lambda t: t.tokens_per_s.median) if ok else None  # type: ignore[union-attr]


class TuneDecision(BaseModel):
    chosen: MtpSettings
    label: str
    plain_tokens_per_s: float | None
    chosen_tokens_per_s: float | None
    speedup: float | None
    reason: str
    trials: list[Trial] = Field(default_factory=list)


def decide(plain: Stats | None, trials: list[Trial], min_gain: float = DEFAULT_MIN_GAIN) -> TuneDecision:
    best = best_trial(trials)
    off = MtpSettings(enabled=False)
    plain_tps = plain.median if plain else None
    if best is None or best.tokens_per_s is None:
        return TuneDecision(chosen=off, label="plain", plain_tokens_per_s=plain_tps, chosen_tokens_per_s=None,
                            speedup=None, reason="no MTP configuration could be measured; MTP off", trials=trials)
    speedup = best.tokens_per_s.median / plain_tps if plain_tps else None
    if speedup is None:
        return TuneDecision(chosen=off, label="plain", plain_tokens_per_s=None,
                            chosen_tokens_per_s=best.tokens_per_s.median, speedup=None,
                            reason="plain decoding could not be measured; MTP left off", trials=trials)
    if speedup < 1.0 + min_gain:
        acc = f", acceptance {best.acceptance:.2f}" if best.acceptance is not None else ""
        return TuneDecision(
            chosen=off, label="plain", plain_tokens_per_s=plain_tps, chosen_tokens_per_s=best.tokens_per_s.median,
            speedup=speedup, trials=trials,
            reason=(f"nothing beats plain decoding: best MTP ({best.label}{acc}) runs at {speedup:.2f}x "
                    f"plain, under the {1 + min_gain:.2f}x needed; MTP off for this model"))
    return TuneDecision(chosen=best.mtp, label=best.label, plain_tokens_per_s=plain_tps,
                        chosen_tokens_per_s=best.tokens_per_s.median, speedup=speedup, trials=trials,
                        reason=f"{best.label} is the fastest: {speedup:.2f}x plain decoding")
