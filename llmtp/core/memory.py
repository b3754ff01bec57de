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
    "f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32, "q5_1": 24 / 32, "q5_0": 22 / 32,
    "q4_1": 20 / 32, "q4_0": 18 / 32, "iq4_nl": 18 / 32,
}

# MTP draft context on Qwen3.6-27B (shared/llama-cpp-facts.md, "Memory"): compute buffers of about
# 64/256/512 MiB at 16k/64k/128k context, i.e. 4 KiB per context token, plus ~500 MiB verify headroom.
MTP_DRAFT_COMPUTE_BYTES_PER_TOKEN = 4096
MTP_VERIFY_HEADROOM_BYTES = 500 * MiB


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


def kv_layer_bytes(info: ModelInfo, layer: int, n_ctx: int, type_k: str = "f16", type_v: str = "f16",
                   n_seq: int = 1, n_ubatch: int = 512) -> int:
    swa = is_swa(info, layer)
    k_len = (info.key_length_swa if swa and info.key_length_swa else info.key_length) or 0
    v_len = (info.value_length_swa if swa and info.value_length_swa else info.value_length) or 0
    per_cell = _kv_heads(info, layer) * (k_len * CACHE_TYPE_BYTES[type_k] + v_len * CACHE_TYPE_BYTES[type_v])
    return int(per_cell * kv_cells(info, layer, n_ctx, n_seq, n_ubatch))


def kv_known(info: ModelInfo) -> bool:
    return bool(info.head_count_kv) and info.key_length is not None and info.value_length is not None


def kv_bytes_per_layer(info: ModelInfo, n_ctx: int, type_k: str = "f16", type_v: str = "f16",
                       n_seq: int = 1, n_ubatch: int = 512) -> dict[int, int]:
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
        total += int(heads * ((info.key_length or 0) * CACHE_TYPE_BYTES[type_k]
                              + (info.value_length or 0) * CACHE_TYPE_BYTES[type_v]) * n_ctx)
    return total


def mtp_draft_bytes(info: ModelInfo, n_ctx: int) -> int:
    """MTP reserve: nextn KV at full context + draft compute + verify headroom."""
    return nextn_kv_bytes(info, n_ctx) + MTP_DRAFT_COMPUTE_BYTES_PER_TOKEN * n_ctx + MTP_VERIFY_HEADROOM_BYTES


def compute_buffer_bytes(info: ModelInfo, n_ctx: int, n_ubatch: int = 512, n_outputs: int = 1,
                         flash_attn: bool = True) -> int | None:
    """Worst-case graph buffer of one backend. Empirical shape, fitted on llama-server's
    `compute buffer size` lines (CPU, b11434): activations ~ ubatch x (8 f32 rows of n_embd +
    2 of n_ff), the f16 KQ mask n_ctx x ubatch, and without flash
    attention the f32 KQ matrix n_head x n_ctx x ubatch."""
    n_embd = info.embedding_length
    if n_embd is None:
        return None
    n_ff = _ff_length(info)
    # logits (n_vocab x outputs x f32) are ~1 MiB at one output: ModelInfo carries no vocab size
    total = n_ubatch * (n_embd * 32 + n_ff * 8) + n_ctx * n_ubatch * 2
    if not flash_attn and info.head_count:
        total += info.head_count * n_ctx * n_ubatch * 4
    return total


def _ff_length(info: ModelInfo) -> int:
    # The file's own width; where a catalog entry does not state it, 3x n_embd (the usual SwiGLU
    # ratio) stands in: it only feeds the activation term, a few MiB.
    return info.feed_forward_length or 3 * (info.embedding_length or 0)


def weight_split(info: ModelInfo, n_gpu_layers: int, n_cpu_moe: int = 0, mtp: bool = False) -> tuple[int, int]:
    """(gpu_bytes, cpu_bytes) of weights for -ngl N (llama.cpp offloads the LAST N trunk layers; N >
    n_trunk also moves the output head). The token embedding always stays in host memory. The
    nextn blocks load only with MTP and sit with the output head. --n-cpu-moe keeps the routed
    experts of the first N layers in host memory."""
    n = trunk_layers(info)
    layers = info.layer_weight_bytes or []
    experts = info.layer_expert_bytes or []
    other = info.other_weight_bytes or 0
    embd = (info.tensor_types or {}).get("token_embd", 0)
    head = max(0, other - embd)
    nextn = sum(layers[n:n + info.nextn_predict_layers]) if mtp else 0
    gpu = cpu = 0
    first_gpu = max(0, n - n_gpu_layers)
    for i in range(min(n, len(layers))):
        exp = experts[i] if i < len(experts) else 0
        if i >= first_gpu:
            moved = exp if i < n_cpu_moe else 0
            gpu += layers[i] - moved
            cpu += moved
        else:
            cpu += layers[i]
    if n_gpu_layers > n:
        gpu += head + nextn
    else:
        cpu += head + nextn
    cpu += embd
    return gpu, cpu
