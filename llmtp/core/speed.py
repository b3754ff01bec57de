"""Predicted decode speed of one placement: the memory-bandwidth roofline per device, and the gain
MTP is expected to bring at a given draft acceptance.

Decode is memory-bound: every token reads the active weights, the KV cache and the recurrent state
once, each at the bandwidth of the device that holds it. With draft-mtp one step drafts n_max tokens
(each draft reads the nextn layer, the output head and the nextn KV) and verifies them in one batch
that reads the trunk once; llama.cpp's "draft acceptance" is accepted / drafted tokens, so a step
yields 1 + acceptance x n_max tokens on average.

Pure: sizes and bandwidths are values.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from llmtp.core import memory as mem
from llmtp.core.gguf_meta import ModelInfo

# Used when nothing better is known. A measured acceptance (tune) replaces it. 0.6 sits below the
# 0.73 reported for Qwen3.6-27B on a 4090 (shared facts) because prose and warm temperatures draft worse.
DEFAULT_ACCEPTANCE = 0.6
# Only for ranking placements when a bandwidth is unknown (e.g. `plan --vram 12GiB`): what matters
# there is the GPU/RAM ratio, and these are a mid-range discrete card vs dual-channel DDR5.
# Predictions made with them are never shown as tok/s; the candidate says which were assumed.
REFERENCE_GPU_GBPS = 500.0
REFERENCE_RAM_GBPS = 60.0


class Placement(BaseModel):
    """Where one launch puts the model: the trunk layers offloaded (-ngl), CPU expert or FFN layers."""

    n_gpu_layers: int  # trunk layers on the GPU (> trunk: all); any offload also moves the head and nextn blocks
    n_cpu_moe: int = 0
    n_cpu_ffn: int = (
        0  # dense FFN weights of the first N layers in RAM (--n-cpu-ffn); the rest of those layers on the GPU
    )
    ctx: int
    cache: str = "f16"
    on_gpu: bool = True  # False: CPU backend, everything in system RAM
    mtp: bool = False
    mtp_n_max: int = 3
    sidecar_bytes: int | None = None  # Gemma 4 draft model; None with mtp and a sidecar = unknown
    sidecar: bool = False


class Bandwidths(BaseModel):
    gpu_gbps: float | None = None
    ram_gbps: float | None = None
    unified: bool = False  # one memory: layers "on the CPU" read at the same bandwidth


class Speed(BaseModel):
    gpu_bytes: int  # trunk bytes read per token on the GPU
    cpu_bytes: int  # ... and in system RAM
    draft_bytes: int | None = None  # bytes one MTP draft step reads; None = unknown, 0 without MTP
    acceptance: float | None = None  # the acceptance the MTP figure assumes
    acceptance_source: str | None = None  # "measured" or "default"
    plain_tok_s: float | None = None  # roofline with the hardware's own bandwidths; None = one is unknown
    mtp_tok_s: float | None = None
    rank_plain_tok_s: float = 0.0  # the same, with reference bandwidths standing in for unknown ones
    rank_mtp_tok_s: float | None = None
    assumed: list[str] = Field(default_factory=list)  # bandwidths that were assumed for ranking
    bottleneck: str | None = None

    @property
    def bytes_per_token(self) -> int:
        return self.gpu_bytes + self.cpu_bytes

    @property
    def rank(self) -> float:
        """What a choice between placements compares: delivered speed, with MTP where it is on."""
        return self.rank_mtp_tok_s if self.rank_mtp_tok_s is not None else self.rank_plain_tok_s


def _active_fraction(info: ModelInfo) -> float:
    if info.expert_count and info.expert_used_count:
        return info.expert_used_count / info.expert_count
    return 1.0


def trunk_bytes(info: ModelInfo, p: Placement) -> tuple[int, int]:
    """(gpu, cpu) bytes one decoded token reads: weights it passes through (routed experts at the
    used/total share), the KV cache at the planned context, one copy of the recurrent state. The
    token embedding is one row per token, not counted."""
    n = mem.trunk_layers(info)
    ngl = p.n_gpu_layers if p.on_gpu else 0
    w_gpu, w_cpu = mem.weight_split(info, ngl, p.n_cpu_moe, mtp=False, n_cpu_ffn=p.n_cpu_ffn)
    w_cpu = max(0, w_cpu - info.token_embd_bytes)
    frac = _active_fraction(info)
    experts = info.layer_expert_bytes or []
    if experts and frac < 1:
        first_gpu = max(0, n - ngl)
        exp_gpu = sum(e for i, e in enumerate(experts[:n]) if i >= first_gpu and i >= p.n_cpu_moe)
        exp_cpu = sum(experts[:n]) - exp_gpu
        w_gpu -= int(exp_gpu * (1 - frac))
        w_cpu -= int(exp_cpu * (1 - frac))
    first_gpu = max(0, n - ngl)
    kv = mem.kv_bytes_per_layer(info, p.ctx, p.cache, p.cache)
    kv_gpu = sum(b for i, b in kv.items() if i >= first_gpu)
    kv_cpu = sum(kv.values()) - kv_gpu
    state = mem.recurrent_state_bytes(info) or 0
    state_gpu = int(state * mem.recurrent_gpu_share(info, ngl))  # each layer's state lives with its layer
    return w_gpu + kv_gpu + state_gpu, w_cpu + kv_cpu + (state - state_gpu)


def draft_bytes(info: ModelInfo, p: Placement) -> int | None:
    """Bytes one MTP draft step reads: the nextn layer(s), the output head (the draft samples from
    full-vocabulary logits) and the nextn KV; for a sidecar, its whole file."""
    if not p.mtp:
        return 0
    if p.sidecar:
        return p.sidecar_bytes
    n = mem.trunk_layers(info)
    layers = info.layer_weight_bytes or []
    nextn = sum(layers[n : n + info.nextn_predict_layers])
    embd = info.token_embd_bytes
    head = max(0, (info.other_weight_bytes or 0) - embd)
    return nextn + head + mem.nextn_kv_bytes(info, p.ctx, p.cache, p.cache)


def mtp_tokens_per_step(acceptance: float, n_max: int) -> float:
    return 1.0 + acceptance * n_max


def _seconds(gpu_bytes: int, cpu_bytes: int, gpu_bw: float, ram_bw: float) -> float:
    return gpu_bytes / (gpu_bw * 1e9) + cpu_bytes / (ram_bw * 1e9)


def predict(info: ModelInfo, p: Placement, bw: Bandwidths, acceptance: float | None = None) -> Speed:
    """Plain and MTP decode tok/s of one placement. `acceptance` None = DEFAULT_ACCEPTANCE."""
    gpu_b, cpu_b = trunk_bytes(info, p)
    if not p.on_gpu:  # CPU backend: every byte is in system RAM
        gpu_b, cpu_b = 0, gpu_b + cpu_b
    gpu_bw = bw.gpu_gbps if not bw.unified else (bw.gpu_gbps or bw.ram_gbps)
    ram_bw = bw.ram_gbps if not bw.unified else (bw.ram_gbps or bw.gpu_gbps)
    assumed: list[str] = []
    r_gpu, r_ram = gpu_bw, ram_bw
    if gpu_b and gpu_bw is None:
        r_gpu = REFERENCE_GPU_GBPS
        assumed.append(f"GPU memory bandwidth unknown: ranked as {REFERENCE_GPU_GBPS:g} GB/s")
    if cpu_b and ram_bw is None:
        r_ram = REFERENCE_RAM_GBPS
        assumed.append(f"system RAM bandwidth unknown: ranked as {REFERENCE_RAM_GBPS:g} GB/s")
    r_gpu, r_ram = r_gpu or REFERENCE_GPU_GBPS, r_ram or REFERENCE_RAM_GBPS
    t_rank = _seconds(gpu_b, cpu_b, r_gpu, r_ram)
    t_real = None if assumed else _seconds(gpu_b, cpu_b, r_gpu, r_ram)
    d_bytes = draft_bytes(info, p)
    src = "measured" if acceptance is not None else "default"
    acc = DEFAULT_ACCEPTANCE if acceptance is None else acceptance
    out = Speed(
        gpu_bytes=gpu_b,
        cpu_bytes=cpu_b,
        draft_bytes=d_bytes,
        assumed=assumed,
        rank_plain_tok_s=(1 / t_rank) if t_rank > 0 else 0.0,
    )
    if t_real:
        out.plain_tok_s = round(1 / t_real, 1)
        cpu_t = cpu_b / (r_ram * 1e9)
        out.bottleneck = (
            "system RAM bandwidth (layers on the CPU)"
            if gpu_b and cpu_t > t_real / 2
            else "GPU memory bandwidth"
            if gpu_b
            else "system RAM bandwidth"
        )
    elif assumed:
        out.bottleneck = assumed[0].split(" unknown")[0] + " (value unknown: no estimate)"
    if p.mtp and d_bytes is not None and t_rank > 0:
        draft_on_gpu = p.on_gpu and p.n_gpu_layers >= 1  # b11434 offloads the head and nextn blocks first
        out.acceptance, out.acceptance_source = acc, src
        steps = mtp_tokens_per_step(acc, p.mtp_n_max)
        draft_t_rank = d_bytes / ((r_gpu if draft_on_gpu else r_ram) * 1e9)
        out.rank_mtp_tok_s = steps / (t_rank + p.mtp_n_max * draft_t_rank)
        if t_real:
            out.mtp_tok_s = round(steps / (t_real + p.mtp_n_max * draft_t_rank), 1)
    return out
