"""Where one quant's layers go, pure: a trial placement's memory per device, the ways it fits (every
layer on the GPU, an -ngl split, --n-cpu-moe, the FFN spill) and its predicted decode speed.

The planner's data models and budgets are core.plan_types'; core.quant_choice compares these placements
across quants and KV types, and core.plan.make_plan turns the chosen one into a plan.
"""

from __future__ import annotations

from pydantic import BaseModel

from llmtp.core import memory as mem
from llmtp.core import speed as spd
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.plan_types import FFN_SPILL_TOLERANCE, MARGIN_BYTES, MemoryBreakdown, PlanHardware, PlanRequest


def mtp_state(info: ModelInfo, req: PlanRequest) -> tuple[bool, str]:
    if req.no_mtp:
        return False, "--no-mtp given"
    if req.sidecar:
        return True, f"MTP head in the sidecar {req.sidecar} (-md, gemma4-assistant draft)"
    if info.has_mtp_heads and info.mtp_arch:
        return True, f"{info.nextn_predict_layers} nextn layer(s) in the file and {info.arch} has an MTP graph upstream"
    if info.has_mtp_heads:
        return False, f"the file has nextn layers but llama.cpp has no MTP graph for {info.arch}"
    if info.mtp_arch:
        return False, "no MTP heads in this file (nextn_predict_layers = 0): a stripped quant; use an -MTP- GGUF"
    return False, f"{info.arch} has no MTP heads"


def llama_ngl(info: ModelInfo, ngl: int) -> int:
    """llama-server's -ngl for `ngl` trunk layers on the GPU. b11434 (src/llama-model.cpp) counts the
    output layer as one of the N and the nextn (MTP) blocks among its blocks, offloading from the top:
    -ngl N puts the output layer and the last N-1 blocks on the GPU. So k trunk layers is k + nextn
    blocks + 1, and everything is every block in the file + 1 (trunk + 1 left block 0 of an MTP model
    on the CPU)."""
    n = mem.trunk_layers(info)
    if ngl < 1:
        return 0
    return min(ngl, n) + max((info.block_count or n) - n, 0) + 1


class Trial(BaseModel):
    ngl: int
    n_cpu_moe: int
    ctx: int
    cache: str
    gpu: MemoryBreakdown | None
    cpu: MemoryBreakdown
    fits: bool
    n_cpu_ffn: int = 0


def budget(hw: PlanHardware) -> int | None:
    if hw.backend == "cpu" or not hw.gpus:
        return None
    return hw.gpus[0].free_bytes


def trial(
    info: ModelInfo,
    hw: PlanHardware,
    req: PlanRequest,
    *,
    ngl: int,
    n_cpu_moe: int,
    ctx: int,
    cache: str,
    mtp: bool,
    fa: bool,
    n_cpu_ffn: int = 0,
) -> Trial:
    n = mem.trunk_layers(info)
    n_seq = max(1, req.parallel)
    n_max = req.mtp_n_max if mtp else 0
    gpu_budget = budget(hw)
    on_gpu = gpu_budget is not None
    first_gpu = max(0, n - ngl) if on_gpu else n
    kv = mem.kv_bytes_per_layer(info, ctx, cache, cache, n_seq, req.n_ubatch)
    kv_gpu = sum(b for i, b in kv.items() if i >= first_gpu)
    kv_cpu = sum(kv.values()) - kv_gpu
    w_gpu, w_cpu = mem.weight_split(info, ngl if on_gpu else 0, n_cpu_moe, mtp, n_cpu_ffn if on_gpu else 0)
    state = mem.recurrent_state_bytes(info, n_seq, n_max) or 0
    draft = (
        (
            mem.mtp_draft_bytes(info, ctx, n_ubatch=req.n_ubatch, type_k=cache, type_v=cache, gpu=on_gpu)
            + (req.sidecar_bytes or 0)
        )
        if mtp
        else 0
    )
    compute = mem.compute_buffer_bytes(info, ctx, req.n_ubatch, fa) or 0
    if req.corrections:
        f = req.corrections
        kv = {i: int(b * f.get("context", 1.0)) for i, b in kv.items()}
        kv_gpu = sum(b for i, b in kv.items() if i >= first_gpu)
        kv_cpu = sum(kv.values()) - kv_gpu
        w_gpu, w_cpu = int(w_gpu * f.get("model", 1.0)), int(w_cpu * f.get("model", 1.0))
        state = int(state * f.get("context", 1.0))
        compute = int(compute * f.get("compute", 1.0))
    cpu = MemoryBreakdown(device="CPU (system RAM)", weights=w_cpu, kv_cache=kv_cpu, budget=hw.ram_bytes)
    gpu = None
    if on_gpu:
        # b11434: the recurrent state follows its layers; the MTP draft context follows the nextn
        # blocks, which any offload puts on the GPU with the output head
        state_gpu = int(state * mem.recurrent_gpu_share(info, ngl))
        gpu = MemoryBreakdown(
            device=hw.gpus[0].name,
            weights=w_gpu,
            kv_cache=kv_gpu,
            recurrent_state=state_gpu,
            mtp_draft=draft if ngl >= 1 else 0,
            compute=compute,
            margin=MARGIN_BYTES,
            budget=gpu_budget,
        )
        cpu.recurrent_state = state - state_gpu
        cpu.mtp_draft = draft if ngl < 1 else 0
        cpu.compute = compute if first_gpu > 0 else 0
    else:
        cpu.recurrent_state, cpu.mtp_draft, cpu.compute = state, draft, compute
    fits = (gpu is None or gpu.total <= gpu_budget) and (hw.ram_bytes is None or cpu.total <= hw.ram_bytes)  # type: ignore[operator]
    return Trial(
        ngl=ngl,
        n_cpu_moe=n_cpu_moe,
        n_cpu_ffn=n_cpu_ffn if on_gpu else 0,
        ctx=ctx,
        cache=cache,
        gpu=gpu,
        cpu=cpu,
        fits=fits,
    )


