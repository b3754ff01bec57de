"""`llmtp tune`: measure MTP draft settings and store the fastest for `serve`."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.cli import _serve_options as o
from llmtp.core import limits


def render(decision, target, con) -> None:
    from rich.table import Table

    from llmtp.cli._out import esc

    con.print(f"[bold]llmtp tune[/] {esc(target.model_path)}")
    t = Table(show_edge=False, pad_edge=False, title="selection prompts")
    for col in ("configuration", "tok/s (median)", "min-max", "vs plain", "accept", ""):
        t.add_column(col, justify="left" if col in ("configuration", "") else "right")
    for tr in decision.trials:
        st = tr.tokens_per_s
        chosen = "<- chosen" if tr.mtp == decision.chosen else ""
        t.add_row(
            tr.label,
            f"{st.median:.1f}" if st else "-",
            f"{st.min:.1f}-{st.max:.1f}" if st else "-",
            f"{tr.speedup:.2f}x" if tr.speedup is not None else "-",
            f"{tr.acceptance:.2f}" if tr.acceptance is not None else "-",
            tr.error or chosen,
        )
    if decision.trials:
        con.print(t)
    if decision.heldout:
        judged = "every family judged" if decision.workload is None else f"--workload {decision.workload}"
        h = Table(
            show_edge=False, pad_edge=False, title=f"held-out prompts by family (speedup against plain; {judged})"
        )
        fams = list(dict.fromkeys(f for j in decision.heldout for f in j.families))
        for col in ("configuration", *fams, "score", "prompts min-max", ""):
            h.add_column(col, justify="left" if col in ("configuration", "") else "right")
        for j in decision.heldout:
            sp = j.spread
            h.add_row(
                j.label,
                *[f"{j.families[f]:.2f}x" if f in j.families else "-" for f in fams],
                f"{j.score:.2f}x" if j.score is not None else "-",
                f"{sp.min:.2f}-{sp.max:.2f}x" if sp else "-",
                "kept" if j.passed and j.mtp == decision.chosen else ("passed" if j.passed else "rejected"),
            )
        con.print(h)
        a = Table(show_edge=False, pad_edge=False, title="acceptance against break-even, per family (held-out)")
        for col in ("configuration", *fams):
            a.add_column(col, justify="left" if col == "configuration" else "right")
        for j in decision.heldout:
            a.add_row(j.label, *[_acc_cell(j.family_acceptance.get(f), j.family_break_even.get(f)) for f in fams])
        con.print(a)
    color = "green" if decision.chosen.enabled else "yellow"
    con.print(f"[bold {color}]{esc(decision.label)}[/]: {esc(decision.reason)}")
    if decision.chosen.enabled and decision.speedup is not None:
        con.print(
            f"held-out speedup {decision.speedup:.2f}x plain"
            + (f" on {decision.workload}" if decision.workload else "")
            + (
                f", break-even acceptance {decision.break_even_acceptance:.2f}"
                if decision.break_even_acceptance is not None
                else ""
            )
        )
    con.print("stored for `llmtp serve` in this model's settings")


def _acc_cell(acc: float | None, be: float | None) -> str:
    """`0.23 / 0.41 LOSES`: measured acceptance, then the break-even below which the setting loses."""
    if acc is None:
        return "-"
    if be is None:
        return f"{acc:.2f} / ?"
    return f"{acc:.2f} / {be:.2f}" + (" loses" if acc < be else "")


def tune_cmd(
    model: Optional[str] = typer.Argument(None, help="GGUF path or alias (default: the default model)."),
    json_out: bool = typer.Option(False, "--json", help="Print the decision and every trial as JSON."),
    runs: int = typer.Option(
        2, "--runs", **limits.option(limits.Runs), help="Measured runs per prompt and configuration."
    ),
    warmups: int = typer.Option(
        1, "--warmups", **limits.option(limits.Warmups), help="Warm-up runs per configuration."
    ),
    n_predict: int = typer.Option(128, "--n-predict", **limits.option(limits.NPredict), help="Tokens per run."),
    min_gain: float = typer.Option(
        0.03,
        "--min-gain",
        **limits.option(limits.Gain),
        help="Keep MTP only when its held-out median is this much faster (0.03 = 3%).",
    ),
    noise_band: float = typer.Option(
        0.05,
        "--noise-band",
        **limits.option(limits.Fraction),
        help="No family of held-out prompts may be slower than plain by more (0.05 = 5%).",
    ),
    workload: Optional[str] = typer.Option(
        None,
        "--workload",
        metavar="FAMILY",
        help="Judge only this family of prompts (copy-heavy, open-ended, "
        "long-context, non-english; or one of --prompts FILE): your work.",
    ),
    prompts: Optional[str] = typer.Option(
        None,
        "--prompts",
        metavar="FILE",
        help="Your own prompt suite (TOML, the shipped format: [[prompt]] with "
        "name, family, text); its families replace the shipped ones.",
    ),
    ctx: o.Ctx = None,
    cache_type: o.CacheType = None,
    gpu_layers: o.GpuLayers = None,
    threads: o.Threads = None,
    rpc: o.Rpc = None,
    html: Optional[str] = typer.Option(
        None,
        "--html",
        metavar="FILE",
        help="Also write a self-contained HTML report (charts, per-prompt speedups, "
        "acceptance, configurations tried) for a bug report.",
    ),
) -> None:
    """Sweep --spec-draft-n-max 1-6, --spec-draft-p-min 0/0.5/0.75 and ngram-mod on half of the prompt
    suite; keep the winner only if it loses on no family of the held-out half (or wins on --workload's),
    else MTP off."""
    from pathlib import Path

    from llmtp.cli._charts import html_target, print_chart, write_html
    from llmtp.cli._out import console, emit_json
    from llmtp.core.families import Rule
    from llmtp.core.report import tune_report
    from llmtp.services.verify.tune import run_tune, tune_method
    from llmtp.settings import load_settings

    out_html = html_target(html)
    settings = load_settings().settings
    method = tune_method(n_predict=n_predict, warmups=warmups, runs=runs)
    from llmtp.services.verify.ab_plan import model_ref_or_default

    # the launch serve would run, with the same overrides: each trial is that plan with other draft settings
    request = o.launch_request(
        model_ref_or_default(settings, model),
        None,
        ctx=ctx,
        cache_type=cache_type,
        gpu_layers=gpu_layers,
        threads=threads,
        rpc=rpc,
    )
    kw = dict(
        rule=Rule(min_gain=min_gain, noise_band=noise_band, workload=workload),
        prompts=Path(prompts) if prompts else None,
    )
    if json_out:
        decision, target = run_tune(settings, request, method, **kw)
        emit_json({"model": target.model_path, "model_key": target.model_key, **decision.model_dump(mode="json")})
        if out_html is not None:
            write_html(out_html, tune_report(decision, target.model_path))
        return
    from rich.progress import Progress

    with Progress(console=console(stderr=True), transient=True) as progress:
        task = progress.add_task("tuning", total=None)

        def on_trial(trial, done, total):
            progress.update(task, completed=done, total=total, description=f"measured {trial.label}")

        decision, target = run_tune(settings, request, method, on_trial=on_trial, **kw)
    con = console()
    render(decision, target, con)
    print_chart(con, tune_report(decision, target.model_path).groups)
    if out_html is not None:
        write_html(out_html, tune_report(decision, target.model_path))
        typer.echo(f"report written to {out_html}", err=True)


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_cmd)
