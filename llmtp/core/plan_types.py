"""The planner's data, pure: its inputs (hardware, request), its tunable constants, and the Plan it returns
with the candidates it weighed. core.plan decides; core.placement and core.quant_choice read these.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core import memory as mem
from llmtp.core.catalog import NOMINAL_BPW
from llmtp.core.concurrency import ClientsPlan
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
    # model (services.stores.calibration); scales the prediction so later plans learn from llama-server
    corrections: dict[str, float] = Field(default_factory=dict)
    force: bool = False  # plan a --ctx far beyond the trained context (core.plan_review.check_ctx)
    # `--clients N` (core.concurrency.plan_clients): its slots are `parallel`; it may turn MTP off
    clients: ClientsPlan | None = None


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
            model=model_path,
            host=host,
            port=port,
            n_gpu_layers=self.n_gpu_layers,
            ctx_size=self.ctx,
            cache_type_k=self.cache_type_k,
            cache_type_v=self.cache_type_v,
            flash_attn=self.flash_attn,
            n_cpu_moe=self.n_cpu_moe,
            n_cpu_ffn=self.n_cpu_ffn,
            parallel=self.parallel,
            # the plan already chose -ngl/-c; llama.cpp's --fit would second-guess it
            fit="off" if self.n_gpu_layers is not None else None,
            mtp=self.mtp.model_copy(),
        )