def ctx_steps(start: int, floor: int) -> list[int]:
    steps, c = [], start
    while c >= max(floor, 1):  # halving a value <= 0 never drops below the floor: stop at 1 whatever comes in
        steps.append(c)
        c //= 2
    return steps or [start]


def fit_full(info, hw, req, *, ctx_start, ctx_floor, caches, mtp, fa) -> Trial | None:
    """Largest context (then lightest KV type) with every layer on the GPU."""
    n = mem.trunk_layers(info)
    for ctx in ctx_steps(ctx_start, ctx_floor):
        for cache in caches:
            t = trial(info, hw, req, ngl=n + 1, n_cpu_moe=0, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
            if t.fits:
                return t
    return None


def fit_partial(info, hw, req, *, ctx, cache, mtp, fa) -> Trial:
    """Most layers (or, for MoE, fewest CPU expert layers) that fit at this context."""
    n = mem.trunk_layers(info)
    if info.layer_expert_bytes and any(info.layer_expert_bytes):
        for k in range(n + 1):
            t = trial(info, hw, req, ngl=n + 1, n_cpu_moe=k, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
            if t.fits:
                return t
    for ngl in range(n - 1, -1, -1):  # n trunk layers on the GPU is everything (the head goes first)
        t = trial(info, hw, req, ngl=ngl, n_cpu_moe=0, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
        if t.fits:
            return t
    return trial(info, hw, req, ngl=0, n_cpu_moe=0, ctx=ctx, cache=cache, mtp=mtp, fa=fa)


def fit_ffn(info, hw, req, *, ctx, cache, mtp, fa) -> Trial | None:
    """A dense model's other split: every layer, the output head and the MTP layer on the GPU (-ngl
    all), with the dense FFN weights of the fewest first layers in RAM (--n-cpu-ffn). None when the
    FFN sizes are unknown or even every layer's FFN in RAM does not make the rest fit."""
    n = mem.trunk_layers(info)
    if not any((info.layer_ffn_bytes or [])[:n]) or any(info.layer_expert_bytes or []):
        return None
    lo, hi = 1, n  # fitting only gets easier with more FFN in RAM: bisect for the fewest
    best = trial(info, hw, req, ngl=n + 1, n_cpu_moe=0, n_cpu_ffn=n, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
    if not best.fits:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        t = trial(info, hw, req, ngl=n + 1, n_cpu_moe=0, n_cpu_ffn=mid, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
        if t.fits:
            best, hi = t, mid
        else:
            lo = mid + 1
    return best


def split(info, hw, req, *, ctx, cache, mtp, fa) -> tuple[Trial, list[Trial]]:
    """When nothing runs whole on the GPU: the placement predicted fastest among the -ngl split (or
    --n-cpu-moe) and the FFN spill (within FFN_SPILL_TOLERANCE, the spill), and the ones it beat."""
    options = [
        t
        for t in (
            fit_partial(info, hw, req, ctx=ctx, cache=cache, mtp=mtp, fa=fa),
            fit_ffn(info, hw, req, ctx=ctx, cache=cache, mtp=mtp, fa=fa),
        )
        if t is not None
    ]
    fitting = [t for t in options if t.fits] or options[:1]

    def score(t: Trial) -> float:
        rank = speed(info, hw, req, t, mtp).rank
        return rank * (1 + FFN_SPILL_TOLERANCE) if t.n_cpu_ffn else rank

    ranked = sorted(fitting, key=score, reverse=True)
    return ranked[0], ranked[1:]


def speed(info: ModelInfo, hw: PlanHardware, req: PlanRequest, t: Trial, mtp: bool) -> spd.Speed:
    on_gpu = t.gpu is not None
    placement = spd.Placement(
        n_gpu_layers=t.ngl if on_gpu else 0,
        n_cpu_moe=t.n_cpu_moe,
        n_cpu_ffn=t.n_cpu_ffn,
        ctx=t.ctx,
        cache=t.cache,
        on_gpu=on_gpu,
        mtp=mtp,
        mtp_n_max=req.mtp_n_max,
        sidecar=bool(req.sidecar),
        sidecar_bytes=req.sidecar_bytes,
    )
    bw = spd.Bandwidths(
        gpu_gbps=hw.gpus[0].bandwidth_gbps if hw.gpus else None,
        ram_gbps=hw.ram_bandwidth_gbps,
        unified=hw.unified_memory,
    )
    return spd.predict(info, placement, bw, req.acceptance)
