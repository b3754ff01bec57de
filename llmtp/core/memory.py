"""The memory model: bytes of weights, KV cache, recurrent state, MTP draft context and compute buffers.

Pure functions of a ModelInfo and launch values. Formulas follow llama.cpp build 11434
(src/llama-kv-cache.cpp, llama-memory-recurrent.cpp, llama-hparams.cpp) and were checked against the
buffer sizes llama-server prints (tests/fixtures/server-logs/).
"""

from __future__ import annotations

from llmtp.core.gguf_meta import ModelInfo

MiB = 1024 * 1024

# Bytes per cached value: ggml block size / values per block (ggml.c type traits).
CACHE_TYPE_BYTES: dict[str, float] = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}

# MTP draft context on a GPU (shared/llama-cpp-facts.md, "Memory", Qwen3.6-27B on CUDA): compute
# buffers of about 64/256/512 MiB at 16k/64k/128k context (4 KiB per context token) plus ~500 MiB
# of verify headroom. Not measurable here (no GPU); calibration after a real launch corrects it.
MTP_DRAFT_GPU_BYTES_PER_TOKEN = 4096
MTP_VERIFY_HEADROOM_GPU_BYTES = 500 * MiB

# Compute buffers, measured on llama-server b11434 (CPU, -fa on, `sched_reserve: compute buffer size`)
# for llama (SmolLM2-135M) and qwen35 models of nine shapes; see docs/planning.md, "Compute buffers".
# Per ubatch token, at the FFN step (the peak once n_ff > n_embd): 5 f32 rows of n_embd (residual,
# norm, FFN input, ...) and 3 of n_ff (gate, up, their product), plus ~40 B of positions and ids.
ACT_EMBD_ROWS, ACT_FF_ROWS, ACT_FIXED_BYTES = 5, 3, 40
# The MTP draft graph is one dense block: attention step ~4 f32 rows of n_embd, 3 of the Q width and
# 8 of the KV width, plus the mask; FFN step 2 rows of n_embd and 3 of n_ff without the mask (dead
# once the only attention ran). As with the FFN rows, Q/KV rows narrower than n_embd (toy models)
# fit in freed blocks.
DRAFT_ATTN_EMBD_ROWS, DRAFT_ATTN_Q_ROWS, DRAFT_ATTN_KV_ROWS, DRAFT_FFN_EMBD_ROWS = 4, 3, 8, 2


def trunk_layers(info: ModelInfo) -> int:
    if info.trunk_layers is not None:
        return info.trunk_layers
    if info.block_count is not None:
        return info.block_count - info.nextn_predict_layers
    return 0


def _kv_heads(info: ModelInfo, layer: int) -> int:
    if not info.head_count_kv:
        return 0
    return info.head_count_kv[layer] if layer < len(info.head_count_kv) else info.head_count_kv[-1]


def is_swa(info: ModelInfo, layer: int) -> bool:
    pattern = info.sliding_window_pattern
    return bool(pattern) and layer < len(pattern) and pattern[layer] and bool(info.sliding_window)  # type: ignore[index]


def attention_layers(info: ModelInfo) -> list[int]:
    """Trunk layers that keep a KV cache (hybrid recurrent layers and nextn layers do not)."""
    recurrent = set(info.recurrent_layers)
    return [i for i in range(trunk_layers(info)) if i not in recurrent and _kv_heads(info, i) > 0]


