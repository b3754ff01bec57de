"""`llmtp plan`: quant, offload, context, KV cache and MTP for a model on this (or a named) machine."""

from __future__ import annotations

import typer

from llmtp.core import limits


def plan(ref: str = typer.Argument(..., help="Alias, GGUF path or hf:org/repo:QUANT."),
         ctx: int = typer.Option(None, "--ctx", "-c", help="Context size to plan for (default: choose).",
                                  **limits.option(limits.Ctx)),
         parallel: int = typer.Option(1, "--parallel", "-np", help="Parallel slots (1 with MTP).",
                                       **limits.option(limits.Parallel)),
         no_mtp: bool = typer.Option(False, "--no-mtp", help="Plan without MTP speculative decoding."),
         quant: str = typer.Option(None, "--quant", "-q", help="Plan for this quant instead of choosing."),
         vram: str = typer.Option(None, "--vram", help="Plan for this much GPU memory, e.g. 12GiB."),
         gpu: str = typer.Option(None, "--gpu", help="Plan for a known card, e.g. 'RTX 4090' (see data/gpus.toml)."),
         json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
         check: bool = typer.Option(False, "--check", help="Also run llama-fit-params and show both.")) -> None:
    """Predict memory per device and choose the launch settings, with a reason for each."""
    from llmtp.cli._out import console, emit_json, human_bytes
    from llmtp.core.plan import PlanRequest
    from llmtp.services.plan import hardware_from_flags, plan_model
    from llmtp.settings import load_settings

    settings = load_settings().settings
    request = PlanRequest(ctx=ctx, parallel=parallel, no_mtp=no_mtp, quant=quant)
    result = plan_model(ref, settings, request, hardware_from_flags(vram, gpu))
    fit = None
    if check:
        from llmtp.services.plan import check_with_fit_params

        fit = check_with_fit_params(result, settings)
    if json_out:
        emit_json({"ref": ref, "downloaded": result.downloaded, "source": result.source,
                   "hardware": result.hardware, "plan": result.plan, "fit_params": fit})
        return
    p = result.plan
    c = console()
    where = "file" if result.downloaded else "catalog metadata (not downloaded)"
    c.print(f"{p.model} {p.quant or ''} - planned from {where}")
    for d in p.decisions:
        c.print(f"  {d.what:<12} {d.value:<22} {d.reason}")
    c.print("memory:")
    for m in p.memory:
        budget = f" of {human_bytes(m.budget)}" if m.budget else ""
        c.print(f"  {m.device}: {human_bytes(m.total)}{budget} = weights {human_bytes(m.weights)} + KV {human_bytes(m.kv_cache)}"
                f" + recurrent {human_bytes(m.recurrent_state)} + MTP draft {human_bytes(m.mtp_draft)}"
                f" + compute {human_bytes(m.compute)} + margin {human_bytes(m.margin)}")
    if p.decode_tok_s is not None:
        c.print(f"decode: <= {p.decode_tok_s} tok/s roofline ({human_bytes(p.bytes_per_token)} read per token); bottleneck: {p.bottleneck}")
    elif p.bottleneck:
        c.print(f"bottleneck: {p.bottleneck}")
    for w in p.warnings:
        c.print(f"[yellow]warning:[/] {w}")
    if fit is not None:
        c.print(f"llama-fit-params: -c {fit['ctx']} -ngl {fit['n_gpu_layers']} {' '.join(fit['extra'])}  (llmtp: -c {p.ctx} -ngl {'none (CPU)' if p.n_gpu_layers is None else p.n_gpu_layers})")


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
