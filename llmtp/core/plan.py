"""The fit planner: quant, -ngl, context, KV cache types, flash attention, --n-cpu-moe and MTP for one
model on given hardware, with the predicted memory per device and a reason for every decision.

Pure: hardware, model metadata and the request are values; nothing is read or probed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core import memory as mem
from llmtp.core import speed as spd
from llmtp.core.catalog import NOMINAL_BPW
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings

MiB = mem.MiB
GiB = 1024 * MiB
Backend = Literal["cuda", "rocm", "metal", "vulkan", "cpu"]

DEFAULT_CTX = 32768  # what a chat/coding session wants when the user names no context
MIN_CTX = 4096  # below this a plan is not useful; shrinking stops here
QUANT_MIN_CTX = 8192  # a quant "fits" when it runs fully on the GPU at this context or more
# The quant rule (docs/planning.md "Choosing the quant"): quality grows with bits per weight,
# IQ3_XXS < IQ4_XS < Q4_K_M < Q5_K_M < Q6_K < Q8_0 < BF16 (for one model: with the file size).
QUALITY_LADDER = ("IQ3_XXS", "IQ4_XS", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "BF16")
TOP_DEFAULT_BPW = NOMINAL_BPW["Q8_0"]  # nothing above Q8_0 unless asked: BF16 halves the speed for no visible gain
# A bigger quant is chosen only while its predicted delivered speed stays at or above this share of
# the fastest candidate that fits fully on the GPU (or in RAM on a CPU build).
SPEED_FRACTION = 0.5
MARGIN_BYTES = 512 * MiB  # driver, desktop and fragmentation slack per GPU
KV_LADDER = ("f16", "q8_0", "q4_0")
# The FFN spill and an -ngl split that free the same bytes read the same bytes from RAM: the roofline
# ranks them alike. What it leaves out favours the spill (an -ngl split also runs those layers'
# attention and recurrent updates on the CPU, compute the spill keeps on the GPU), so the spill is
# kept unless the -ngl split is predicted faster by more than this share.
FFN_SPILL_TOLERANCE = 0.05


class PlanDevice(BaseModel):
    name: str
    free_bytes: int  # memory the plan may use on this device
    bandwidth_gbps: float | None = None  # GB/s; None = unknown (no roofline)


class PlanHardware(BaseModel):
    gpus: list[PlanDevice] = Field(default_factory=list)
    ram_bytes: int | None = None  # available system RAM
    ram_bandwidth_gbps: float | None = None
    unified_memory: bool = False  # Apple / APU: the GPU budget is system RAM
    backend: Backend | None = "cpu"  # None: a GPU of unknown kind (planned as a GPU; only "cpu" plans without)


class PlanRequest(BaseModel):
    ctx: int | None = None  # None: choose (up to DEFAULT_CTX, at most the trained context)
    parallel: int = 1
    no_mtp: bool = False
    quant: str | None = None  # force one quant of the candidates
    cache_type: str | None = None  # force -ctk/-ctv
    n_ubatch: int = 512
    mtp_n_max: int = 3  # upstream default of --spec-draft-n-max
    acceptance: float | None = Field(None, ge=0.0, le=1.0)  # measured MTP draft acceptance; None = default
    sidecar: str | None = None  # Gemma 4 mtp-*.gguf (path, or the catalog's file name before a pull)
    sidecar_bytes: int | None = None  # its size; None = unknown
    # actual/predicted per kind ("model", "context", "compute") measured on earlier launches of this
    # model (services.calibration); scales the prediction so later plans learn from llama-server
    corrections: dict[str, float] = Field(default_factory=dict)


class MemoryBreakdown(BaseModel):
    device: str
    weights: int = 0
    kv_cache: int = 0
    recurrent_state: int = 0
    mtp_draft: int = 0
    compute: int = 0
    margin: int = 0
    budget: int | None = None

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.recurrent_state + self.mtp_draft + self.compute + self.margin


class Decision(BaseModel):
    what: str
    value: str
    reason: str


class Candidate(BaseModel):
    """One quant x KV type x context x placement the planner weighed, with its predicted speed."""
    quant: str | None
    file_size_bytes: int | None = None
    runs: str  # "GPU", "GPU 55/64 layers + CPU", "GPU + CPU experts (12 layers)", "GPU + 6 FFN on CPU", "CPU", ...
    full: bool  # everything on the GPU (CPU build: everything in RAM)
    fits: bool
    n_gpu_layers: int | None = None
    n_cpu_moe: int | None = None
    n_cpu_ffn: int | None = None
    ctx: int
    cache: str
    gpu_bytes: int | None = None  # planned memory on the GPU
    cpu_bytes: int = 0  # planned memory in system RAM
    plain_tok_s: float | None = None  # roofline; None when a bandwidth is unknown
    mtp_tok_s: float | None = None
    relative: float | None = None  # delivered speed / the fastest fully fitting candidate's
    assumed: list[str] = Field(default_factory=list)
    chosen: bool = False
    lost: str | None = None  # why it was not chosen


class Plan(BaseModel):
    model: str
    arch: str
    quant: str | None
    fits: bool
    n_gpu_layers: int | None  # None: CPU backend
    n_layers: int
    ctx: int
    cache_type_k: str
    cache_type_v: str
    flash_attn: Literal["on", "off", "auto"]
    n_cpu_moe: int | None = None
    n_cpu_ffn: int | None = None  # dense FFN weights of the first N layers in RAM, every layer on the GPU
    parallel: int = 1
    mtp: MtpSettings = Field(default_factory=MtpSettings)
    memory: list[MemoryBreakdown] = Field(default_factory=list)
    bytes_per_token: int | None = None
    decode_tok_s: float | None = None  # roofline upper bound, plain decoding
    decode_tok_s_mtp: float | None = None  # the same with MTP at the assumed acceptance
    mtp_acceptance: float | None = None  # what decode_tok_s_mtp assumes
    mtp_acceptance_source: str | None = None  # "measured" or "default"
    candidates: list[Candidate] = Field(default_factory=list)
    bottleneck: str | None = None
    decisions: list[Decision] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def to_launch_spec(self, model_path: str, host: str = "127.0.0.1", port: int = 8080) -> LaunchSpec:
        """The launch this plan describes; serve adds binary-specific details (argv dialect)."""
        return LaunchSpec(
            model=model_path, host=host, port=port,
            n_gpu_layers=self.n_gpu_layers, ctx_size=self.ctx,
            cache_type_k=self.cache_type_k, cache_type_v=self.cache_type_v,
            flash_attn=self.flash_attn, n_cpu_moe=self.n_cpu_moe, n_cpu_ffn=self.n_cpu_ffn, parallel=self.parallel,
            # the plan already chose -ngl/-c; llama.cpp's --fit would second-guess it
            fit="off" if self.n_gpu_layers is not None else None,
            mtp=self.mtp.model_copy(),
        )


class _Trial(BaseModel):
    ngl: int
    n_cpu_moe: int
    ctx: int
    cache: str
    gpu: MemoryBreakdown | None
    cpu: MemoryBreakdown
    fits: bool
    n_cpu_ffn: int = 0


def _budget(hw: PlanHardware) -> int | None:
    if hw.backend == "cpu" or not hw.gpus:
        return None
    return hw.gpus[0].free_bytes


def _trial(info: ModelInfo, hw: PlanHardware, req: PlanRequest, *, ngl: int, n_cpu_moe: int, ctx: int,
           cache: str, mtp: bool, fa: bool, n_cpu_ffn: int = 0) -> _Trial:
    n = mem.trunk_layers(info)
    n_seq = max(1, req.parallel)
    n_max = req.mtp_n_max if mtp else 0
    gpu_budget = _budget(hw)
    on_gpu = gpu_budget is not None
    first_gpu = max(0, n - ngl) if on_gpu else n
    kv = mem.kv_bytes_per_layer(info, ctx, cache, cache, n_seq, req.n_ubatch)
    kv_gpu = sum(b for i, b in kv.items() if i >= first_gpu)
    kv_cpu = sum(kv.values()) - kv_gpu
    w_gpu, w_cpu = mem.weight_split(info, ngl if on_gpu else 0, n_cpu_moe, mtp, n_cpu_ffn if on_gpu else 0)
    state = mem.recurrent_state_bytes(info, n_seq, n_max) or 0
    draft = (mem.mtp_draft_bytes(info, ctx, n_ubatch=req.n_ubatch, type_k=cache, type_v=cache, gpu=on_gpu)
             + (req.sidecar_bytes or 0)) if mtp else 0
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
        gpu = MemoryBreakdown(device=hw.gpus[0].name, weights=w_gpu, kv_cache=kv_gpu,
                              recurrent_state=state_gpu, mtp_draft=draft if ngl >= 1 else 0,
                              compute=compute, margin=MARGIN_BYTES, budget=gpu_budget)
        cpu.recurrent_state = state - state_gpu
        cpu.mtp_draft = draft if ngl < 1 else 0
        cpu.compute = compute if first_gpu > 0 else 0
    else:
        cpu.recurrent_state, cpu.mtp_draft, cpu.compute = state, draft, compute
    fits = (gpu is None or gpu.total <= gpu_budget) and (hw.ram_bytes is None or cpu.total <= hw.ram_bytes)  # type: ignore[operator]
    return _Trial(ngl=ngl, n_cpu_moe=n_cpu_moe, n_cpu_ffn=n_cpu_ffn if on_gpu else 0, ctx=ctx, cache=cache,
                  gpu=gpu, cpu=cpu, fits=fits)


def _ctx_steps(start: int, floor: int) -> list[int]:
    steps, c = [], start
    while c >= max(floor, 1):  # halving a value <= 0 never drops below the floor: stop at 1 whatever comes in
        steps.append(c)
        c //= 2
    return steps or [start]


def _fit_full(info, hw, req, *, ctx_start, ctx_floor, caches, mtp, fa) -> _Trial | None:
    """Largest context (then lightest KV type) with every layer on the GPU."""
    n = mem.trunk_layers(info)
    for ctx in _ctx_steps(ctx_start, ctx_floor):
        for cache in caches:
            t = _trial(info, hw, req, ngl=n + 1, n_cpu_moe=0, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
            if t.fits:
                return t
    return None


def _fit_partial(info, hw, req, *, ctx, cache, mtp, fa) -> _Trial:
    """Most layers (or, for MoE, fewest CPU expert layers) that fit at this context."""
    n = mem.trunk_layers(info)
    if info.layer_expert_bytes and any(info.layer_expert_bytes):
        for k in range(0, n + 1):
            t = _trial(info, hw, req, ngl=n + 1, n_cpu_moe=k, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
            if t.fits:
                return t
    for ngl in range(n - 1, -1, -1):  # n trunk layers on the GPU is everything (the head goes first)
        t = _trial(info, hw, req, ngl=ngl, n_cpu_moe=0, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
        if t.fits:
            return t
    return _trial(info, hw, req, ngl=0, n_cpu_moe=0, ctx=ctx, cache=cache, mtp=mtp, fa=fa)


def _fit_ffn(info, hw, req, *, ctx, cache, mtp, fa) -> _Trial | None:
    """A dense model's other split: every layer, the output head and the MTP layer on the GPU (-ngl
    all), with the dense FFN weights of the fewest first layers in RAM (--n-cpu-ffn). None when the
    FFN sizes are unknown or even every layer's FFN in RAM does not make the rest fit."""
    n = mem.trunk_layers(info)
    if not any((info.layer_ffn_bytes or [])[:n]) or any(info.layer_expert_bytes or []):
        return None
    lo, hi = 1, n  # fitting only gets easier with more FFN in RAM: bisect for the fewest
    best = _trial(info, hw, req, ngl=n + 1, n_cpu_moe=0, n_cpu_ffn=n, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
    if not best.fits:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        t = _trial(info, hw, req, ngl=n + 1, n_cpu_moe=0, n_cpu_ffn=mid, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
        if t.fits:
            best, hi = t, mid
        else:
            lo = mid + 1
    return best


def _split(info, hw, req, *, ctx, cache, mtp, fa) -> tuple[_Trial, list[_Trial]]:
    """When nothing runs whole on the GPU: the placement predicted fastest among the -ngl split (or
    --n-cpu-moe) and the FFN spill (within FFN_SPILL_TOLERANCE, the spill), and the ones it beat."""
    options = [t for t in (_fit_partial(info, hw, req, ctx=ctx, cache=cache, mtp=mtp, fa=fa),
                           _fit_ffn(info, hw, req, ctx=ctx, cache=cache, mtp=mtp, fa=fa)) if t is not None]
    fitting = [t for t in options if t.fits] or options[:1]

    def score(t: _Trial) -> float:
        rank = _speed(info, hw, req, t, mtp).rank
        return rank * (1 + FFN_SPILL_TOLERANCE) if t.n_cpu_ffn else rank

    ranked = sorted(fitting, key=score, reverse=True)
    return ranked[0], ranked[1:]


def _mtp_state(info: ModelInfo, req: PlanRequest) -> tuple[bool, str]:
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


def make_plan(model: ModelInfo | Sequence[ModelInfo], hardware: PlanHardware, request: PlanRequest) -> Plan:
    """Plan one launch. `model` is one file's metadata or several quants of one model (largest
    first is not required); with several, the best quant that fits is chosen."""
    candidates = [model] if isinstance(model, ModelInfo) else sorted(model, key=lambda m: m.file_size_bytes or 0, reverse=True)
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
    on_gpu = _budget(hardware) is not None
    fa = on_gpu or True  # CPU builds take flash attention too (-fa auto picks it on b11434)
    base = candidates[0]
    trained = base.context_length or DEFAULT_CTX
    ctx_target = request.ctx or min(DEFAULT_CTX, trained)
    ctx_floor = request.ctx or MIN_CTX
    caches = [request.cache_type] if request.cache_type else list(KV_LADDER)
    quant_floor = request.ctx or min(QUANT_MIN_CTX, ctx_target)

    if forced is None and len(all_candidates) == 1:
        forced = all_candidates[0]  # one file named: its KV types and placements are still compared
    chosen, trial, quant_reason, candidates_out = _choose_quant(
        all_candidates, hardware, request, forced=forced, ctx_target=ctx_target,
        ctx_floor=ctx_floor if not on_gpu else quant_floor, caches=caches, fa=fa)
    assert trial is not None
    mtp_on, mtp_reason = _mtp_state(chosen, request)
    n = mem.trunk_layers(chosen)

    if len(all_candidates) > 1 or request.quant:
        decisions.append(Decision(what="quant", value=chosen.quant or "?", reason=quant_reason))
    if on_gpu:
        if trial.n_cpu_ffn:
            spilled = mem.ffn_spill_bytes(chosen, trial.n_cpu_ffn)
            decisions.append(Decision(what="-ngl", value="all",
                                      reason=f"all {n} layers, the output head and the MTP layer on the GPU"))
            decisions.append(Decision(
                what="--n-cpu-ffn", value=str(trial.n_cpu_ffn),
                reason=(f"dense FFN weights of the first {trial.n_cpu_ffn} layers ({mem_h(spilled)}) stay in RAM: "
                        "the fewest that let the rest fit; an -ngl split is not predicted faster by more than "
                        f"{FFN_SPILL_TOLERANCE:.0%}")))
        elif trial.ngl > n and not trial.n_cpu_moe:
            decisions.append(Decision(what="-ngl", value="all", reason=f"all {n} layers and the output head fit in VRAM"))
        elif trial.n_cpu_moe:
            decisions.append(Decision(what="-ngl", value="all", reason="attention and shared weights on the GPU"))
            decisions.append(Decision(what="--n-cpu-moe", value=str(trial.n_cpu_moe),
                                      reason=f"routed experts of the first {trial.n_cpu_moe} layers stay in RAM: the rest fill the VRAM"))
        elif trial.ngl == 0:
            decisions.append(Decision(what="-ngl", value="0", reason="not even the output head fits in VRAM"))
        else:
            decisions.append(Decision(what="-ngl", value=str(llama_ngl(chosen, trial.ngl)),
                                      reason=f"the output head, the MTP layer and the last {trial.ngl} of {n} layers "
                                             "fit in VRAM; the rest run on the CPU"))
    if request.ctx:
        decisions.append(Decision(what="ctx", value=str(trial.ctx), reason="requested with --ctx"))
    elif trial.ctx < ctx_target:
        decisions.append(Decision(what="ctx", value=str(trial.ctx),
                                  reason=f"shrunk from {ctx_target} so the KV cache stays in VRAM (never spilled to system RAM)"))
    else:
        decisions.append(Decision(what="ctx", value=str(trial.ctx),
                                  reason=f"default target {DEFAULT_CTX} (trained {trained})" if trial.ctx == DEFAULT_CTX else f"the trained context is {trained}"))
    if request.cache_type:
        cache_reason = "requested"
    elif trial.cache != "f16":
        cache_reason = "f16 KV does not fit at this context; quantized to keep it in VRAM"
    else:
        cache_reason = "f16 fits: no need to quantize"
    decisions.append(Decision(what="-ctk/-ctv", value=trial.cache, reason=cache_reason))
    decisions.append(Decision(what="-fa", value="on", reason="flash attention shrinks the compute buffer and allows a quantized V cache"))
    if mtp_on:
        decisions.append(Decision(what="MTP", value=f"draft-mtp, n-max {request.mtp_n_max}", reason=mtp_reason))
        decisions.append(Decision(what="--parallel", value="1", reason="one slot is the fast path with MTP"))
    else:
        decisions.append(Decision(what="MTP", value="off", reason=mtp_reason))
    parallel = 1 if mtp_on else max(1, request.parallel)
    if mtp_on and request.parallel > 1:
        warnings.append(f"--parallel {request.parallel} ignored: parallel slots with MTP are slower in aggregate")
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
    mtp = MtpSettings(enabled=mtp_on, n_max=request.mtp_n_max,
                      draft_model=request.sidecar if mtp_on else None)
    devices = [d for d in (trial.gpu, trial.cpu) if d is not None]
    sp = _speed(chosen, hardware, request, trial, mtp_on)
    return Plan(model=chosen.name or chosen.path or "?", arch=chosen.arch, quant=chosen.quant, fits=trial.fits,
                n_gpu_layers=(llama_ngl(chosen, trial.ngl) if on_gpu else None), n_layers=n, ctx=trial.ctx,
                cache_type_k=trial.cache, cache_type_v=trial.cache, flash_attn="on",
                n_cpu_moe=trial.n_cpu_moe or None, n_cpu_ffn=trial.n_cpu_ffn or None, parallel=parallel, mtp=mtp,
                memory=devices,
                bytes_per_token=sp.bytes_per_token, decode_tok_s=sp.plain_tok_s, decode_tok_s_mtp=sp.mtp_tok_s,
                mtp_acceptance=sp.acceptance, mtp_acceptance_source=sp.acceptance_source,
                bottleneck=sp.bottleneck, candidates=candidates_out, decisions=decisions, warnings=warnings)


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


def _speed(info: ModelInfo, hw: PlanHardware, req: PlanRequest, t: _Trial, mtp: bool) -> spd.Speed:
    on_gpu = t.gpu is not None
    placement = spd.Placement(n_gpu_layers=t.ngl if on_gpu else 0, n_cpu_moe=t.n_cpu_moe, n_cpu_ffn=t.n_cpu_ffn,
                              ctx=t.ctx, cache=t.cache,
                              on_gpu=on_gpu, mtp=mtp, mtp_n_max=req.mtp_n_max, sidecar=bool(req.sidecar),
                              sidecar_bytes=req.sidecar_bytes)
    bw = spd.Bandwidths(gpu_gbps=hw.gpus[0].bandwidth_gbps if hw.gpus else None,
                        ram_gbps=hw.ram_bandwidth_gbps, unified=hw.unified_memory)
    return spd.predict(info, placement, bw, req.acceptance)


def quant_rule() -> dict:
    """The quant rule as data, for `plan --json` and the compare table's header."""
    return {"ladder": list(QUALITY_LADDER), "default_top": "Q8_0", "speed_fraction": SPEED_FRACTION,
            "default_acceptance": spd.DEFAULT_ACCEPTANCE,
            "text": (f"highest quality up to Q8_0 (more only with --quant) whose predicted speed is >= "
                     f"{SPEED_FRACTION:.0%} of the fastest full fit's; with no full fit, the fastest")}


def quality_bpw(info: ModelInfo) -> float | None:
    """Bits per weight: the quant's nominal width, else the file's size over its parameters."""
    name = (info.quant or "").upper().removeprefix("UD-")
    if name in NOMINAL_BPW:
        return NOMINAL_BPW[name]
    if info.file_size_bytes and info.param_count:
        return info.file_size_bytes * 8 / info.param_count
    return None


def _above_default(info: ModelInfo) -> bool:
    bpw = quality_bpw(info)
    return bpw is not None and bpw > TOP_DEFAULT_BPW + 0.01


def _quality_key(info: ModelInfo) -> tuple[float, int]:
    # for one model a bigger file keeps more bits per weight: the file size breaks ties and orders
    # quants whose width is unknown
    return (quality_bpw(info) or 0.0, info.file_size_bytes or 0)


def _runs(t: _Trial, info: ModelInfo) -> str:
    n = mem.trunk_layers(info)
    if t.gpu is None:
        return "CPU" if t.fits else "does not fit in RAM"
    if not t.fits:
        return "does not fit"
    if t.n_cpu_moe:
        return f"GPU + CPU experts ({t.n_cpu_moe} layers)"
    if t.n_cpu_ffn:
        return f"GPU + {t.n_cpu_ffn} FFN on CPU"
    if t.ngl >= n:
        return "GPU"
    return f"GPU {t.ngl}/{n} layers + CPU"


def _is_full(t: _Trial, info: ModelInfo) -> bool:
    return t.fits and (t.gpu is None or (t.ngl > mem.trunk_layers(info) and not t.n_cpu_moe and not t.n_cpu_ffn))


def _variants(c: ModelInfo, hw: PlanHardware, req: PlanRequest, *, ctx_target: int, ctx_floor: int,
              caches: list[str], fa: bool) -> tuple[list[_Trial], _Trial, dict[int, list[_Trial]]]:
    """Every KV type of one quant at its largest fitting context (else split at the floor context),
    and the one the memory rules take: the largest context fully placed, then the better KV type;
    else the split with the lightest KV type. Also, per trial (by id), the split placements it beat."""
    mtp, _ = _mtp_state(c, req)
    on_gpu = _budget(hw) is not None
    trials: list[_Trial] = []
    beaten: dict[int, list[_Trial]] = {}
    rep: _Trial | None = None
    for cache in caches:
        t = _fit_full(c, hw, req, ctx_start=ctx_target, ctx_floor=ctx_floor, caches=[cache], mtp=mtp, fa=fa)
        if t is None:
            if on_gpu:
                t, losers = _split(c, hw, req, ctx=ctx_floor, cache=cache, mtp=mtp, fa=fa)
                beaten[id(t)] = losers
            else:
                t = _trial(c, hw, req, ngl=0, n_cpu_moe=0, ctx=ctx_floor, cache=cache, mtp=mtp, fa=fa)
        elif rep is None or t.ctx > rep.ctx:
            rep = t
        trials.append(t)
    if rep is None:
        rep = trials[-1]
    return trials, rep, beaten


def _row(c: ModelInfo, hw: PlanHardware, req: PlanRequest, t: _Trial, mtp: bool) -> Candidate:
    """One compare row; `relative` holds the raw rank until _choose_quant divides it by the pace."""
    sp = _speed(c, hw, req, t, mtp)
    return Candidate(quant=c.quant, file_size_bytes=c.file_size_bytes, runs=_runs(t, c), full=_is_full(t, c),
                     fits=t.fits, n_gpu_layers=(llama_ngl(c, t.ngl) if t.gpu else None),
                     n_cpu_moe=t.n_cpu_moe or None, n_cpu_ffn=t.n_cpu_ffn or None, ctx=t.ctx, cache=t.cache,
                     gpu_bytes=t.gpu.total if t.gpu else None, cpu_bytes=t.cpu.total,
                     plain_tok_s=sp.plain_tok_s, mtp_tok_s=sp.mtp_tok_s, assumed=sp.assumed, relative=sp.rank)


def _choose_quant(quants: Sequence[ModelInfo], hw: PlanHardware, req: PlanRequest, *, forced: ModelInfo | None,
                  ctx_target: int, ctx_floor: int, caches: list[str], fa: bool
                  ) -> tuple[ModelInfo, _Trial, str, list[Candidate]]:
    """The quant rule: among the quants that fit, up to Q8_0 unless one was asked for, the highest
    quality whose predicted delivered speed is at least SPEED_FRACTION of the fastest fully placed
    candidate's; when none is fully placed (all split with the CPU), the fastest."""
    rows: list[tuple[ModelInfo, _Trial, Candidate, bool]] = []  # (quant, trial, row, is the quant's pick)
    for c in quants:
        mtp, _ = _mtp_state(c, req)
        trials, rep, beaten = _variants(c, hw, req, ctx_target=ctx_target, ctx_floor=ctx_floor, caches=caches, fa=fa)
        for t in trials:
            row = _row(c, hw, req, t, mtp)
            rows.append((c, t, row, t is rep))
            if t is not rep:
                row.lost = (f"{c.quant} runs with {rep.cache} KV" + (f" at {rep.ctx}" if rep.ctx != t.ctx else "")
                            + (": the largest context, then the better KV type" if _is_full(rep, c)
                               else ": split, the lightest KV keeps most layers on the GPU"))
            for loser in beaten.get(id(t), []):  # the other split of this KV type, shown with why it lost
                other = _row(c, hw, req, loser, mtp)
                share = f" ({other.relative / row.relative:.0%} of its speed)" if row.relative else ""
                other.lost = (f"predicted slower than {row.runs}{share}" if other.relative <= row.relative else
                              f"predicted within {FFN_SPILL_TOLERANCE:.0%} of {row.runs}{share}, which runs no "
                              "attention on the CPU")
                rows.append((c, loser, other, False))
    picks = [(c, t, r) for c, t, r, is_pick in rows if is_pick]

    def allowed(c: ModelInfo) -> bool:
        return forced is c or (forced is None and not _above_default(c))

    eligible = [(c, t, r) for c, t, r in picks if r.fits and allowed(c)]
    # what sets the pace: any KV type of any quant the rule may take (an asked-for quant too)
    pace = [(c, t, r) for c, t, r, _ in rows if r.fits and (c is forced or not _above_default(c))]
    full = [p for p in pace if p[2].full]
    ref = max(full or pace, key=lambda p: p[2].relative or 0.0) if eligible else None
    fastest = ref[2].relative if ref and ref[2].relative else None
    for _, _, r, _ in rows:
        r.relative = round(r.relative / fastest, 3) if fastest and r.relative is not None else None
    where = "on the GPU" if _budget(hw) is not None else "in RAM"
    if ref is None:  # nothing fits at all: the smallest, with the warning make_plan adds
        c, t, r = min(picks, key=lambda p: _quality_key(p[0])) if forced is None else next(p for p in picks if p[0] is forced)
        reason = "nothing fits, even split with the CPU; the smallest quant" if forced is None else f"--quant {forced.quant}"
    elif forced is not None:
        c, t, r = next(p for p in picks if p[0] is forced)
        reason = f"asked for with --quant {forced.quant}"
    else:
        fastest_pick = max(eligible, key=lambda p: p[2].relative or 0.0)
        if full:
            ok = [p for p in eligible if (p[2].relative or 0.0) >= SPEED_FRACTION - 1e-9]
            c, t, r = max(ok or [fastest_pick], key=lambda p: _quality_key(p[0]))
        else:  # every candidate is split with the CPU: each layer there costs a lot, take the fastest
            c, t, r = fastest_pick
        if not full:
            reason = f"no quant fits fully {where}: the fastest split"
        elif r is fastest_pick[2]:
            reason = (f"fastest that fits fully {where}; every higher quant is predicted under "
                      f"{SPEED_FRACTION:.0%} of its speed")
        else:
            reason = (f"highest quality predicted at {SPEED_FRACTION:.0%} or more of the fastest fully placed "
                      f"candidate's speed ({ref[0].quant}, {ref[2].cache} KV): {r.relative:.0%}")
    r.chosen = True
    for qc, qt, qr, is_pick in rows:
        if qr.chosen or not is_pick:
            continue
        if not qr.fits:
            qr.lost = "does not fit, even split with the CPU"
        elif forced is not None:
            qr.lost = f"not the quant asked for (--quant {forced.quant})"
        elif _above_default(qc):
            qr.lost = f"above Q8_0: chosen only when asked (--quant {qc.quant})"
        elif not full:
            qr.lost = f"slower than {c.quant} ({qr.relative:.0%} of the fastest)" if qr.relative is not None else "speed unknown"
        elif _quality_key(qc) > _quality_key(c):
            qr.lost = (f"predicted {qr.relative:.0%} of the fastest's speed, under {SPEED_FRACTION:.0%}"
                       if qr.relative is not None else "speed unknown")
        else:
            qr.lost = f"lower quality than {c.quant}, which is fast enough"
    ordered = sorted(rows, key=lambda x: _quality_key(x[0]))  # the ladder, lowest quality first
    return c, t, reason, [row for _, _, row, _ in ordered]


def mem_h(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / GiB:.1f} GiB"
