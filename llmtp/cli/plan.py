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
         ram_bw: float = typer.Option(None, "--ram-bw", **limits.option(limits.Bandwidth),
                                      help="System RAM bandwidth in GB/s, for layers left on the CPU."),
         rpc: str = typer.Option(None, "--rpc", help="Plan across these RPC workers too: HOST:PORT,... "
                                 "(`llmtp worker start`; default from settings: rpc)."),
         json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
         check: bool = typer.Option(False, "--check", help="Also run llama-fit-params and show both."),
         compare: bool = typer.Option(False, "--compare", help="Show every candidate: where it runs, predicted "
                                      "tok/s plain and with MTP, memory, and why it lost.")) -> None:
    """Predict memory per device and choose the launch settings, with a reason for each."""
    from llmtp.cli._out import esc
    from llmtp.cli._out import console, emit_json, human_bytes
    from llmtp.core.plan_types import PlanRequest
    from llmtp.core.quant_choice import quant_rule
    from llmtp.services.plan import hardware_from_flags, plan_model
    from llmtp.settings import load_settings

    settings = load_settings().settings
    request = PlanRequest(ctx=ctx, parallel=parallel, no_mtp=no_mtp, quant=quant)
    hardware = hardware_from_flags(vram, gpu)
    if ram_bw is not None:
        from llmtp.services.plan import detected_hardware

        hardware = (hardware or detected_hardware()).model_copy(update={"ram_bandwidth_gbps": ram_bw})
    result = plan_model(ref, settings, request, hardware)
    distributed = None
    if rpc or settings.rpc:
        from llmtp.services.rpc import plan_distributed

        distributed = plan_distributed(settings, result, rpc or settings.rpc)
    fit = None
    if check:
        from llmtp.services.plan import check_with_fit_params

        fit = check_with_fit_params(result, settings)
    if json_out:
        emit_json({"ref": ref, "downloaded": result.downloaded, "source": result.source,
                   "sizes_from": _sizes_from(result), "hardware": result.hardware, "rule": quant_rule(),
                   "plan": result.plan, "fit_params": fit, "rpc": distributed})
        return
    p = result.plan
    c = console()
    if compare:
        _print_compare(c, p, result.hardware, human_bytes, _sizes_from(result))
        return
    where = "file" if result.downloaded else "catalog metadata (not downloaded)"
    c.print(f"{p.model} {p.quant or ''} - planned from {where}")
    if _sizes_from(result):
        c.print(f"  sizes from {_sizes_from(result)}")
    for d in p.decisions:
        c.print(f"  {d.what:<12} {d.value:<22} {d.reason}")
    c.print("memory:")
    for m in p.memory:
        budget = f" of {human_bytes(m.budget)}" if m.budget else ""
        c.print(f"  {m.device}: {human_bytes(m.total)}{budget} = weights {human_bytes(m.weights)}"
                f" + KV {human_bytes(m.kv_cache)}"
                f" + recurrent {human_bytes(m.recurrent_state)} + MTP draft {human_bytes(m.mtp_draft)}"
                f" + compute {human_bytes(m.compute)} + margin {human_bytes(m.margin)}")
    if p.decode_tok_s is not None:
        mtp = (f", <= {p.decode_tok_s_mtp} with MTP at acceptance {p.mtp_acceptance:.2f} ({p.mtp_acceptance_source})"
               if p.decode_tok_s_mtp is not None and p.mtp_acceptance is not None else "")
        c.print(f"decode: <= {p.decode_tok_s} tok/s roofline{mtp} ({human_bytes(p.bytes_per_token)} read per token); "
                f"bottleneck: {p.bottleneck}")
    elif p.bottleneck:
        c.print(f"bottleneck: {p.bottleneck}")
    if distributed is not None:
        _print_distributed(c, distributed, human_bytes)
    for w in p.warnings:
        c.print(f"[yellow]warning:[/] {esc(w)}")
    if fit is not None:
        ngl = "none (CPU)" if p.n_gpu_layers is None else p.n_gpu_layers
        c.print(f"llama-fit-params: -c {fit['ctx']} -ngl {fit['n_gpu_layers']} {' '.join(fit['extra'])}  "
                f"(llmtp: -c {p.ctx} -ngl {ngl})")


