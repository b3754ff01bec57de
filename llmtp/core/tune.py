"""MTP tuning, pure part: the prompt suite, which configurations to try, and how each compares with plain.

The sweep runs in stages so it stays short: n-max 1-6 at p-min 0, then p-min 0.5 and 0.75 on the best
n-max, then ngram-mod stacked on the best (where the binary offers it). Plain decoding is the reference.
Stages rank configurations on the suite's `select` half only; the winner is then judged on the `heldout`
half, work it was not chosen on, family by family (core/families.py: the rule), and that held-out figure
is what tune keeps, stores and prints (core/tune_decision.py): a setting that wins only where the output
copies the prompt does not survive it, unless the user said their work is copying (`--workload copy-heavy`).
"""

from __future__ import annotations

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


def passes(trial: Trial, rule: Rule) -> bool:
    """Whether the rule holds on the trial's own families (yes while it has none)."""
    return holds(trial.families, rule, list(trial.families))[0] if trial.families else True


def worth_holding_out(best: Trial | None, rule: Rule) -> bool:
    """Whether the selection's best goes on to the held-out half: it beats plain and loses no family."""
    return best is not None and best.speedup is not None and best.speedup >= 1.0 + rule.min_gain and passes(best, rule)


def best_trial(trials: list[Trial], rule: Rule | None = None) -> Trial | None:
    """The best MTP trial against plain that drafted (one that never drafted, p-min too high, is plain
    decoding): one that passes the rule on its own half first, then the highest score."""
    rule = rule or Rule()
    ok = [t for t in trials if t.speedup is not None and t.mtp.enabled and t.acceptance is not None]
    return max(ok, key=lambda t: (passes(t, rule), t.speedup)) if ok else None


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


def remembers_output(mtp: MtpSettings) -> bool:
    """Whether the drafters keep what the server generated across requests: ngram-mod's hash table (b11434
    common/speculative.cpp) lives as long as the server and learns every generated token, so a prompt run a
    second time drafts its own earlier answer and is accepted almost whole. Measured on the bench random-heads
    model: the first pair of each open-ended prompt 0.74-0.83x bare, the repeats of the same prompt 3.0-3.4x."""
    return mtp.enabled and any(t.startswith("ngram") for t in mtp.extra_types)
