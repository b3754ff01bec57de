"""The fit planner: quant, -ngl, context, KV cache types, flash attention, --n-cpu-moe and MTP for one
model on given hardware, with the predicted memory per device and a reason for every decision.

Pure: hardware, model metadata and the request are values; nothing is read or probed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core import memory as mem
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings

MiB = mem.MiB
GiB = 1024 * MiB
Backend = Literal["cuda", "rocm", "metal", "vulkan", "cpu"]

DEFAULT_CTX = 32768  # what a chat/coding session wants when the user names no context
MIN_CTX = 4096  # below this a plan is not useful; shrinking stops here
QUANT_MIN_CTX = 8192  # a quant "fits" when it runs fully on the GPU at this context or more
PARTIAL_MIN_FRACTION = 0.75  # partial offload worth choosing over a smaller quant
MARGIN_BYTES = 512 * MiB  # driver, desktop and fragmentation slack per GPU
KV_LADDER = ("f16", "q8_0", "q4_0")


class PlanDevice(BaseModel):
    name: str
    free_bytes: int  # memory the plan may use on this device
    bandwidth_gbps: float | None = None  # GB/s; None = unknown (no roofline)


class PlanHardware(BaseModel):
    gpus: list[PlanDevice] = Field(default_factory=list)
    ram_bytes: int | None = None  # available system RAM
    ram_bandwidth_gbps: float | None = None
    unified_memory: bool = False  # Apple / APU: the GPU budget is system RAM
    backend: Backend = "cpu"


class PlanRequest(BaseModel):
    ctx: int | None = None  # None: choose (up to DEFAULT_CTX, at most the trained context)
    parallel: int = 1
    no_mtp: bool = False
    quant: str | None = None  # force one quant of the candidates
    cache_type: str | None = None  # force -ctk/-ctv
    n_ubatch: int = 512
    mtp_n_max: int = 3  # upstream default of --spec-draft-n-max
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
    parallel: int = 1
    mtp: MtpSettings = Field(default_factory=MtpSettings)
    memory: list[MemoryBreakdown] = Field(default_factory=list)
    bytes_per_token: int | None = None
    decode_tok_s: float | None = None  # roofline upper bound
    bottleneck: str | None = None
    decisions: list[Decision] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)

    def to_launch_spec(self, model_path: str, host: str = "127.0.0.1", port: int = 8080) -> LaunchSpec:
        """The launch this plan describes; serve adds binary-specific details (argv dialect)."""
        return LaunchSpec(
            model=model_path, host=host, port=port,
            n_gpu_layers=self.n_gpu_layers, ctx_size=self.ctx,
            cache_type_k=self.cache_type_k, cache_type_v=self.cache_type_v,
            flash_attn=self.flash_attn, n_cpu_moe=self.n_cpu_moe, parallel=self.parallel,
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


def _budget(hw: PlanHardware) -> int | None:
    if hw.backend == "cpu" or not hw.gpus:
        return None
    return hw.gpus[0].free_bytes


def _trial(info: ModelInfo, hw: PlanHardware, req: PlanRequest, *, ngl: int, n_cpu_moe: int, ctx: int,
           cache: str, mtp: bool, fa: bool) -> _Trial:
    n = mem.trunk_layers(info)
    n_seq = max(1, req.parallel)
    n_max = req.mtp_n_max if mtp else 0
    gpu_budget = _budget(hw)
    on_gpu = gpu_budget is not None
    first_gpu = max(0, n - ngl) if on_gpu else n
    kv = mem.kv_bytes_per_layer(info, ctx, cache, cache, n_seq, req.n_ubatch)
    kv_gpu = sum(b for i, b in kv.items() if i >= first_gpu)
    kv_cpu = sum(kv.values()) - kv_gpu
    w_gpu, w_cpu = mem.weight_split(info, ngl if on_gpu else 0, n_cpu_moe, mtp)
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
        # recurrent state and the MTP draft context follow the offloaded layers (all on GPU at full offload)
        full = ngl > n
        gpu = MemoryBreakdown(device=hw.gpus[0].name, weights=w_gpu, kv_cache=kv_gpu,
                              recurrent_state=state if full else 0, mtp_draft=draft if full else 0,
                              compute=compute, margin=MARGIN_BYTES, budget=gpu_budget)
        if not full:
            cpu.recurrent_state, cpu.mtp_draft = state, draft
            cpu.compute = compute if first_gpu > 0 else 0
    else:
        cpu.recurrent_state, cpu.mtp_draft, cpu.compute = state, draft, compute
    fits = (gpu is None or gpu.total <= gpu_budget) and (hw.ram_bytes is None or cpu.total <= hw.ram_bytes)  # type: ignore[operator]
    return _Trial(ngl=ngl, n_cpu_moe=n_cpu_moe, ctx=ctx, cache=cache, gpu=gpu, cpu=cpu, fits=fits)


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
    for ngl in range(n, -1, -1):
        t = _trial(info, hw, req, ngl=ngl, n_cpu_moe=0, ctx=ctx, cache=cache, mtp=mtp, fa=fa)
        if t.fits:
            return t
    return _trial(info, hw, req, ngl=0, n_cpu_moe=0, ctx=ctx, cache=cache, mtp=mtp, fa=fa)


def _gpu_fraction(t: _Trial, info: ModelInfo) -> float:
    n = max(1, mem.trunk_layers(info))
    if t.n_cpu_moe:
        return 1 - t.n_cpu_moe / n * 0.9  # experts are most of a MoE layer
    return min(t.ngl, n) / n


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
    if request.quant:
        forced = [c for c in candidates if (c.quant or "").upper() == request.quant.upper()]
        if forced:
            candidates = forced
    on_gpu = _budget(hardware) is not None
    fa = on_gpu or True  # CPU builds take flash attention too (-fa auto picks it on b11434)
    base = candidates[0]
    trained = base.context_length or DEFAULT_CTX
    ctx_target = request.ctx or min(DEFAULT_CTX, trained)
    ctx_floor = request.ctx or MIN_CTX
    caches = [request.cache_type] if request.cache_type else list(KV_LADDER)
    quant_floor = request.ctx or min(QUANT_MIN_CTX, ctx_target)

    chosen: ModelInfo | None = None
    trial: _Trial | None = None
    quant_reason = ""
    if not on_gpu:
        chosen = candidates[0] if len(candidates) == 1 else None
        for c in candidates:
            mtp, _ = _mtp_state(c, request)
            t = _fit_full(c, hardware, request, ctx_start=ctx_target, ctx_floor=ctx_floor, caches=caches, mtp=mtp, fa=fa)
            if t is not None:
                chosen, trial = c, t
                quant_reason = "largest quant that fits in system RAM"
                break
    else:
        for c in candidates:
            mtp, _ = _mtp_state(c, request)
            t = _fit_full(c, hardware, request, ctx_start=ctx_target, ctx_floor=quant_floor, caches=caches, mtp=mtp, fa=fa)
            if t is not None:
                chosen, trial = c, t
                quant_reason = (f"largest quant that fits fully in {mem_h(_budget(hardware))} of VRAM "
                                f"at {t.ctx} context or more")
                break
        if trial is None:
            for c in candidates:
                mtp, _ = _mtp_state(c, request)
                t = _fit_partial(c, hardware, request, ctx=quant_floor, cache=caches[-1] if not request.cache_type else caches[0], mtp=mtp, fa=fa)
                if t.fits and _gpu_fraction(t, c) >= PARTIAL_MIN_FRACTION:
                    chosen, trial = c, t
                    quant_reason = (f"no quant fits fully; largest that keeps {_gpu_fraction(t, c):.0%} of the "
                                    f"model on the GPU")
                    break
            if trial is None:
                c = candidates[-1]
                mtp, _ = _mtp_state(c, request)
                chosen = c
                trial = _fit_partial(c, hardware, request, ctx=quant_floor, cache=caches[-1], mtp=mtp, fa=fa)
                quant_reason = "smallest quant: nothing fits better"
    if trial is None:  # nothing fits (one candidate on CPU sets `chosen` without a trial)
        chosen = candidates[-1]
        mtp, _ = _mtp_state(chosen, request)
        trial = _trial(chosen, hardware, request, ngl=0, n_cpu_moe=0, ctx=ctx_floor, cache=caches[-1], mtp=mtp, fa=fa)
        quant_reason = "smallest quant; it does not fit in RAM either"
    assert trial is not None
    mtp_on, mtp_reason = _mtp_state(chosen, request)
    n = mem.trunk_layers(chosen)

    if len(candidates) > 1 or request.quant:
        decisions.append(Decision(what="quant", value=chosen.quant or "?", reason=quant_reason))
    if on_gpu:
        if trial.ngl > n and not trial.n_cpu_moe:
            decisions.append(Decision(what="-ngl", value="all", reason=f"all {n} layers and the output head fit in VRAM"))
        elif trial.n_cpu_moe:
            decisions.append(Decision(what="-ngl", value="all", reason="attention and shared weights on the GPU"))
            decisions.append(Decision(what="--n-cpu-moe", value=str(trial.n_cpu_moe),
                                      reason=f"routed experts of the first {trial.n_cpu_moe} layers stay in RAM: the rest fill the VRAM"))
        else:
            decisions.append(Decision(what="-ngl", value=str(trial.ngl),
                                      reason=f"{trial.ngl} of {n} layers fit in VRAM; the rest run on the CPU"))
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
    bpt, tok_s, bottleneck = _roofline(chosen, hardware, trial)
    return Plan(model=chosen.name or chosen.path or "?", arch=chosen.arch, quant=chosen.quant, fits=trial.fits,
                n_gpu_layers=(min(trial.ngl, n + 1) if on_gpu else None), n_layers=n, ctx=trial.ctx,
                cache_type_k=trial.cache, cache_type_v=trial.cache, flash_attn="on",
                n_cpu_moe=trial.n_cpu_moe or None, parallel=parallel, mtp=mtp, memory=devices,
                bytes_per_token=bpt, decode_tok_s=tok_s, bottleneck=bottleneck, decisions=decisions,
                warnings=warnings)


def _active_fraction(info: ModelInfo) -> float:
    if info.expert_count and info.expert_used_count:
        return info.expert_used_count / info.expert_count
    return 1.0


def _roofline(info: ModelInfo, hw: PlanHardware, t: _Trial) -> tuple[int | None, float | None, str | None]:
    """Decode is memory-bound: each token reads the active weights and the KV cache once."""
    frac = _active_fraction(info)
    experts = sum(info.layer_expert_bytes) if info.layer_expert_bytes else 0

    def active(device: MemoryBreakdown | None) -> int:
        if device is None:
            return 0
        w = device.weights
        if experts and frac < 1:
            total_w = (t.gpu.weights if t.gpu else 0) + t.cpu.weights
            share = experts * (w / total_w if total_w else 0)
            w = int(w - share + share * frac)
        return w + device.kv_cache + device.recurrent_state

    gpu_bytes = active(t.gpu)
    cpu_bytes = active(t.cpu) - (info.tensor_types or {}).get("token_embd", 0)  # one embedding row per token
    cpu_bytes = max(0, cpu_bytes)
    total = gpu_bytes + cpu_bytes
    gpu_bw = hw.gpus[0].bandwidth_gbps if hw.gpus else None
    seconds = 0.0
    if gpu_bytes:
        if gpu_bw is None:
            return total, None, "GPU memory bandwidth (value unknown: no estimate)"
        seconds += gpu_bytes / (gpu_bw * 1e9)
    if cpu_bytes:
        if hw.ram_bandwidth_gbps is None:
            return total, None, "system RAM bandwidth (value unknown: no estimate)"
        seconds += cpu_bytes / (hw.ram_bandwidth_gbps * 1e9)
    if seconds <= 0:
        return total, None, None
    cpu_time = cpu_bytes / (hw.ram_bandwidth_gbps * 1e9) if cpu_bytes else 0.0
    bottleneck = ("system RAM bandwidth (layers on the CPU)" if cpu_time > seconds / 2
                  else "GPU memory bandwidth" if gpu_bytes else "system RAM bandwidth")
    return total, round(1 / seconds, 1), bottleneck


def mem_h(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / GiB:.1f} GiB"