def _print_compare(c, p, hw, human_bytes, sizes_from: str | None = None) -> None:
    from llmtp.core.quant_choice import quant_rule

    rule = quant_rule()
    where = (f"{hw.gpus[0].name} ({human_bytes(hw.gpus[0].free_bytes)})" if hw.gpus
             else f"the CPU ({human_bytes(hw.ram_bytes)} RAM)")
    c.print(f"{p.model}: candidates on {where}; rule: {rule['text']}")
    if sizes_from:
        c.print(f"  sizes from {sizes_from}", markup=False)
    head = (f"  {'quant':<9}{'KV':<6}{'ctx':>7}  {'runs':<27}{'plain':>7}{'MTP':>7}{'rel':>6}  "
            f"{'GPU mem':>10}{'RAM':>10}  why not")
    c.print(head, markup=False)
    assumed: list[str] = []
    for k in p.candidates:
        tok = lambda v: "?" if v is None else f"{v:.1f}"  # noqa: E731
        rel = "?" if k.relative is None else f"{k.relative:.0%}"
        gpu = "-" if k.gpu_bytes is None else human_bytes(k.gpu_bytes)
        why = "CHOSEN" if k.chosen else (k.lost or "")
        c.print(f"{'*' if k.chosen else ' '} {k.quant or '?':<9}{k.cache:<6}{k.ctx:>7}  {k.runs:<27}{tok(k.plain_tok_s):>7}"
                f"{tok(k.mtp_tok_s):>7}{rel:>6}  {gpu:>10}{human_bytes(k.cpu_bytes):>10}  {why}", markup=False)
        assumed += [a for a in k.assumed if a not in assumed]
    c.print("plain/MTP: predicted decode tok/s (memory-bandwidth roofline, an upper bound); rel: delivered speed "
            "relative to the fastest fully placed candidate (of all candidates when none is)", markup=False)
    if p.mtp.enabled and p.mtp_acceptance is not None:
        c.print(f"MTP: n-max {p.mtp.n_max} at draft acceptance {p.mtp_acceptance:.2f} ({p.mtp_acceptance_source}; "
                "`llmtp tune` measures it)", markup=False)
    for a in assumed:
        fix = "--gpu NAME for a known card" if a.startswith("GPU") else "--ram-bw GB/s"
        c.print(f"note: {a} (pass {fix}); tok/s not shown where it depends on it", markup=False)


def _print_distributed(c, d: dict, human_bytes) -> None:
    c.print(f"devices over RPC ({len(d['devices'])}, in llama.cpp's order; {d['reason']}):", markup=False)
    for row in d["devices"]:
        mem = (f"{human_bytes(row['free_mib'] * 2**20)} free of {human_bytes(row['total_mib'] * 2**20)}"
               if row["free_mib"] is not None and row["total_mib"] is not None else "memory unknown")
        share = (f"weights {row['weights_share']:.0%} ({human_bytes(row['weights_bytes'])})"
                 if row["weights_share"] is not None and row["weights_bytes"] is not None
                 else row.get("holds") or "-")
        c.print(f"  {row['id']:<6} {row['name']:<24} {mem:<28} {share}", markup=False)
    for address, link in d["network"].items():
        c.print(f"  network to {address}: " + (f"round trip {link['rtt_s'] * 1e3:.2f} ms, "
                f"{link['bytes_per_s'] / 2**20:.0f} MiB/s (timed transfer, cached)" if link.get("bytes_per_s")
                else f"not measured ({link.get('error')})"), markup=False)
    c.print(f"launch: {' '.join(d['argv'])}", markup=False)
    net = d["network_s_per_token_min"]
    if d["decode_tok_s"] is not None:
        mtp = f", <= {d['decode_tok_s_mtp']} with MTP" if d["decode_tok_s_mtp"] is not None else ""
        c.print(f"decode over RPC: <= {d['decode_tok_s']} tok/s{mtp} (the roofline plus >= {net * 1e3:.2f} ms "
                "of network per token)", markup=False)
    else:
        c.print("decode over RPC: unknown (" + ("this host's roofline is unknown" if net is not None else
                "the network is not measured") + (f"; the network adds >= {net * 1e3:.2f} ms per token"
                                                  if net is not None else "") + ")", markup=False)


def _sizes_from(result) -> str | None:
    """Where a not-downloaded model's file sizes came from: the hub listing (which revision) or the
    catalog's offline fallback."""
    return getattr(result.resolved, "size_source", None) if result.resolved is not None else None


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
