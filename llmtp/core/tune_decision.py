"""MTP tuning's verdict, pure part: each finalist judged on the held-out half, the setting kept, and the
ladder of safer settings the serve guard steps down.

A finalist is kept only when the rule holds on the held-out families (core/families.py); the trials it
judges, and the selection half's best, come from core/tune.py.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from llmtp.core.families import Rule, holds
from llmtp.core.launch import MtpSettings
from llmtp.core.tune import Trial, best_trial, compare, family_acceptance, family_break_even, label, passes, ratios
from llmtp.core.verify import Stats, break_even_acceptance, summarize


class HeldOut(BaseModel):
    """A finalist on the held-out half: per-prompt and per-family speedups against plain."""

    label: str
    mtp: MtpSettings
    speedups: dict[str, float]  # prompt -> speedup
    spread: Stats | None  # of the per-prompt speedups
    families: dict[str, float] = Field(default_factory=dict)  # family -> speedup: what the rule judges
    family_acceptance: dict[str, float] = Field(default_factory=dict)
    family_break_even: dict[str, float] = Field(default_factory=dict)  # family -> break-even acceptance
    score: float | None = None  # the rule's figure: the families' geometric mean, or the workload's
    acceptance: float | None = None
    break_even_acceptance: float | None = None
    passed: bool
    why: str


def judge(candidate: Trial, plain: Trial, rule: Rule, families: dict[str, str]) -> HeldOut:
    """Kept only when the rule holds on the held-out families (core.families.holds)."""
    r = ratios(candidate, plain)
    compare(candidate, plain, families, rule)
    be = family_break_even(candidate, families)
    per_step = candidate.draft_tokens_per_step or float(candidate.mtp.n_max)
    acc = family_acceptance(candidate, families)
    args = dict(
        label=candidate.label,
        mtp=candidate.mtp,
        speedups=r,
        spread=summarize(list(r.values())),
        families=candidate.families,
        family_acceptance=acc,
        family_break_even=be,
        score=candidate.speedup,
        acceptance=candidate.acceptance,
    )
    if candidate.error or not r:
        return HeldOut(**args, passed=False, why=f"not measured on the held-out prompts ({candidate.error})")
    if rule.workload is not None:
        overall = be.get(rule.workload)
    else:
        overall = break_even_acceptance(candidate.speedup, candidate.acceptance, per_step)
    ok, why = holds(
        candidate.families, rule, list(dict.fromkeys(families[n] for n in plain.per_prompt if n in families))
    )
    return HeldOut(**args, break_even_acceptance=overall, passed=ok, why=why)


class SettingBreakEven(BaseModel):
    """One rung of the ladder the serve guard steps down: a setting and its measured break-even."""

    mtp: MtpSettings
    label: str
    break_even_acceptance: float | None


class TuneDecision(BaseModel):
    chosen: MtpSettings
    label: str
    plain_tokens_per_s: float | None
    chosen_tokens_per_s: float | None
    speedup: float | None  # held-out score against plain: what is stored and printed
    reason: str
    workload: str | None = None  # the family the user named; None: every family judged
    trials: list[Trial] = Field(default_factory=list)  # the selection half
    heldout: list[HeldOut] = Field(default_factory=list)
    selection_speedup: float | None = None  # the chosen (or best) setting on the selection half
    acceptance: float | None = None
    break_even_acceptance: float | None = None
    families: dict[str, float] = Field(default_factory=dict)  # the chosen (or best) on held-out, per family
    family_acceptance: dict[str, float] = Field(default_factory=dict)
    family_break_even: dict[str, float] = Field(default_factory=dict)
    ladder: list[SettingBreakEven] = Field(default_factory=list)  # chosen, then the safer settings


def drift_note(drift: float | None, noise_band: float) -> str:
    """A warning when plain decoding itself moved by more than the noise band during the held-out runs."""
    if drift is None or abs(math.log(drift)) <= math.log(1.0 + noise_band):
        return ""
    return (
        f"; plain decoding moved {drift - 1:+.0%} between the start and end of the held-out runs (a busy "
        f"machine?): run `llmtp tune` again when it is idle"
    )


def safer(mtp: MtpSettings) -> MtpSettings | None:
    """The next safer setting: drop the n-gram (and other stacked) drafts, then MTP off; None past off."""
    if not mtp.enabled:
        return None
    if mtp.extra_types:
        return mtp.model_copy(update={"extra_types": []})
    return MtpSettings(enabled=False)


def ladder(chosen: MtpSettings, selection: list[Trial], judged: list[HeldOut]) -> list[SettingBreakEven]:
    """The chosen setting and each safer one with its break-even (held-out where measured there, else
    the selection half's), for the serve guard."""
    out = []
    mtp: MtpSettings | None = chosen
    while mtp is not None and mtp.enabled:
        held = next((j for j in judged if j.mtp == mtp), None)
        be = held.break_even_acceptance if held is not None else None
        if be is None:
            sel = next((t for t in selection if t.mtp == mtp), None)
            if sel is not None:
                be = break_even_acceptance(
                    sel.speedup, sel.acceptance, sel.draft_tokens_per_step or float(sel.mtp.n_max)
                )
        out.append(SettingBreakEven(mtp=mtp, label=label(mtp), break_even_acceptance=be))
        mtp = safer(mtp)
    return out


def decide(
    plain_heldout: Trial | None,
    selection: list[Trial],
    heldout: list[Trial],
    rule: Rule | None = None,
    drift: float | None = None,
    families: dict[str, str] | None = None,
) -> TuneDecision:
    """`selection`: every trial on the select half (plain included), already `compare`d with plain;
    `heldout`: the finalists (in `finalists` order) on the held-out half, judged here against
    `plain_heldout` (see `bracket`; `drift` is its after / before, a warning when plain moved beyond the
    noise band). `families`: prompt name -> family (default: every prompt its own family)."""
    rule = rule or Rule()
    families = families or {n: n for t in [*selection, *heldout] for n in t.per_prompt}
    off = MtpSettings(enabled=False)
    plain_sel = next((t for t in selection if not t.mtp.enabled), None)
    base = dict(
        plain_tokens_per_s=plain_sel.tokens_per_s.median if plain_sel and plain_sel.tokens_per_s else None,
        trials=selection,
        workload=rule.workload,
    )
    best = best_trial(selection, rule)
    if best is None:
        return TuneDecision(
            chosen=off,
            label="plain",
            chosen_tokens_per_s=None,
            speedup=None,
            reason="no MTP configuration could be measured; MTP off",
            **base,
        )
    what = f"on {rule.workload} prompts" if rule.workload else "over the selection families"
    if best.speedup is not None and best.speedup < 1.0 + rule.min_gain:
        acc = f", acceptance {best.acceptance:.2f}" if best.acceptance is not None else ""
        return TuneDecision(
            chosen=off,
            label="plain",
            chosen_tokens_per_s=best.tokens_per_s.median if best.tokens_per_s else None,
            speedup=None,
            selection_speedup=best.speedup,
            acceptance=best.acceptance,
            families=best.families,
            **base,
            reason=(
                f"nothing beats plain decoding: best MTP ({best.label}{acc}) runs at {best.speedup:.2f}x "
                f"plain {what}, under the {1 + rule.min_gain:.2f}x needed; MTP off for this model"
            ),
        )
    if not passes(best, rule):
        why = holds(best.families, rule, list(best.families))[1]
        return TuneDecision(
            chosen=off,
            label="plain",
            chosen_tokens_per_s=None,
            speedup=None,
            selection_speedup=best.speedup,
            acceptance=best.acceptance,
            families=best.families,
            **base,
            reason=f"no setting holds up on the selection prompts: the best ({best.label}) {why}; "
            "MTP off for this model",
        )
    if plain_heldout is None or plain_heldout.tokens_per_s is None:
        return TuneDecision(
            chosen=off,
            label="plain",
            chosen_tokens_per_s=None,
            speedup=None,
            **base,
            reason="plain decoding could not be measured on the held-out prompts; MTP left off",
        )
    judged = [judge(t, plain_heldout, rule, families) for t in heldout]
    passed = [j for j in judged if j.passed]
    chosen = None
    if passed:
        chosen = max(passed, key=lambda j: j.score or 0.0)
        # a stacked type earns its place on held-out prompts, not only where it was chosen
        if chosen.mtp.extra_types and len(passed) > 1:
            single = next(j for j in passed if not j.mtp.extra_types)
            if (chosen.score or 0.0) <= (single.score or 0.0):
                chosen = single
    if chosen is None:
        why = "; ".join(f"{j.label}: {j.why}" for j in judged) or "no finalist"
        first = judged[0] if judged else None
        return TuneDecision(
            chosen=off,
            label="plain",
            chosen_tokens_per_s=None,
            heldout=judged,
            speedup=first.score if first else None,
            selection_speedup=best.speedup,
            acceptance=best.acceptance,
            families=first.families if first else {},
            family_acceptance=first.family_acceptance if first else {},
            family_break_even=first.family_break_even if first else {},
            **base,
            reason=f"no setting holds up on the held-out prompts ({why}); MTP off for this model"
            f"{drift_note(drift, rule.noise_band)}",
        )
    trial = next(t for t in heldout if t.mtp == chosen.mtp)
    sel = next((t for t in selection if t.mtp == chosen.mtp), None)
    stacked_note = ""
    if best.mtp.extra_types and not chosen.mtp.extra_types:
        stacked_note = f"; {best.label} won the selection but not the held-out prompts"
    return TuneDecision(
        chosen=chosen.mtp,
        label=chosen.label,
        heldout=judged,
        chosen_tokens_per_s=trial.tokens_per_s.median if trial.tokens_per_s else None,
        speedup=chosen.score,
        selection_speedup=sel.speedup if sel else None,
        acceptance=trial.acceptance,
        break_even_acceptance=chosen.break_even_acceptance,
        families=chosen.families,
        family_acceptance=chosen.family_acceptance,
        family_break_even=chosen.family_break_even,
        ladder=ladder(chosen.mtp, selection, judged),
        reason=f"{chosen.label}: {chosen.why}{stacked_note}{drift_note(drift, rule.noise_band)}",
        **base,
    )
