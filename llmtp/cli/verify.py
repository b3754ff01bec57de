"""`llmtp verify`: prove MTP is on and faster; the exit code is the verdict."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.cli import _serve_options as o
from llmtp.core import limits

EXIT_CODES_HELP = (
    "Exit codes: 0 pass; 10 MTP not available in the build; 11 model has no MTP heads; "
    "12 MTP inactive at runtime; 13 MTP slower than plain; 14 regression against the stored baseline; "
    "15 model weights not on the GPU "
    "(errors: 1-7, see docs/verify.md)."
)


def method_from(
    quick: bool,
    thorough: bool,
    runs: int | None,
    warmups: int | None,
    n_predict: int | None,
    temperatures: list[float] | None,
    budget: float | None = None,
):
    from llmtp.core.verify import Method
    from llmtp.errors import UsageError

    if quick and thorough:
        raise UsageError("--quick and --thorough exclude each other", "Pick one.")
    if budget is not None and (quick or thorough):
        which = "--quick" if quick else "--thorough"
        raise UsageError(
            f"--budget applies to the default sequential check, not to {which}",
            "Drop --budget, or drop --quick/--thorough to stop on the budget.",
        )
    method = Method.preset("quick" if quick else "thorough" if thorough else "default")
    updates = {
        k: v
        for k, v in {
            "runs": runs,
            "warmups": warmups,
            "n_predict": n_predict,
            "temperatures": temperatures or None,
            "budget_s": budget,
        }.items()
        if v is not None
    }
    return method.model_copy(update=updates)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:+.0f}%"


def _f(x: float | None, fmt: str = ".1f") -> str:
    return "-" if x is None else format(x, fmt)


def render(report, con) -> None:
    """The human report; --json prints the same `report` as data."""
    import shlex

    from rich.table import Table

    from llmtp.cli._out import esc

    mark = {True: "[green]ok  [/]", False: "[red]FAIL[/]", None: "[dim]-   [/]"}
    con.print(f"[bold]llmtp verify[/] {esc(report.model)}")
    seq = report.sequential
    how = (
        f"alternating plain and MTP runs, {seq.pairs} pair(s) in {seq.generation_s:.0f} s of generation "
        f"(budget {seq.budget_s:g} s)"
        if seq
        else f"{report.method.warmups} warm-up(s), median of {report.method.runs}"
    )
    tokens: object = seq.n_predict if seq and seq.n_predict else report.method.n_predict
    if seq and seq.n_predict_last and seq.n_predict_last != seq.n_predict:
        tokens = f"{seq.n_predict}-{seq.n_predict_last}"
    con.print(
        f"build {report.build_id or '?'} ({report.profile or '?'}), GPU {report.gpu or 'none'}; "
        f"{tokens} tokens, {how}, seed {report.method.seed}"
    )
    for name in ("build", "gpu", "model", "runtime"):
        m = getattr(report.markers, name)
        con.print(f"  {name:<8} {mark[m.ok]} {esc(m.detail)}")
    if report.cases:
        t = Table(show_edge=False, pad_edge=False)
        for col in (
            "case",
            "family",
            "plain tok/s",
            "MTP tok/s",
            "speedup (min-max)",
            "accept / break-even",
            "PP change",
        ):
            t.add_column(col, justify="left" if col in ("case", "family") else "right")
        for c in report.cases:
            t.add_row(
                c.case.key,
                c.family or "-",
                _f(c.plain.median if c.plain else None),
                _f(c.mtp.median if c.mtp else None),
                f"{_f(c.speedup, '.2f')}x ({_f(c.speedup_low, '.2f')}-{_f(c.speedup_high, '.2f')})",
                f"{_f(c.acceptance, '.2f')} / {_f(c.break_even_acceptance, '.2f')}",
                _pct(-c.prompt_cost if c.prompt_cost is not None else None),
            )
        con.print(t)
        if seq and seq.interval and seq.interval.low is not None:
            stop = {
                "above": "clear of 1.00x: stopped early",
                "below": "below 1.00x: stopped early",
                "budget": "budget spent",
            }[seq.stopped]
            high = f"{seq.interval.high:.2f}x" if seq.interval.high < 100 else "over 100x"
            con.print(
                f"paired speedup {seq.interval.speedup:.2f}x, 99% interval {seq.interval.low:.2f}x to {high} ({stop})"
            )
        con.print(
            f"speedup {_f(report.speedup, '.2f')}x (geometric mean), acceptance "
            f"{_f(report.acceptance, '.2f')} (break-even {_f(report.break_even_acceptance, '.2f')}), "
            f"mean accepted length {_f(report.mean_accepted_length, '.2f')}"
        )
        if report.roofline_plain_pct is not None:
            con.print(
                f"bandwidth roofline: plain {report.roofline_plain_pct:.0f}%, "
                f"MTP effective {report.roofline_mtp_pct:.0f}%"
            )
    if report.baseline:
        b = report.baseline
        change = "-" if b["change"] is None else f"{b['change'] * 100:+.1f}%"
        con.print(
            f"baseline (build {b['build_id'] or '?'}): MTP tok/s {change}, tolerance "
            f"{b['tolerance'] * 100:.0f}%" + (f" ({b['note']})" if b.get("note") else "")
        )
    for name, argv in report.arms.items():  # what each arm ran (the live check: what the server runs)
        con.print(f"{name} arm: {esc(shlex.join(argv))}" if report.mode == "ab" else f"server: {esc(shlex.join(argv))}")
    for w in report.warnings:
        con.print(f"[yellow]note:[/] {esc(w)}")
    color = "green" if report.verdict.code == 0 else "red"
    con.print(
        f"[bold {color}]{report.verdict.title}[/] (exit {int(report.verdict.code)}): {esc(report.verdict.reason)}"
    )


def verify_cmd(
    model: Optional[str] = typer.Argument(None, help="GGUF path or alias (default: the default model)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    quick: bool = typer.Option(False, "--quick", help="Short check for setup: 128 tokens, median of 3."),
    thorough: bool = typer.Option(
        False, "--thorough", help="The full matrix: every case, 2000 tokens, 5 warm-ups, median of 10."
    ),
    budget: Optional[float] = typer.Option(
        None,
        "--budget",
        **limits.option(limits.BudgetSeconds),
        metavar="SECONDS",
        help="Default check: stop after this much generation (default 60).",
    ),
    runs: Optional[int] = typer.Option(
        None,
        "--runs",
        **limits.option(limits.Runs),
        help="Measured runs per case; default check: pairs before it may stop (3).",
    ),
    warmups: Optional[int] = typer.Option(
        None, "--warmups", **limits.option(limits.Warmups), help="Warm-up runs per case/server (default 1)."
    ),
    n_predict: Optional[int] = typer.Option(
        None, "--n-predict", **limits.option(limits.NPredict), help="Tokens per run (default 128)."
    ),
    temperature: Optional[list[float]] = typer.Option(
        None,
        "--temperature",
        **limits.option(limits.Temperature, many=True),
        help="Temperatures to measure (repeatable; default 0 and 0.7).",
    ),
    tolerance: float = typer.Option(
        0.10, "--tolerance", **limits.option(limits.Fraction), help="Allowed drop against the baseline (0.10 = 10%)."
    ),
    update_baseline: bool = typer.Option(False, "--update-baseline", help="Replace the stored baseline on a pass."),
    ctx: o.Ctx = None,
    parallel: o.Parallel = None,
    clients: o.Clients = None,
    cache_type: o.CacheType = None,
    gpu_layers: o.GpuLayers = None,
    threads: o.Threads = None,
    draft_n_max: o.DraftNMax = None,
    draft_p_min: o.DraftPMin = None,
    rpc: o.Rpc = None,
    server: o.Server = None,
    alias: o.Alias = None,
    port: Optional[int] = typer.Option(
        None,
        "--port",
        **limits.option(limits.Port),
        help="Check the llmtp server running on this port without restarting it.",
    ),
    restart: bool = typer.Option(
        False,
        "--restart",
        help="When llmtp already serves the model here: stop that server, run the comparison, start it again.",
    ),
    html: Optional[str] = typer.Option(
        None,
        "--html",
        metavar="FILE",
        help="Also write a self-contained HTML report (charts, per-prompt speedups, "
        "acceptance, configuration) for a bug report.",
    ),
) -> None:
    """Prove MTP is on and faster: build, model and runtime markers, then a plain vs MTP A/B of the launch
    plan `llmtp serve` would run (the same overrides apply; the MTP arm is that plan, the plain arm the same
    plan with MTP off).

    By default plain and MTP runs alternate until the speedup's 99% interval is clearly above or below
    1.0x, or --budget seconds of generation are spent; --thorough measures the full matrix. --port checks a
    running server instead (see docs/verify.md)."""
    from llmtp.cli._charts import html_target, print_chart, write_html
    from llmtp.cli._out import console, emit_json
    from llmtp.core.report import verify_report
    from llmtp.services.verify.ab_plan import model_ref_or_default, run_verify
    from llmtp.services.verify.mtp_ab import VerifyOptions
    from llmtp.services.verify.running_check import verify_live
    from llmtp.settings import load_settings

    target = html_target(html)
    method = method_from(quick, thorough, runs, warmups, n_predict, temperature, budget)
    settings = load_settings().settings
    err = console(stderr=True)

    def measure(on_progress=None):
        if port is not None:
            return verify_live(settings, port, method, tolerance, model=model)
        # the arms listen on loopback whatever the settings' bind (an open bind would need a key file)
        host = None if settings.host in ("127.0.0.1", "localhost", "::1") else "127.0.0.1"
        request = o.launch_request(
            model_ref_or_default(settings, model),
            None,
            host=host,
            ctx=ctx,
            parallel=parallel,
            clients=clients,
            cache_type=cache_type,
            gpu_layers=gpu_layers,
            threads=threads,
            draft_n_max=draft_n_max,
            draft_p_min=draft_p_min,
            rpc=rpc,
            server=server,
            alias=alias,
        )
        return run_verify(
            settings,
            request,
            method,
            served="restart" if restart else "refuse",
            options=VerifyOptions(tolerance=tolerance, update_baseline=update_baseline, on_progress=on_progress),
        )

    if json_out:
        report = measure()
        emit_json(report)
    else:
        with err.status("verifying") as status:
            report = measure(lambda t: status.update(t))
        con = console()
        render(report, con)
        print_chart(con, verify_report(report).groups)
    if target is not None:
        write_html(target, verify_report(report))
        typer.echo(f"report written to {target}", err=True)
    raise typer.Exit(int(report.verdict.code))


def register(app: typer.Typer) -> None:
    app.command("verify", help="Prove MTP is on and faster on the current build. " + EXIT_CODES_HELP)(verify_cmd)
