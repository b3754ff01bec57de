"""MTP tuning, pure part: the prompt suite, which configurations to try, and which one to keep.

The sweep runs in stages so it stays short: n-max 1-6 at p-min 0, then p-min 0.5 and 0.75 on the best
n-max, then ngram-mod stacked on the best (where the binary offers it). Plain decoding is the reference.
Stages rank configurations on the suite's `select` half only; the winner is then judged on the `heldout`
half, work it was not chosen on, family by family (core/families.py: the rule), and that held-out figure
is what tune keeps, stores and prints: a setting that wins only where the output copies the prompt does
not survive it, unless the user said their work is copying (`--workload copy-heavy`).
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from llmtp.core.families import (  # noqa: F401
    FAMILIES,
    Half,
    Prompt,
    Rule,
    Suite,
    SuiteError,
    family_figures,
    geomean,
    holds,
    parse_suite,
    score,
)
from llmtp.core.launch import MtpSettings
from llmtp.core.verify import Stats, break_even_acceptance, summarize  # noqa: F401 - re-exported

N_MAX_RANGE = [1, 2, 3, 4, 5, 6]
P_MIN_VALUES = [0.5, 0.75]
# MTP costs memory and prompt speed: keep it only when it is clearly faster than plain decoding.
DEFAULT_MIN_GAIN = 0.03
# A kept setting may lose on no family of held-out prompts by more than run-to-run noise.
DEFAULT_NOISE_BAND = 0.05


# -- configurations ---------------------------------------------------------------------------------


def stage_n_max(base: MtpSettings) -> list[MtpSettings]:
    return [base.model_copy(update={"enabled": True, "n_max": n, "p_min": 0.0, "extra_types": []}) for n in N_MAX_RANGE]


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
    """One configuration on one half of the suite."""

    mtp: MtpSettings
    label: str
    tokens_per_s: Stats | None  # over every run of every prompt
    per_prompt: dict[str, Stats] = Field(default_factory=dict)  # prompt name -> tok/s
    acceptance: float | None = None
    drafts: dict[str, tuple[int, int]] = Field(default_factory=dict)  # prompt -> (accepted, drafted)
    draft_tokens_per_step: float | None = None  # drafted tokens / drafts, from /metrics
    speedup: float | None = None  # against plain on the same half: the rule's score over the families
    families: dict[str, float] = Field(default_factory=dict)  # family -> speedup against plain
    error: str | None = None  # launch or run failure: the trial is skipped, not fatal


def ratios(trial: Trial, plain: Trial) -> dict[str, float]:
    """Per prompt: median tok/s of the trial / median of plain, for prompts both measured."""
    return {
        name: st.median / plain.per_prompt[name].median
        for name, st in trial.per_prompt.items()
        if name in plain.per_prompt and plain.per_prompt[name].median > 0
    }


def speedup_against(trial: Trial, plain: Trial) -> float | None:
    """Geometric mean over every prompt both measured (the progress line; the rule uses `compare`)."""
    return geomean([v for v in ratios(trial, plain).values() if v > 0])


def compare(trial: Trial, plain: Trial, families: dict[str, str], rule: Rule) -> Trial:
    """Set the trial's per-family speedups against plain and its score under `rule`."""
    trial.families = family_figures(ratios(trial, plain), families)
    trial.speedup = score(trial.families, rule)
    return trial


def family_acceptance(trial: Trial, families: dict[str, str]) -> dict[str, float]:
    """accepted / drafted per family, over its prompts' requests."""
    acc: dict[str, list[int]] = {}
    for name, (a, d) in trial.drafts.items():
        if name in families:
            tot = acc.setdefault(families[name], [0, 0])
            tot[0] += a
            tot[1] += d
    return {f: a / d for f, (a, d) in acc.items() if d}


def _passes(trial: Trial, rule: Rule) -> bool:
    return holds(trial.families, rule, list(trial.families))[0] if trial.families else True


def worth_holding_out(best: Trial | None, rule: Rule) -> bool:
    """Whether the selection's best goes on to the held-out half: it beats plain and loses no family."""
    return best is not None and best.speedup is not None and best.speedup >= 1.0 + rule.min_gain and _passes(best, rule)


def best_trial(trials: list[Trial], rule: Rule | None = None) -> Trial | None:
    """The best MTP trial against plain that drafted (one that never drafted, p-min too high, is plain
    decoding): one that passes the rule on its own half first, then the highest score."""
    rule = rule or Rule()
    ok = [t for t in trials if t.speedup is not None and t.mtp.enabled and t.acceptance is not None]
    return max(ok, key=lambda t: (_passes(t, rule), t.speedup)) if ok else None


def finalists(trials: list[Trial], rule: Rule | None = None) -> list[Trial]:
    """What goes to the held-out half: the selection's best, and when that one stacks ngram-mod, the
    best without it too, so a stacked type is kept only if it wins on held-out prompts as well."""
    best = best_trial(trials, rule)
    if best is None:
        return []
    out = [best]
    if best.mtp.extra_types:
        single = best_trial([t for t in trials if not t.mtp.extra_types], rule)
        if single is not None:
            out.append(single)
    return out


def bracket(before: Trial, after: Trial) -> tuple[Trial, float | None]:
    """Plain on the held-out half is measured before and after the finalists; per prompt the reference
    is the mean of the two medians, so a machine whose speed drifts in a straight line through the
    held-out runs moves the reference with the finalists. Also returns the drift: the geometric mean
    over prompts of after / before (1.0: steady), None where either run measured nothing."""
    if after.tokens_per_s is None:
        return before, None
    if before.tokens_per_s is None:
        return after, None
    merged = before.model_copy(
        update={
            "per_prompt": {
                name: summarize([st.median, after.per_prompt[name].median])
                for name, st in before.per_prompt.items()
                if name in after.per_prompt
            },
            "tokens_per_s": summarize([before.tokens_per_s.median, after.tokens_per_s.median]),
        }
    )
    return merged, speedup_against(after, before)


def family_break_even(trial: Trial, families: dict[str, str]) -> dict[str, float]:
    """Per family: the break-even acceptance from that family's speedup and acceptance."""
    acc = family_acceptance(trial, families)
    per_step = trial.draft_tokens_per_step or float(trial.mtp.n_max)
    return {
        f: be for f, v in trial.families.items() if (be := break_even_acceptance(v, acc.get(f), per_step)) is not None
    }


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
    if not _passes(best, rule):
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
