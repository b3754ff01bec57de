"""The fit planner: quant, -ngl, context, KV cache types, flash attention, --n-cpu-moe and MTP for one
model on given hardware, with the predicted memory per device and a reason for every decision.

Pure: hardware, model metadata and the request are values; nothing is read or probed here. This
module holds make_plan's decisions (its data models are core/plan_types.py); where a quant's layers go
is core/placement.py, which quant wins is core/quant_choice.py.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmtp.core import memory as mem
from llmtp.core import placement as pl
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import MtpSettings
from llmtp.core.plan_review import check_ctx, device_wording, reword_fit_warning, warnings_for
from llmtp.core.plan_types import (
    DEFAULT_CTX,
    FFN_SPILL_TOLERANCE,
    KV_LADDER,
    MIN_CTX,
    QUANT_MIN_CTX,
    Decision,
    GiB,
    Plan,
    PlanHardware,
    PlanRequest,
)
from llmtp.core.quant_choice import choose_quant


def make_plan(model: ModelInfo | Sequence[ModelInfo], hardware: PlanHardware, request: PlanRequest) -> Plan:
    """Plan one launch. `model` is one file's metadata or several quants of one model (largest
    first is not required); with several, the best quant that fits is chosen."""
    candidates = (
        [model] if isinstance(model, ModelInfo) else sorted(model, key=lambda m: m.file_size_bytes or 0, reverse=True)
    )
    if not candidates:
        raise ValueError("make_plan needs at least one ModelInfo")
    decisions: list[Decision] = []
    warnings: list[str] = []
    all_candidates = candidates
    forced = None
    if request.quant:
        matching = [c for c in candidates if (c.quant or "").upper() == request.quant.upper()]
        if matching:
            forced, candidates = matching[0], matching
    on_gpu = pl.budget(hardware) is not None
    asked = request  # before --clients turns MTP off: whether the model would have had it
    slots = request.clients
    if slots is not None and not slots.mtp and not request.no_mtp:
        request = request.model_copy(update={"no_mtp": True})
    fa = on_gpu or True  # CPU builds take flash attention too (-fa auto picks it on b11434)
    base = candidates[0]
    trained = base.context_length or DEFAULT_CTX
    check_ctx(request.ctx, base.context_length, request.force)
    ctx_target = request.ctx or min(DEFAULT_CTX, trained)
    ctx_floor = request.ctx or MIN_CTX
    caches = [request.cache_type] if request.cache_type else list(KV_LADDER)
    quant_floor = request.ctx or min(QUANT_MIN_CTX, ctx_target)

    if forced is None and len(all_candidates) == 1:
        forced = all_candidates[0]  # one file named: its KV types and placements are still compared
    chosen, trial, quant_reason, candidates_out = choose_quant(
        all_candidates,
        hardware,
        request,
        forced=forced,
        ctx_target=ctx_target,
        ctx_floor=ctx_floor if not on_gpu else quant_floor,
        caches=caches,
        fa=fa,
    )
    assert trial is not None
    mtp_on, mtp_reason = pl.mtp_state(chosen, request)
    if request is not asked:
        would, why = pl.mtp_state(chosen, asked)
        mtp_reason = slots.mtp_reason if would else why
    n = mem.trunk_layers(chosen)

    if len(all_candidates) > 1 or request.quant:
        decisions.append(Decision(what="quant", value=chosen.quant or "?", reason=quant_reason))
    if on_gpu:
        if trial.n_cpu_ffn:
            spilled = mem.ffn_spill_bytes(chosen, trial.n_cpu_ffn)
            decisions.append(
                Decision(
                    what="-ngl", value="all", reason=f"all {n} layers, the output head and the MTP layer on the GPU"
                )
            )
            decisions.append(
                Decision(
                    what="--n-cpu-ffn",
                    value=str(trial.n_cpu_ffn),
                    reason=(
                        f"dense FFN weights of the first {trial.n_cpu_ffn} layers ({mem_h(spilled)}) stay in RAM: "
                        "the fewest that let the rest fit; an -ngl split is not predicted faster by more than "
                        f"{FFN_SPILL_TOLERANCE:.0%}"
                    ),
                )
            )
        elif trial.ngl > n and not trial.n_cpu_moe:
            decisions.append(
                Decision(what="-ngl", value="all", reason=f"all {n} layers and the output head fit in VRAM")
            )
        elif trial.n_cpu_moe:
            decisions.append(Decision(what="-ngl", value="all", reason="attention and shared weights on the GPU"))
            decisions.append(
                Decision(
                    what="--n-cpu-moe",
                    value=str(trial.n_cpu_moe),
                    reason=f"routed experts of the first {trial.n_cpu_moe} layers stay in RAM: the rest fill the VRAM",
                )
            )
        elif trial.ngl == 0:
            decisions.append(Decision(what="-ngl", value="0", reason="not even the output head fits in VRAM"))
        else:
            decisions.append(
                Decision(
                    what="-ngl",
                    value=str(pl.llama_ngl(chosen, trial.ngl)),
                    reason=f"the output head, the MTP layer and the last {trial.ngl} of {n} layers "
                    "fit in VRAM; the rest run on the CPU",
                )
            )
    if request.ctx:
        decisions.append(Decision(what="ctx", value=str(trial.ctx), reason="requested with --ctx"))
    elif trial.ctx < ctx_target:
        decisions.append(
            Decision(
                what="ctx",
                value=str(trial.ctx),
                reason=f"shrunk from {ctx_target} so the KV cache stays in VRAM (never spilled to system RAM)",
            )
        )
    else:
        decisions.append(
            Decision(
                what="ctx",
                value=str(trial.ctx),
                reason=f"default target {DEFAULT_CTX} (trained {trained})"
                if trial.ctx == DEFAULT_CTX
                else f"the trained context is {trained}",
            )
        )
    if request.cache_type:
        cache_reason = "requested"
    elif trial.cache != "f16":
        cache_reason = "f16 KV does not fit at this context; quantized to keep it in VRAM"
    else:
        cache_reason = "f16 fits: no need to quantize"
    decisions.append(Decision(what="-ctk/-ctv", value=trial.cache, reason=cache_reason))
    decisions.append(
        Decision(
            what="-fa", value="on", reason="flash attention shrinks the compute buffer and allows a quantized V cache"
        )
    )
    if mtp_on:
        reason = f"{mtp_reason}; {slots.mtp_reason}" if slots is not None else mtp_reason
        decisions.append(Decision(what="MTP", value=f"draft-mtp, n-max {request.mtp_n_max}", reason=reason))
        if slots is None:
            decisions.append(Decision(what="--parallel", value="1", reason="one slot is the fast path with MTP"))
    else:
        decisions.append(Decision(what="MTP", value="off", reason=mtp_reason))
    parallel = 1 if mtp_on and slots is None else max(1, request.parallel)
    if slots is not None:
        # llama-server splits -c among explicit slots (kv_unified is off unless -np is auto, b11434 server.cpp)
        share = f"; each slot holds {trial.ctx // parallel} of the {trial.ctx} context tokens" if parallel > 1 else ""
        decisions.append(Decision(what="--parallel", value=str(parallel), reason=slots.slots_reason + share))
    if mtp_on and request.parallel > 1 and slots is None:
        warnings.append(
            f"--parallel {request.parallel} ignored: parallel slots with MTP are slower in aggregate "
            f"(`--clients {request.parallel}` plans slots and MTP for that many users)"
        )
    if not mem.kv_known(chosen):
        warnings.append("KV cache size unknown (head counts or head dims missing): the plan counts weights only")
    if chosen.recurrent_layers and mem.recurrent_state_bytes(chosen) is None:
        warnings.append("recurrent state size unknown (ssm dimensions missing)")
    if chosen.file_size_bytes is None:
        warnings.append("file size unknown: weights are not counted")
    if not trial.fits:
        warnings.append("does not fit even at the smallest context and KV type: expect an out-of-memory failure")
    if mtp_on and request.sidecar and request.sidecar_bytes is None:
        warnings.append("MTP sidecar size unknown: its weights are not counted")
    mtp = MtpSettings(enabled=mtp_on, n_max=request.mtp_n_max, draft_model=request.sidecar if mtp_on else None)
    devices = [d for d in (trial.gpu, trial.cpu) if d is not None]
    sp = pl.speed(chosen, hardware, request, trial, mtp_on)
    warnings = reword_fit_warning(warnings, request.ctx) + warnings_for(
        decode_tok_s=sp.mtp_tok_s if sp.mtp_tok_s is not None else sp.plain_tok_s,
        memory=devices,
        on_gpu=on_gpu,
        requested_ctx=request.ctx,
        trained=base.context_length,
        fits=trial.fits,
    )
    for d in decisions:
        d.reason = device_wording(d.reason, on_gpu)
    for c in candidates_out:
        c.lost = device_wording(c.lost, on_gpu) if c.lost else c.lost
    return Plan(
        model=chosen.name or chosen.path or "?",
        arch=chosen.arch,
        quant=chosen.quant,
        fits=trial.fits,
        n_gpu_layers=(pl.llama_ngl(chosen, trial.ngl) if on_gpu else None),
        n_layers=n,
        ctx=trial.ctx,
        cache_type_k=trial.cache,
        cache_type_v=trial.cache,
        flash_attn="on",
        n_cpu_moe=trial.n_cpu_moe or None,
        n_cpu_ffn=trial.n_cpu_ffn or None,
        parallel=parallel,
        mtp=mtp,
        memory=devices,
        bytes_per_token=sp.bytes_per_token,
        decode_tok_s=sp.plain_tok_s,
        decode_tok_s_mtp=sp.mtp_tok_s,
        mtp_acceptance=sp.acceptance,
        mtp_acceptance_source=sp.acceptance_source,
        bottleneck=sp.bottleneck,
        candidates=candidates_out,
        decisions=decisions,
        warnings=warnings,
    )


def mem_h(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / GiB:.1f} GiB"
