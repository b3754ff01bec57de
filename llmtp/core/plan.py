"""The fit planner: quant, -ngl, context, KV cache types, flash attention, --n-cpu-moe and MTP for one
model on given hardware, with the predicted memory per device and a reason for every decision.

Pure: hardware, model metadata and the request are values; nothing is read or probed here. This
module holds the planner's data and make_plan's decisions; where a quant's layers go is core/placement.py,
which quant wins is core/quant_choice.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core import memory as mem
from llmtp.core.catalog import NOMINAL_BPW
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.plan_review import check_ctx, device_wording, reword_fit_warning, warnings_for

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
    force: bool = False  # plan a --ctx far beyond the trained context (core.plan_review.check_ctx)


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
    # core.placement and core.quant_choice build on this module's models: imported where used, after them
    from llmtp.core import placement as pl
    from llmtp.core.quant_choice import choose_quant

    on_gpu = pl.budget(hardware) is not None
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
        all_candidates, hardware, request, forced=forced, ctx_target=ctx_target,
        ctx_floor=ctx_floor if not on_gpu else quant_floor, caches=caches, fa=fa)
    assert trial is not None
    mtp_on, mtp_reason = mtp_state(chosen, request)
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
    sp = pl.speed(chosen, hardware, request, trial, mtp_on)
    warnings = reword_fit_warning(warnings, request.ctx) + warnings_for(
        decode_tok_s=sp.mtp_tok_s if sp.mtp_tok_s is not None else sp.plain_tok_s, memory=devices, on_gpu=on_gpu,
        requested_ctx=request.ctx, trained=base.context_length, fits=trial.fits)
    for d in decisions:
        d.reason = device_wording(d.reason, on_gpu)
    for c in candidates_out:
        c.lost = device_wording(c.lost, on_gpu) if c.lost else c.lost
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


def mem_h(n: int | None) -> str:
    if n is None:
        return "unknown"
    return f"{n / GiB:.1f} GiB"
