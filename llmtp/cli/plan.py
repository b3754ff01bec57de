"""`llmtp plan`: quant, offload, context, KV cache and MTP for a model on this (or a named) machine."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.cli import _serve_options as o
from llmtp.core import limits


def plan(
    ref: o.Model,
    more: Optional[list[str]] = typer.Argument(
        None, help="More models: plan them as one set on one router port (`llmtp serve A B C`)."
    ),
    ctx: o.Ctx = None,
    parallel: o.Parallel = None,
    clients: o.Clients = None,
    no_mtp: o.NoMtp = False,
    quant: str = typer.Option(None, "--quant", "-q", help="Plan for this quant instead of choosing."),
    cache_type: o.CacheType = None,
    gpu_layers: o.GpuLayers = None,
    threads: o.Threads = None,
    draft_n_max: o.DraftNMax = None,
    draft_p_min: o.DraftPMin = None,
    alias: o.Alias = None,
    host: o.Host = None,
    port: o.Port = None,
    api_key_file: o.ApiKeyFile = None,
    server: o.Server = None,
    vram: str = typer.Option(None, "--vram", help="Plan for this much GPU memory, e.g. 12GiB."),
    gpu: str = typer.Option(None, "--gpu", help="Plan for a known card, e.g. 'RTX 4090' (see data/gpus.toml)."),
    ram_bw: float = typer.Option(
        None,
        "--ram-bw",
        **limits.option(limits.Bandwidth),
        help="System RAM bandwidth in GB/s, for layers left on the CPU.",
    ),
    rpc: o.Rpc = None,
    argv: bool = typer.Option(
        False,
        "--argv",
        help="Print exactly the command line `llmtp serve` would run "
        "here with the same options (with --json: as data).",
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
    check: bool = typer.Option(False, "--check", help="Also run llama-fit-params and show both."),
    compare: bool = typer.Option(
        False,
        "--compare",
        help="Show every candidate: where it runs, predicted tok/s plain and with MTP, memory, and why it lost.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Plan a --ctx far beyond the context the model was trained for (refused otherwise)."
    ),
) -> None:
    """Predict memory per device and choose the launch settings, with a reason for each: the very plan
    `llmtp serve` runs (--argv prints its command line)."""
    from llmtp.cli._out import console, emit_json, human_bytes, say
    from llmtp.core.quant_choice import quant_rule
    from llmtp.core.rpc import split_memory
    from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch
    from llmtp.services.serve.plan import hardware_from_flags
    from llmtp.settings import load_settings

    settings = load_settings().settings
    request = o.launch_request(
        ref,
        None,
        host=host,
        port=port,
        ctx=ctx,
        no_mtp=no_mtp,
        parallel=parallel,
        clients=clients,
        cache_type=cache_type,
        gpu_layers=gpu_layers,
        threads=threads,
        draft_n_max=draft_n_max,
        draft_p_min=draft_p_min,
        alias=alias,
        api_key_file=api_key_file,
        rpc=rpc,
        server=server,
        quant=quant,
        force=force or None,
    )
    hardware = hardware_from_flags(vram, gpu)
    bw_note = measured_bw = None
    if ram_bw is not None:
        from llmtp.services.serve.plan import detected_hardware

        hardware = (hardware or detected_hardware()).model_copy(update={"ram_bandwidth_gbps": ram_bw})
    elif hardware is None:  # this machine: CPU layers' speed from a measured figure rather than `?`
        from llmtp.services.machine.ram_bandwidth import ram_bandwidth

        measured_bw, how = ram_bandwidth(settings)
        if measured_bw is not None:
            bw_note = f"RAM bandwidth {measured_bw:g} GB/s ({how}; --ram-bw states another)"
    deps = LaunchDeps(hardware=hardware, launching=argv, ram_bandwidth=measured_bw)
    if more or ref in settings.sets:
        from llmtp.cli.serve_set import plan_set

        plan_set(settings, [ref, *(more or [])], request, deps, argv=argv, as_json=json_out)
        return
    launch = resolve_launch(settings, request, deps)
    if argv:
        from llmtp.cli.serve import print_plan_argv

        print_plan_argv(launch, json_out)
        return
    result = launch.planned
    distributed = None
    if request.rpc or settings.rpc:
        from llmtp.services.rpc.cluster import plan_distributed

        distributed = plan_distributed(settings, launch)
    # one answer for memory: with RPC workers, the planner's figures as the launch splits them over its devices
    memory = split_memory(result.plan.memory, distributed["devices"]) if distributed else result.plan.memory
    fit = None
    if check:
        from llmtp.services.serve.plan import check_with_fit_params

        fit = check_with_fit_params(result, settings)
    if json_out:
        emit_json(
            {
                "ref": ref,
                "downloaded": result.downloaded,
                "source": result.source,
                "sizes_from": _sizes_from(result),
                "hardware": result.hardware,
                "rule": quant_rule(),
                "plan": result.plan.model_copy(update={"memory": memory}),
                "fit_params": fit,
                "rpc": distributed,
                "argv": launch.argv,
                "reasons": list(launch.reasons),
            }
        )
        return
    p = result.plan
    c = console(markup=False)
    if compare:
        _print_compare(c, p, result.hardware, human_bytes, _sizes_note(settings, result), bw_note)
        return
    where = "file" if result.downloaded else "catalog metadata (not downloaded)"
    say(f"{p.model} {p.quant or ''} - planned from {where}", con=c)
    sizes = _sizes_note(settings, result)
    if sizes:
        say(f"  sizes from {sizes}", indent=4, con=c)
    for d in launch.reasons:  # the planner's, then tune's and the overrides': what serve runs
        head = f"  {d['what']:<12} {d['value']:<22} "
        # reasons wrap under themselves where the terminal leaves room, else under the setting
        say(head + d["reason"], indent=len(head) if c.width - len(head) >= 30 else 4, con=c)
    c.print("memory (split over the RPC devices as the launch places the layers):" if distributed else "memory:")
    for m in memory:
        budget = f" of {human_bytes(m.budget)}" if m.budget else ""
        say(
            f"  {m.device}: {human_bytes(m.total)}{budget} = weights {human_bytes(m.weights)}"
            f" + KV {human_bytes(m.kv_cache)}"
            f" + recurrent {human_bytes(m.recurrent_state)} + MTP draft {human_bytes(m.mtp_draft)}"
            f" + compute {human_bytes(m.compute)} + margin {human_bytes(m.margin)}",
            indent=4,
            con=c,
        )
    if p.decode_tok_s is not None:
        mtp = (
            f", <= {p.decode_tok_s_mtp} with MTP at acceptance {p.mtp_acceptance:.2f} ({p.mtp_acceptance_source})"
            if p.decode_tok_s_mtp is not None and p.mtp_acceptance is not None
            else ""
        )
        say(
            f"decode: <= {p.decode_tok_s} tok/s roofline{mtp} ({human_bytes(p.bytes_per_token)} read per token); "
            f"bottleneck: {p.bottleneck}",
            con=c,
        )
    elif p.bottleneck:
        say(f"bottleneck: {p.bottleneck}", con=c)
    if bw_note:
        say(f"note: {bw_note}", con=c)
    if distributed is not None:
        _print_distributed(c, distributed, human_bytes)
    for w in p.warnings:
        say(f"warning: {w}", indent=9, con=c)
    if fit is not None:
        ngl = "none (CPU)" if p.n_gpu_layers is None else p.n_gpu_layers
        c.print(
            f"llama-fit-params: -c {fit['ctx']} -ngl {fit['n_gpu_layers']} {' '.join(fit['extra'])}  "
            f"(llmtp: -c {p.ctx} -ngl {ngl})"
        )


def _print_compare(c, p, hw, human_bytes, sizes_from: str | None = None, bw_note: str | None = None) -> None:
    from llmtp.cli._out import say
    from llmtp.core.quant_choice import quant_rule

    rule = quant_rule()
    where = (
        f"{hw.gpus[0].name} ({human_bytes(hw.gpus[0].free_bytes)})"
        if hw.gpus
        else f"the CPU ({human_bytes(hw.ram_bytes)} RAM)"
    )
    say(f"{p.model}: candidates on {where}; rule: {rule['text']}", con=c)
    if sizes_from:
        say(f"  sizes from {sizes_from}", indent=4, con=c)
    c.print(compare_table(p, bool(hw.gpus), human_bytes))
    assumed: list[str] = []
    for k in p.candidates:
        assumed += [a for a in k.assumed if a not in assumed]
    say(
        "plain/MTP: predicted decode tok/s (memory-bandwidth roofline, an upper bound); rel: delivered speed "
        "relative to the fastest fully placed candidate (of all candidates when none is)",
        con=c,
    )
    if p.mtp.enabled and p.mtp_acceptance is not None:
        say(
            f"MTP: n-max {p.mtp.n_max} at draft acceptance {p.mtp_acceptance:.2f} ({p.mtp_acceptance_source}; "
            "`llmtp tune` measures it)",
            con=c,
        )
    if bw_note:
        say(f"note: {bw_note}", con=c)
    for a in assumed:
        fix = "--gpu NAME for a known card" if a.startswith("GPU") else "--ram-bw GB/s"
        say(f"note: {a} (pass {fix}); tok/s not shown where it depends on it", con=c)


def compare_table(p, on_gpu: bool, human_bytes):  # noqa: ANN001 - core.plan.Plan
    """One row per candidate; the quant is never cut, `runs` and `why not` wrap (fits 100 columns)."""
    from llmtp.cli._out import table

    cols = ["quant", "KV", "ctx", "runs", "plain", "MTP", "rel", *(["GPU mem"] if on_gpu else []), "RAM", "why not"]
    t = table(*cols, whole=("quant", "ctx", "GPU mem", "RAM"))  # sizes are short: wrapped they only confuse
    for k in p.candidates:
        tok = lambda v: "?" if v is None else f"{v:.1f}"  # noqa: E731
        rel = "?" if k.relative is None else f"{k.relative:.0%}"
        gpu = ["-" if k.gpu_bytes is None else human_bytes(k.gpu_bytes)] if on_gpu else []
        t.add_row(
            ("*" if k.chosen else "") + (k.quant or "?"),
            k.cache,
            str(k.ctx),
            k.runs,
            tok(k.plain_tok_s),
            tok(k.mtp_tok_s),
            rel,
            *gpu,
            human_bytes(k.cpu_bytes),
            "CHOSEN" if k.chosen else (k.lost or ""),
        )
    return t


def _print_distributed(c, d: dict, human_bytes) -> None:
    c.print(f"devices over RPC ({len(d['devices'])}, in llama.cpp's order; {d['reason']}):", markup=False)
    for row in d["devices"]:
        mem = (
            f"{human_bytes(row['free_mib'] * 2**20)} free of {human_bytes(row['total_mib'] * 2**20)}"
            if row["free_mib"] is not None and row["total_mib"] is not None
            else "memory unknown"
        )
        share = (
            f"weights {row['weights_share']:.0%} ({human_bytes(row['weights_bytes'])})"
            if row["weights_share"] is not None and row["weights_bytes"] is not None
            else row.get("holds") or "-"
        )
        c.print(f"  {row['id']:<6} {row['name']:<24} {mem:<28} {share}", markup=False)
    for address, link in d["network"].items():
        c.print(
            f"  network to {address}: "
            + (
                f"round trip {link['rtt_s'] * 1e3:.2f} ms, "
                f"{link['bytes_per_s'] / 2**20:.0f} MiB/s (timed transfer, cached)"
                if link.get("bytes_per_s")
                else f"not measured ({link.get('error')})"
            ),
            markup=False,
        )
    c.print(f"launch: {' '.join(d['argv'])}", markup=False)
    net = d["network_s_per_token_min"]
    if d["decode_tok_s"] is not None:
        mtp = f", <= {d['decode_tok_s_mtp']} with MTP" if d["decode_tok_s_mtp"] is not None else ""
        c.print(
            f"decode over RPC: <= {d['decode_tok_s']} tok/s{mtp} (the roofline plus >= {net * 1e3:.2f} ms "
            "of network per token)",
            markup=False,
        )
    else:
        c.print(
            "decode over RPC: unknown ("
            + ("this host's roofline is unknown" if net is not None else "the network is not measured")
            + (f"; the network adds >= {net * 1e3:.2f} ms per token" if net is not None else "")
            + ")",
            markup=False,
        )


def _sizes_note(settings, result) -> str | None:
    """_sizes_from for people: the hub-unreachable reason in full once a day, then in a few words."""
    label = _sizes_from(result)
    if label is None or "offline fallback" not in label:
        return label
    from llmtp.services.stores.said_notes import first_today

    return (
        label if first_today(settings, "plan-offline-fallback") else "catalog sizes (offline fallback, as said before)"
    )


def _sizes_from(result) -> str | None:
    """Where a not-downloaded model's file sizes came from: the hub listing (which revision) or the
    catalog's offline fallback."""
    return getattr(result.resolved, "size_source", None) if result.resolved is not None else None


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
