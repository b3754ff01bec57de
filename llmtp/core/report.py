"""Pictures of a verify or tune result, pure part: the bars to draw, and the self-contained HTML report.

The terminal chart (cli/_charts.py) and the HTML file draw the same BarGroups, so both tell the same story;
the HTML adds the per-prompt table and the configuration tried, for a bug report.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None  # None: not measured (the bar is left out, the label says so)
    text: str  # the value as people read it: "41.2 tok/s", "1.52x"
    kind: str = "plain"  # plain, mtp, chosen: the colour


@dataclass(frozen=True)
class BarGroup:
    title: str
    bars: list[Bar]
    note: str = ""  # under the group: speedup, acceptance
    baseline: float | None = None  # a reference line (1.00x for speedups)


@dataclass(frozen=True)
class Report:
    title: str
    verdict: str
    groups: list[BarGroup]
    table_head: list[str]
    table_rows: list[list[str]]
    configuration: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    table_title: str = "Per prompt"


def _f(x: float | None, fmt: str = ".1f", unit: str = "") -> str:
    return "-" if x is None else f"{x:{fmt}}{unit}"


def verify_report(report) -> Report:  # noqa: ANN001 - core.verify.VerifyReport
    """Per case: plain and MTP tok/s side by side; the note gives speedup and acceptance."""
    groups, rows = [], []
    for c in report.cases:
        plain = c.plain.median if c.plain else None
        mtp = c.mtp.median if c.mtp else None
        groups.append(
            BarGroup(
                c.case.key,
                [
                    Bar("plain", plain, _f(plain, unit=" tok/s"), "plain"),
                    Bar("MTP", mtp, _f(mtp, unit=" tok/s"), "mtp"),
                ],
                note=f"speedup {_f(c.speedup, '.2f', 'x')}, acceptance {_f(c.acceptance, '.2f')}, "
                f"break-even acceptance {_f(c.break_even_acceptance, '.2f')} ({c.family or '?'})",
            )
        )
        rows.append(
            [
                c.case.key,
                c.family or "-",
                _f(plain),
                _f(mtp),
                _f(c.speedup, ".2f", "x"),
                f"{_f(c.speedup_low, '.2f')}-{_f(c.speedup_high, '.2f')}x",
                _f(c.acceptance, ".2f"),
                _f(c.break_even_acceptance, ".2f"),
                _f(c.mean_accepted_length, ".2f"),
            ]
        )
    config = {
        "model": report.model,
        "build": report.build_id,
        "profile": report.profile,
        "gpu": report.gpu,
        "mtp": report.mtp,
        "method": report.method.model_dump(mode="json"),
        "markers": report.markers.model_dump(mode="json"),
    }
    summary = (
        f"speedup {_f(report.speedup, '.2f', 'x')} (geometric mean), acceptance {_f(report.acceptance, '.2f')}, "
        f"break-even acceptance {_f(report.break_even_acceptance, '.2f')}"
    )
    return Report(
        title=f"llmtp verify {report.model}",
        verdict=f"{report.verdict.title} (exit {int(report.verdict.code)}): {report.verdict.reason}",
        groups=groups,
        table_head=[
            "case",
            "family",
            "plain tok/s",
            "MTP tok/s",
            "speedup",
            "min-max",
            "acceptance",
            "break-even acceptance",
            "accepted length",
        ],
        table_rows=rows,
        configuration=config,
        notes=[summary, *report.warnings],
    )


def _acc_text(acc: float | None, be: float | None) -> str:
    if acc is None:
        return ""
    return f" (acceptance {acc:.2f} / break-even {_f(be, '.2f')})"


def tune_report(decision, model: str) -> Report:  # noqa: ANN001 - core.tune_decision.TuneDecision
    """The selection half as tok/s per configuration, the held-out half as speedup against plain."""
    groups = []
    if decision.trials:
        bars = [
            Bar(
                t.label,
                t.tokens_per_s.median if t.tokens_per_s else None,
                _f(t.tokens_per_s.median if t.tokens_per_s else None, unit=" tok/s")
                + (f" ({t.error})" if t.error else ""),
                "chosen" if t.mtp == decision.chosen else ("plain" if not t.mtp.enabled else "mtp"),
            )
            for t in decision.trials
        ]
        groups.append(BarGroup("selection prompts: tok/s (median)", bars))
    for j in decision.heldout:
        bars = [
            Bar(
                fam,
                v,
                _f(v, ".2f", "x") + _acc_text(j.family_acceptance.get(fam), j.family_break_even.get(fam)),
                "chosen" if j.passed and j.mtp == decision.chosen else "mtp",
            )
            for fam, v in j.families.items()
        ]
        verdict = "kept" if j.passed and j.mtp == decision.chosen else ("passed" if j.passed else "rejected")
        groups.append(
            BarGroup(f"held-out prompts, {j.label} ({verdict}): speedup against plain per family", bars, baseline=1.0)
        )
    fams = list(dict.fromkeys(f for j in decision.heldout for f in j.families))
    rows = [
        [
            j.label,
            *[
                _f(j.families.get(f), ".2f", "x") + _acc_text(j.family_acceptance.get(f), j.family_break_even.get(f))
                for f in fams
            ],
            _f(j.score, ".2f", "x"),
            "kept" if j.passed and j.mtp == decision.chosen else ("passed" if j.passed else "rejected: " + j.why),
        ]
        for j in decision.heldout
    ]
    names = fams
    config = {
        "model": model,
        "chosen": decision.chosen.model_dump(mode="json"),
        "tried": [t.mtp.model_dump(mode="json") | {"label": t.label} for t in decision.trials],
    }
    judged = f"--workload {decision.workload}" if decision.workload else "every family judged"
    summary = (
        f"held-out speedup {_f(decision.speedup, '.2f', 'x')} ({judged}), acceptance "
        f"{_f(decision.acceptance, '.2f')}, break-even acceptance {_f(decision.break_even_acceptance, '.2f')}; "
        "per family: speedup (acceptance / break-even acceptance)"
    )
    return Report(
        title=f"llmtp tune {model}",
        verdict=f"{decision.label}: {decision.reason}",
        groups=groups,
        table_head=["configuration", *names, "score", "held-out result"],
        table_rows=rows,
        configuration=config,
        notes=[summary],
        table_title="Per family (held-out prompts)",
    )


_COLOURS = {"plain": "#8a8f98", "mtp": "#3b82f6", "chosen": "#16a34a"}


def render_html(rep: Report) -> str:
    """One HTML file, no script, no external resource: bars are CSS widths, so it opens anywhere."""

    def e(text: str) -> str:  # text nodes only: every attribute value below is a number or a fixed colour
        return html.escape(text, quote=False)

    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(rep.title)}</title>",
        "<style>body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:60em}"
        ".row{display:flex;align-items:center;gap:.6em;margin:.15em 0}.lbl{width:16em;text-align:right}"
        ".track{flex:1;background:#f1f2f4;height:1.1em;position:relative}.bar{height:100%}"
        ".ref{position:absolute;top:-2px;bottom:-2px;border-left:2px dashed #d33}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}"
        "td:first-child,th:first-child{text-align:left}pre{background:#f6f8fa;padding:1em;overflow:auto}</style>",
        "</head><body>",
        f"<h1>{e(rep.title)}</h1>",
        f"<p><strong>{e(rep.verdict)}</strong></p>",
    ]
    out += [f"<p>{e(n)}</p>" for n in rep.notes]
    for g in rep.groups:
        top = max([b.value for b in g.bars if b.value is not None] + [g.baseline or 0.0]) or 1.0
        out.append(f"<h2>{e(g.title)}</h2>")
        for b in g.bars:
            width = 0.0 if b.value is None else max(0.0, b.value) / top * 100
            ref = "" if g.baseline is None else f'<div class="ref" style="left:{g.baseline / top * 100:.1f}%"></div>'
            out.append(
                f'<div class="row"><span class="lbl">{e(b.label)}</span><div class="track">'
                f'<div class="bar" style="width:{width:.1f}%;background:{_COLOURS.get(b.kind, "#3b82f6")}">'
                f"</div>{ref}</div><span>{e(b.text)}</span></div>"
            )
        if g.note:
            out.append(f"<p>{e(g.note)}</p>")
    if rep.table_rows:
        out.append(
            f"<h2>{e(rep.table_title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in rep.table_head) + "</tr>"
        )
        out += ["<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in rep.table_rows]
        out.append("</table>")
    out.append("<h2>Configuration</h2><pre>" + e(json.dumps(rep.configuration, indent=2, default=str)) + "</pre>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
