"""The tune prompt suite, its families of work, and the rule a setting must pass on every family (pure).

A draft setting pays on some work and costs on other work: ngram-mod drafts from text already in the
context, so it wins where the answer copies the prompt (tool calls, logs, code edits) and loses where it
does not (short questions, stories, chat turns). Prompts are therefore grouped in families, each family
has prompts in both halves of the suite, and a setting is kept only if it loses on no family beyond the
noise band, unless the user names the one family their work is (`llmtp tune --workload FAMILY`).
"""

from __future__ import annotations

import math
import statistics
from typing import Literal

from pydantic import BaseModel

Half = Literal["select", "heldout"]

# The shipped suite's families (llmtp/data/prompts.toml); a user's --prompts file names its own.
FAMILIES = ("copy-heavy", "open-ended", "long-context", "non-english")
MIN_PROMPTS = 4


class Prompt(BaseModel, extra="forbid"):
    name: str
    family: str  # the kind of work, e.g. "copy-heavy": what the decision rule groups by
    kind: str = ""  # finer label for people, e.g. "tool-call"
    half: Half | None = None  # None: alternate within the family (first select, then held-out, ...)
    text: str
    line: str | None = None  # repeated `repeat` times after `text`: {i} line number, {a} and {b} vary
    repeat: int = 0
    after: str = ""

    def render(self) -> str:
        lines = (
            "".join(self.line.format(i=i, a=(i * 37) % 900 + 40, b=i % 7) for i in range(self.repeat))
            if self.line
            else ""
        )
        return self.text + lines + self.after


class Suite(BaseModel, extra="forbid"):
    prompt: list[Prompt]

    def half(self, which: Half) -> list[Prompt]:
        return [p for p in self.prompt if p.half == which]

    def families(self) -> dict[str, str]:
        """prompt name -> family."""
        return {p.name: p.family for p in self.prompt}

    def family_names(self) -> list[str]:
        return list(dict.fromkeys(p.family for p in self.prompt))


class SuiteError(ValueError):
    pass


def parse_suite(data: dict) -> Suite:
    """Validate a parsed TOML suite: unique names, at least 4 prompts, every family in both halves.
    A prompt without `half` takes turns within its family: select, held-out, select, ..."""
    suite = Suite.model_validate(data)
    names = [p.name for p in suite.prompt]
    if len(names) != len(set(names)):
        raise SuiteError(f"prompt names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    if len(names) < MIN_PROMPTS:
        raise SuiteError(f"{len(names)} prompts; the suite needs at least {MIN_PROMPTS}")
    turn: dict[str, int] = {}
    placed = []
    for p in suite.prompt:
        if p.half is None:
            n = turn.get(p.family, 0)
            turn[p.family] = n + 1
            p = p.model_copy(update={"half": "select" if n % 2 == 0 else "heldout"})
        placed.append(p)
    suite = Suite(prompt=placed)
    for family in suite.family_names():
        for half in ("select", "heldout"):
            if not any(p.family == family and p.half == half for p in suite.prompt):
                raise SuiteError(
                    f"family {family!r} has no prompt in the {half} half: each family needs at "
                    "least one prompt in each half (two prompts, or leave `half` out)"
                )
    return suite


# -- the decision rule --------------------------------------------------------------------------------


class Rule(BaseModel):
    """What a setting must do on held-out work to be kept."""

    min_gain: float = 0.03  # the figure that counts must beat plain by this much
    noise_band: float = 0.05  # no family may be slower than plain by more than this
    workload: str | None = None  # the user's own family: only it counts


def geomean(values: list[float]) -> float | None:
    vals = [v for v in values if v and v > 0]
    return math.exp(statistics.fmean(math.log(v) for v in vals)) if vals else None


def family_figures(per_prompt: dict[str, float], families: dict[str, str]) -> dict[str, float]:
    """Per family: the geometric mean of its prompts' figures (speedups against plain), in family order."""
    grouped: dict[str, list[float]] = {}
    for name, value in per_prompt.items():
        if name in families:
            grouped.setdefault(families[name], []).append(value)
    return {f: g for f, vals in grouped.items() if (g := geomean(vals)) is not None}


def score(figures: dict[str, float], rule: Rule) -> float | None:
    """The one figure settings are ranked by: the user's family, else every family weighted alike."""
    if rule.workload is not None:
        return figures.get(rule.workload)
    return geomean(list(figures.values()))


def holds(figures: dict[str, float], rule: Rule, expected: list[str]) -> tuple[bool, str]:
    """The decision rule: (kept?, why), from per-family speedups against plain on held-out prompts.

    Default: every expected family measured, the families' geometric mean at least 1 + min_gain, and no
    family under 1 - noise_band. With `rule.workload`: that family alone at least 1 + min_gain (the
    others are reported, not judged)."""
    need = 1.0 + rule.min_gain
    if rule.workload is not None:
        mine = figures.get(rule.workload)
        if mine is None:
            return False, f"not measured on {rule.workload} prompts"
        others = ", ".join(f"{f} {v:.2f}x" for f, v in figures.items() if f != rule.workload)
        rest = f" (not judged: {others})" if others else ""
        if mine < need:
            return False, f"{rule.workload} (your workload) at {mine:.2f}x plain, under the {need:.2f}x needed"
        return True, f"{rule.workload} (your workload) at {mine:.2f}x plain{rest}"
    missing = [f for f in expected if f not in figures]
    if missing:
        return False, f"not measured on {', '.join(missing)} prompts"
    overall = score(figures, rule)
    assert overall is not None  # figures is not empty: expected families are all there
    worst = min(figures, key=figures.__getitem__)
    if figures[worst] < 1.0 - rule.noise_band:
        return False, (
            f"loses on {worst}: {figures[worst]:.2f}x plain, beyond the {rule.noise_band:.0%} noise "
            f"band (name your work with --workload to judge one family)"
        )
    if overall < need:
        return False, f"{overall:.2f}x plain over the families, under the {need:.2f}x needed"
    spread = ", ".join(f"{f} {v:.2f}x" for f, v in figures.items())
    return True, f"{overall:.2f}x plain over the families ({spread})"
