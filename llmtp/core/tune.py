"""MTP tuning, pure part: the prompt suite, which configurations to try, and which one to keep.

The sweep runs in stages so it stays short: n-max 1-6 at p-min 0, then p-min 0.5 and 0.75 on the best
n-max, then ngram-mod stacked on the best (where the binary offers it). Plain decoding is the reference.
Stages rank configurations on the suite's `select` half only; the winner is then judged on the `heldout`
half, work it was not chosen on, and that held-out figure is what tune keeps, stores and prints: a
setting that wins only where the output copies the prompt does not survive it.
"""

from __future__ import annotations

import math
import statistics
from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core.launch import MtpSettings
from llmtp.core.verify import Stats, summarize

N_MAX_RANGE = [1, 2, 3, 4, 5, 6]
P_MIN_VALUES = [0.5, 0.75]
# MTP costs memory and prompt speed: keep it only when it is clearly faster than plain decoding.
DEFAULT_MIN_GAIN = 0.03
# A kept setting may lose on no held-out prompt by more than run-to-run noise.
DEFAULT_NOISE_BAND = 0.05
MIN_PROMPTS = 8

Half = Literal["select", "heldout"]


# -- the prompt suite (llmtp/data/prompts.toml) ------------------------------------------------------

class Prompt(BaseModel, extra="forbid"):
    name: str
    kind: str
    half: Half
    text: str
    line: str | None = None  # repeated `repeat` times after `text`: {i} line number, {a} and {b} vary
    repeat: int = 0
    after: str = ""

    def render(self) -> str:
        lines = "".join(self.line.format(i=i, a=(i * 37) % 900 + 40, b=i % 7) for i in range(self.repeat)) \
            if self.line else ""
        return self.text + lines + self.after


class Suite(BaseModel, extra="forbid"):
    prompt: list[Prompt]

    def half(self, which: Half) -> list[Prompt]:
        return [p for p in self.prompt if p.half == which]


class SuiteError(ValueError):
    pass