def kv_cells(info: ModelInfo, layer: int, n_ctx: int, n_seq: int = 1, n_ubatch: int = 512) -> int:
    """Cells a layer keeps: n_ctx, or for a sliding-window layer the window per sequence + one ubatch,
    padded to 256 (llama-kv-cache-iswa.cpp: GGML_PAD(n_swa*n_seq_max + n_ubatch, 256))."""
    if is_swa(info, layer):
        swa = -(-(info.sliding_window * n_seq + n_ubatch) // 256) * 256  # type: ignore[operator]
        return min(n_ctx, swa)
    return n_ctx


def kv_layer_bytes(
    info: ModelInfo,
    layer: int,
    n_ctx: int,
    type_k: str = "f16",
    type_v: str = "f16",
    n_seq: int = 1,
    n_ubatch: int = 512,
) -> int:
    swa = is_swa(info, layer)
    k_len = (info.key_length_swa if swa and info.key_length_swa else info.key_length) or 0
    v_len = (info.value_length_swa if swa and info.value_length_swa else info.value_length) or 0
    per_cell = _kv_heads(info, layer) * (k_len * CACHE_TYPE_BYTES[type_k] + v_len * CACHE_TYPE_BYTES[type_v])
    return int(per_cell * kv_cells(info, layer, n_ctx, n_seq, n_ubatch))


def kv_known(info: ModelInfo) -> bool:
    return bool(info.head_count_kv) and info.key_length is not None and info.value_length is not None


def kv_bytes_per_layer(
    info: ModelInfo, n_ctx: int, type_k: str = "f16", type_v: str = "f16", n_seq: int = 1, n_ubatch: int = 512
) -> dict[int, int]:
    return {i: kv_layer_bytes(info, i, n_ctx, type_k, type_v, n_seq, n_ubatch) for i in attention_layers(info)}


def recurrent_state_bytes(info: ModelInfo, n_seq: int = 1, mtp_n_max: int = 0) -> int | None:
    """f32 recurrent state; with draft-mtp each sequence keeps 1 + n_max copies for rollback."""
    if not info.recurrent_layers:
        return 0
    if info.ssm_state_bytes_per_seq is None:
        return None
    return info.ssm_state_bytes_per_seq * n_seq * (1 + mtp_n_max)


def nextn_kv_bytes(info: ModelInfo, n_ctx: int, type_k: str = "f16", type_v: str = "f16") -> int:
    """KV of the nextn (MTP) layers: the draft context keeps them at the full n_ctx."""
    n = trunk_layers(info)
    total = 0
    for layer in range(n, n + info.nextn_predict_layers):
        heads = _kv_heads(info, layer)
        total += int(
            heads
            * ((info.key_length or 0) * CACHE_TYPE_BYTES[type_k] + (info.value_length or 0) * CACHE_TYPE_BYTES[type_v])
            * n_ctx
        )
    return total


def mtp_draft_bytes(
    info: ModelInfo, n_ctx: int, *, n_ubatch: int = 512, type_k: str = "f16", type_v: str = "f16", gpu: bool = False
) -> int:
    """MTP draft context: the nextn layers' KV at full context + the draft graph's compute buffer.
    On the CPU build that buffer is measured: one dense block of n_ubatch tokens (attention step
    with the mask, or FFN step without it, whichever is larger); the target context's buffer does
    not grow with MTP. On a GPU: the facts' figures (see MTP_DRAFT_GPU_BYTES_PER_TOKEN)."""
    kv = nextn_kv_bytes(info, n_ctx, type_k, type_v)
    if gpu:
        return kv + MTP_DRAFT_GPU_BYTES_PER_TOKEN * n_ctx + MTP_VERIFY_HEADROOM_GPU_BYTES
    n_embd = info.embedding_length or 0
    q = (info.head_count or 0) * (info.key_length or 0)
    kv_width = max(info.head_count_kv or [0]) * (info.key_length or 0)
    qkv = 4 * (DRAFT_ATTN_Q_ROWS * q + DRAFT_ATTN_KV_ROWS * kv_width) if q >= n_embd else 0
    mask = n_ctx * n_ubatch * 2
    attn = mask + n_ubatch * (4 * DRAFT_ATTN_EMBD_ROWS * n_embd + qkv + ACT_FIXED_BYTES)
    ff_row = n_ubatch * 4 * _ff_length(info)  # one of the FFN step's n_ff-wide tensors
    ffn = n_ubatch * (4 * DRAFT_FFN_EMBD_ROWS * n_embd + ACT_FIXED_BYTES) + ACT_FF_ROWS * ff_row
    # the mask's block is free by the FFN step: as many n_ff-wide tensors as fit in it reuse it
    if ff_row:
        ffn -= min(ACT_FF_ROWS, mask // ff_row) * ff_row
    return kv + max(attn, ffn)


def compute_buffer_bytes(info: ModelInfo, n_ctx: int, n_ubatch: int = 512, flash_attn: bool = True) -> int | None:
    """Worst-case graph buffer of the target context (llama.cpp reserves a graph of n_ubatch tokens
    against the whole cache): activations at the peak step plus the KQ mask (n_ctx x n_ubatch, f16
    with flash attention, f32 without). Without flash attention the f32 KQ scores (n_head x n_ctx x
    n_ubatch) dominate. Measured on the CPU build; a GPU backend's differences are left to
    calibration (predicted vs reported after each launch)."""
    n_embd = info.embedding_length
    if n_embd is None:
        return None
    n_ff = _ff_length(info)
    # Where n_ff <= n_embd (only in toy models) the FFN rows fit in blocks the attention step freed.
    ff_rows = ACT_FF_ROWS * n_ff if n_ff > n_embd else 0
    per_token = 4 * (ACT_EMBD_ROWS * n_embd + ff_rows) + ACT_FIXED_BYTES
    if flash_attn:
        total = n_ubatch * per_token + n_ctx * n_ubatch * 2
    else:
        # measured on SmolLM2 (9 heads): 4 B per score + 4 B of f32 mask per (context, ubatch) cell,
        # and ~26 B per n_embd element of each token beside them
        scores = n_ctx * n_ubatch * (4 * (info.head_count or 0) + 4) + n_ubatch * 26 * n_embd
        total = max(n_ubatch * per_token + n_ctx * n_ubatch * 4, scores)
    return total


def _ff_length(info: ModelInfo) -> int:
    """FFN width one token goes through: the dense width, or the routed experts it uses (plus a
    shared expert where the file has one). Where a catalog entry states none, 3x n_embd (the usual
    SwiGLU ratio) stands in."""
    if info.expert_count and info.expert_used_count and info.expert_feed_forward_length:
        return info.expert_feed_forward_length * info.expert_used_count + (info.expert_shared_feed_forward_length or 0)
    return info.feed_forward_length or 3 * (info.embedding_length or 0)


def weight_split(
    info: ModelInfo, n_gpu_layers: int, n_cpu_moe: int = 0, mtp: bool = False, n_cpu_ffn: int = 0
) -> tuple[int, int]:
    """(gpu_bytes, cpu_bytes) of weights with the LAST n_gpu_layers trunk layers on the GPU (> n_trunk:
    all of them). llama.cpp b11434 offloads the output layer first and then the blocks from the top,
    nextn blocks included (src/llama-model.cpp, i_gpu_start = n_layer_all + 1 - N), so any offload
    puts the output head and the nextn blocks on the GPU: see placement.llama_ngl for the -ngl value. The
    token embedding always stays in host memory. The nextn blocks load only with MTP. --n-cpu-moe keeps the routed
    experts of the first N layers in host memory; --n-cpu-ffn (or the same -ot override) their dense
    FFN weights (ffn_up/ffn_gate/ffn_down), while attention, norms and the rest of the layer stay."""
    n = trunk_layers(info)
    layers = info.layer_weight_bytes or []
    experts = info.layer_expert_bytes or []
    ffns = info.layer_ffn_bytes or []
    other = info.other_weight_bytes or 0
    embd = info.token_embd_bytes
    head = max(0, other - embd)
    nextn = sum(layers[n : n + info.nextn_predict_layers]) if mtp else 0
    gpu = cpu = 0
    first_gpu = max(0, n - n_gpu_layers)
    for i in range(min(n, len(layers))):
        exp = experts[i] if i < len(experts) else 0
        ffn = ffns[i] if i < len(ffns) else 0
        if i >= first_gpu:
            moved = (exp if i < n_cpu_moe else 0) + (ffn if i < n_cpu_ffn else 0)
            gpu += layers[i] - moved
            cpu += moved
        else:
            cpu += layers[i]
    if n_gpu_layers >= 1:
        gpu += head + nextn
    else:
        cpu += head + nextn
    cpu += embd
    return gpu, cpu


def recurrent_gpu_share(info: ModelInfo, n_gpu_layers: int) -> float:
    """Share of the recurrent state on the GPU: each recurrent layer's state lives with its layer."""
    rec = info.recurrent_layers
    if not rec:
        return 1.0 if n_gpu_layers >= 1 else 0.0
    first_gpu = max(0, trunk_layers(info) - n_gpu_layers)
    return sum(1 for i in rec if i >= first_gpu) / len(rec)


def ffn_spill_bytes(info: ModelInfo, n_cpu_ffn: int) -> int:
    """Dense FFN bytes of the first n_cpu_ffn trunk layers: what --n-cpu-ffn moves to system RAM."""
    return sum((info.layer_ffn_bytes or [])[: min(n_cpu_ffn, trunk_layers(info))])