def parse_suite(data: dict) -> Suite:
    """Validate the parsed TOML: at least 8 prompts, unique names, both halves present."""
    suite = Suite.model_validate(data)
    names = [p.name for p in suite.prompt]
    if len(names) != len(set(names)):
        raise SuiteError(f"prompt names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    if len(names) < MIN_PROMPTS:
        raise SuiteError(f"{len(names)} prompts; the suite needs at least {MIN_PROMPTS}")
    for half in ("select", "heldout"):
        if not suite.half(half):  # type: ignore[arg-type]
            raise SuiteError(f"no prompt in the {half} half")
    return suite


# -- configurations ---------------------------------------------------------------------------------

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
    """One configuration on one half of the suite."""

    mtp: MtpSettings
    label: str
    tokens_per_s: Stats | None  # over every run of every prompt
    per_prompt: dict[str, Stats] = Field(default_factory=dict)  # prompt name -> tok/s
    acceptance: float | None = None
    draft_tokens_per_step: float | None = None  # drafted tokens / drafts, from /metrics
    speedup: float | None = None  # against plain on the same half: geometric mean of per-prompt ratios
    error: str | None = None  # launch or run failure: the trial is skipped, not fatal


def ratios(trial: Trial, plain: Trial) -> dict[str, float]:
    """Per prompt: median tok/s of the trial / median of plain, for prompts both measured."""
    return {name: st.median / plain.per_prompt[name].median for name, st in trial.per_prompt.items()
            if name in plain.per_prompt and plain.per_prompt[name].median > 0}


def speedup_against(trial: Trial, plain: Trial) -> float | None:
    r = [v for v in ratios(trial, plain).values() if v > 0]
    return math.exp(statistics.fmean(math.log(v) for v in r)) if r else None


def best_trial(trials: list[Trial]) -> Trial | None:
    """The fastest MTP trial against plain that drafted: one that never drafted (p-min too high) is
    plain decoding."""
    ok = [t for t in trials if t.speedup is not None and t.mtp.enabled and t.acceptance is not None]
    return max(ok, key=lambda t: t.speedup) if ok else None  # type: ignore[arg-type, return-value]


def finalists(trials: list[Trial]) -> list[Trial]:
    """What goes to the held-out half: the selection's best, and when that one stacks ngram-mod, the
    best without it too, so a stacked type is kept only if it wins on held-out prompts as well."""
    best = best_trial(trials)
    if best is None:
        return []
    out = [best]
    if best.mtp.extra_types:
        single = best_trial([t for t in trials if not t.mtp.extra_types])
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
    merged = before.model_copy(update={
        "per_prompt": {name: summarize([st.median, after.per_prompt[name].median])
                       for name, st in before.per_prompt.items() if name in after.per_prompt},
        "tokens_per_s": summarize([before.tokens_per_s.median, after.tokens_per_s.median])})
    return merged, speedup_against(after, before)


class HeldOut(BaseModel):
    """A finalist on the held-out half: per-prompt speedups against plain and their spread."""

    label: str
    mtp: MtpSettings
    speedups: dict[str, float]
    spread: Stats | None  # of the per-prompt speedups; the median is the figure tune keeps
    acceptance: float | None = None
    passed: bool
    why: str


def judge(candidate: Trial, plain: Trial, min_gain: float, noise_band: float) -> HeldOut:
    """Kept only when the held-out median beats plain by `min_gain` and no held-out prompt is slower
    than plain by more than `noise_band`."""
    r = ratios(candidate, plain)
    spread = summarize(list(r.values()))
    args = dict(label=candidate.label, mtp=candidate.mtp, speedups=r, spread=spread,
                acceptance=candidate.acceptance)
    if candidate.error or spread is None:
        return HeldOut(**args, passed=False, why=f"not measured on the held-out prompts ({candidate.error})")
    worst = min(r, key=r.__getitem__)
    if spread.median < 1.0 + min_gain:
        return HeldOut(**args, passed=False, why=f"held-out median {spread.median:.2f}x plain, under the "
                                                 f"{1 + min_gain:.2f}x needed")
    if r[worst] < 1.0 - noise_band:
        return HeldOut(**args, passed=False, why=f"{worst} runs at {r[worst]:.2f}x plain, slower than the "
                                                 f"{noise_band:.0%} noise band allows")
    return HeldOut(**args, passed=True, why=f"held-out median {spread.median:.2f}x plain "
                                            f"({spread.min:.2f}-{spread.max:.2f}x over {spread.n} prompts)")


def break_even_acceptance(speedup: float | None, acceptance: float | None,
                          draft_per_step: float | None) -> float | None:
    """The acceptance below which this setting decodes slower than plain, from one measurement.

    A verification step costs c plain-token times and yields 1 + a*d tokens (a: acceptance, d: drafted
    tokens per step), so speedup = (1 + a*d) / c. From the measured (speedup, a, d): c = (1 + a*d) / speedup,
    and plain speed is matched at a* = (c - 1) / d. Above 1 means no acceptance can pay for the drafts.
    """
    if not speedup or acceptance is None or not draft_per_step:
        return None
    cost = (1.0 + acceptance * draft_per_step) / speedup
    return max(0.0, (cost - 1.0) / draft_per_step)


class TuneDecision(BaseModel):
    chosen: MtpSettings
    label: str
    plain_tokens_per_s: float | None
    chosen_tokens_per_s: float | None
    speedup: float | None  # held-out median against plain: what is stored and printed
    reason: str
    trials: list[Trial] = Field(default_factory=list)  # the selection half
    heldout: list[HeldOut] = Field(default_factory=list)
    selection_speedup: float | None = None  # the chosen (or best) setting on the selection half
    acceptance: float | None = None
    break_even_acceptance: float | None = None


def drift_note(drift: float | None, noise_band: float) -> str:
    """A warning when plain decoding itself moved by more than the noise band during the held-out runs."""
    if drift is None or abs(math.log(drift)) <= math.log(1.0 + noise_band):
        return ""
    return (f"; plain decoding moved {drift - 1:+.0%} between the start and end of the held-out runs (a busy "
            f"machine?): run `llmtp tune` again when it is idle")


def decide(plain_heldout: Trial | None, selection: list[Trial], heldout: list[Trial],
           min_gain: float = DEFAULT_MIN_GAIN, noise_band: float = DEFAULT_NOISE_BAND,
           drift: float | None = None) -> TuneDecision:
    """`selection`: every trial on the select half (plain included); `heldout`: the finalists (in
    `finalists` order) on the held-out half, judged against `plain_heldout` (see `bracket`; `drift`
    is its after / before, a warning when plain moved beyond the noise band)."""
    off = MtpSettings(enabled=False)
    plain_sel = next((t for t in selection if not t.mtp.enabled), None)
    base = dict(plain_tokens_per_s=plain_sel.tokens_per_s.median if plain_sel and plain_sel.tokens_per_s else None,
                trials=selection)
    best = best_trial(selection)
    if best is None:
        return TuneDecision(chosen=off, label="plain", chosen_tokens_per_s=None, speedup=None,
                            reason="no MTP configuration could be measured; MTP off", **base)
    if best.speedup is not None and best.speedup < 1.0 + min_gain:
        acc = f", acceptance {best.acceptance:.2f}" if best.acceptance is not None else ""
        return TuneDecision(
            chosen=off, label="plain", chosen_tokens_per_s=best.tokens_per_s.median if best.tokens_per_s else None,
            speedup=None, selection_speedup=best.speedup, acceptance=best.acceptance, **base,
            reason=(f"nothing beats plain decoding: best MTP ({best.label}{acc}) runs at {best.speedup:.2f}x "
                    f"plain on the selection prompts, under the {1 + min_gain:.2f}x needed; MTP off for this model"))
    if plain_heldout is None or plain_heldout.tokens_per_s is None:
        return TuneDecision(chosen=off, label="plain", chosen_tokens_per_s=None, speedup=None, **base,
                            reason="plain decoding could not be measured on the held-out prompts; MTP left off")
    judged = [judge(t, plain_heldout, min_gain, noise_band) for t in heldout]
    passed = [j for j in judged if j.passed]
    chosen = None
    if passed:
        chosen = max(passed, key=lambda j: j.spread.median)  # type: ignore[union-attr]
        # a stacked type earns its place on held-out prompts, not only where it was chosen
        if chosen.mtp.extra_types and len(passed) > 1:
            single = next(j for j in passed if not j.mtp.extra_types)
            if chosen.spread.median <= single.spread.median:  # type: ignore[union-attr]
                chosen = single
    if chosen is None:
        why = "; ".join(f"{j.label}: {j.why}" for j in judged) or "no finalist"
        first = judged[0] if judged else None
        return TuneDecision(
            chosen=off, label="plain", chosen_tokens_per_s=None, heldout=judged,
            speedup=first.spread.median if first and first.spread else None, selection_speedup=best.speedup,
            acceptance=best.acceptance, **base,
            reason=f"no setting holds up on the held-out prompts ({why}); MTP off for this model"
                   f"{drift_note(drift, noise_band)}")
    trial = next(t for t in heldout if t.mtp == chosen.mtp)
    sel = next((t for t in selection if t.mtp == chosen.mtp), None)
    median = chosen.spread.median  # type: ignore[union-attr]
    stacked_note = ""
    if best.mtp.extra_types and not chosen.mtp.extra_types:
        stacked_note = f"; {best.label} won the selection but not the held-out prompts"
    return TuneDecision(
        chosen=chosen.mtp, label=chosen.label, heldout=judged,
        chosen_tokens_per_s=trial.tokens_per_s.median if trial.tokens_per_s else None, speedup=median,
        selection_speedup=sel.speedup if sel else None, acceptance=trial.acceptance,
        break_even_acceptance=break_even_acceptance(median, trial.acceptance,
                                                    trial.draft_tokens_per_step or float(chosen.mtp.n_max)),
        reason=f"{chosen.label}: {chosen.why}{stacked_note}{drift_note(drift, noise_band)}", **base)
