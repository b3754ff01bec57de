"""What llmtp knows about a GGUF model: metadata distilled from the header and tensor table.

Built from plain values (a key/value dict and a tensor list) so planning and tests need no file; the
KV-cache bytes per token it records come from core/gguf_sizes.py.
Layer semantics follow upstream llama.cpp (build 11434): src/llama-model.cpp, src/llama-hparams.cpp,
src/models/qwen35.cpp.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, Field

from llmtp.core.gguf_sizes import KV_CACHE_TYPES, kv_bytes_per_token


class TensorInfo(BaseModel):
    name: str
    shape: list[int]
    type: str  # ggml type name: "F16", "Q4_K", ...
    n_bytes: int

    @property
    def n_elements(self) -> int:
        n = 1
        for dim in self.shape:
            n *= dim
        return n


class ModelInfo(BaseModel):
    path: str | None = None
    file_size_bytes: int | None = None
    arch: str
    name: str | None = None
    param_count: int | None = None
    quant: str | None = None  # effective quant, from file_type or the tensor type mix
    tensor_types: dict[str, int] = Field(default_factory=dict)  # type name -> bytes
    block_count: int | None = None  # as stored: includes nextn (MTP) layers
    nextn_predict_layers: int = 0  # MTP heads embedded in this file
    trunk_layers: int | None = None  # block_count - nextn_predict_layers
    context_length: int | None = None  # trained context
    embedding_length: int | None = None
    feed_forward_length: int | None = None  # dense FFN width (largest layer where it varies per layer)
    head_count: int | None = None
    head_count_kv: list[int] | None = None  # per layer (GGUF allows a scalar or an array)
    key_length: int | None = None
    value_length: int | None = None
    sliding_window: int | None = None
    sliding_window_pattern: list[bool] | None = None  # per layer: True = sliding-window layer
    full_attention_interval: int | None = None  # hybrid (qwen35/qwen3next): every N-th layer has KV
    recurrent_layers: list[int] = Field(default_factory=list)  # layers with fixed state instead of KV
    ssm_state_bytes_per_seq: int | None = None  # f32 recurrent state for all recurrent layers, one sequence
    expert_count: int | None = None
    expert_used_count: int | None = None
    expert_feed_forward_length: int | None = None  # width of one routed expert (MoE)
    expert_shared_feed_forward_length: int | None = None  # the shared expert, where there is one
    layer_weight_bytes: list[int] = Field(default_factory=list)  # per block (incl. nextn blocks)
    other_weight_bytes: int | None = None  # token embedding, output head, final norm
    token_embd_bytes: int = 0  # the token embedding alone (stays in host memory; part of other_weight_bytes)
    kv_bytes_per_token: dict[str, int] = Field(default_factory=dict)  # cache type -> bytes/token (f16, q8_0, q4_0)
    mtp_arch: bool = False  # architecture has an MTP graph upstream
    tokenizer_model: str | None = None
    chat_template: bool = False
    # Added fields (keep names above stable; other modules depend on them).
    attention_layers: list[int] | None = None  # trunk layers with a KV cache (None: unknown)
    mla: bool = False  # multi-head latent attention (deepseek2-style): KV layout not modelled here
    nextn_kv_bytes_per_token: dict[str, int] = Field(default_factory=dict)  # draft (MTP) context KV
    key_length_swa: int | None = (
        None  # sliding-window layers where they differ ({arch}.attention.key_length_swa, gemma4)
    )
    value_length_swa: int | None = None
    layer_expert_bytes: list[int] = Field(
        default_factory=list
    )  # per block: routed experts (ffn_*_exps), for --n-cpu-moe
    # per block: dense FFN weights (ffn_up/ffn_gate/ffn_down, llama.cpp's LLM_FFN_DENSE_REGEX), for --n-cpu-ffn / -ot
    layer_ffn_bytes: list[int] = Field(default_factory=list)

    @property
    def has_mtp_heads(self) -> bool:
        return self.nextn_predict_layers > 0


# Architectures with an MTP graph upstream (late 2026, see shared/llama-cpp-facts.md); Gemma 4
# keeps its head in a separate gemma4-assistant file.
MTP_ARCHES: frozenset[str] = frozenset(
    {
        "qwen35",
        "qwen35moe",
        "qwen3next",
        "deepseek2",
        "deepseek32",
        "deepseek4",
        "glm4moe",
        "glm-dsa",
        "glm5-next",
        "step35",
        "mimo2",
        "nemotron_h_moe",
        "bailingmoe3",
        "cohere2moe",
        "gemma4-assistant",
    }
)

# Hybrid archs whose recurrent layers follow `full_attention_interval` (upstream default 4).
INTERVAL_HYBRID_ARCHES: frozenset[str] = frozenset({"qwen35", "qwen35moe", "qwen3next"})

# Sliding-window patterns upstream hard-codes when the GGUF has no `sliding_window_pattern` key:
# arch -> (n_pattern, dense_first), from `load_swa_pattern(ml, N[, dense_first])` in src/models/*.cpp.
DEFAULT_SWA_PATTERNS: dict[str, tuple[int, bool]] = {
    "gemma2": (2, False),
    "gemma3": (6, False),
    "gemma3n": (5, False),
    "gemma-embedding": (6, False),
    "cohere2": (4, False),
    "cohere2moe": (4, True),
    "gpt-oss": (2, False),
    "exaone4": (4, False),
    "exaone-moe": (4, False),
    "olmo2": (4, False),
    "afmoe": (4, False),
    "mellum": (4, False),
    "plamo3": (8, False),
    "smallthinker": (4, True),
}

_BLOCK_RE = re.compile(r"^blk\.(\d+)\.")
# What llama-server's --n-cpu-ffn moves (common/common.h LLM_FFN_DENSE_REGEX, b11434): `blk.3.ffn_up.weight`,
# not the routed experts (`ffn_up_exps`) nor a shared expert (`ffn_up_shexp`).
_DENSE_FFN_RE = re.compile(r"\.ffn_(up|down|gate)\.")


def file_type_name(file_type: int | None) -> str | None:
    """`general.file_type` as a quant name ("Q4_K_M", "F16", ...); None when absent or unknown."""
    if file_type is None:
        return None
    from gguf.constants import LlamaFileType

    try:
        member = LlamaFileType(int(file_type) & ~int(LlamaFileType.GUESSED))
    except ValueError:
        return None
    name = member.name
    return name.removeprefix("MOSTLY_").removeprefix("ALL_")


def _per_layer(value: Any, n_layers: int) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, list):
        return [int(v) for v in value[:n_layers]] if len(value) >= n_layers else None
    return [int(value)] * n_layers


def _swa_pattern(kv: Mapping[str, Any], arch: str, trunk: int, n_layers: int) -> list[bool] | None:
    """Per-layer sliding-window flags, as upstream's load_swa_pattern computes them."""
    if not kv.get(f"{arch}.attention.sliding_window"):
        return None
    raw = kv.get(f"{arch}.attention.sliding_window_pattern")
    if isinstance(raw, list):
        flags = [bool(v) for v in raw[:n_layers]]
        return flags + [False] * (n_layers - len(flags))
    n_pattern, dense_first = DEFAULT_SWA_PATTERNS.get(arch, (None, False))
    if raw is not None:
        n_pattern = int(raw)
    if n_pattern is None:
        return None  # a window without a known pattern: unknown, not guessed
    flags = []
    for il in range(n_layers):
        if il >= trunk:
            flags.append(False)
        elif dense_first:
            flags.append(n_pattern == 0 or il % n_pattern != 0)
        else:
            flags.append(n_pattern == 0 or il % n_pattern < n_pattern - 1)
    return flags


def _recurrent_layers(
    kv: Mapping[str, Any], arch: str, trunk: int, n_layers: int, head_count_kv: list[int] | None
) -> tuple[list[int], int | None]:
    """Trunk layers that keep a fixed recurrent state instead of KV, and the interval if any."""
    explicit = kv.get(f"{arch}.attention.recurrent_layers")
    if isinstance(explicit, list):
        return [il for il, v in enumerate(explicit[:trunk]) if v], None
    if arch in INTERVAL_HYBRID_ARCHES:
        interval = int(kv.get(f"{arch}.full_attention_interval", 4))  # upstream's default is 4
        return [il for il in range(trunk) if (il + 1) % interval != 0], interval
    if kv.get(f"{arch}.ssm.state_size") and head_count_kv is not None:
        # Other hybrids (nemotron_h, granitehybrid, ...) mark recurrent layers with 0 KV heads.
        return [il for il in range(trunk) if head_count_kv[il] == 0], None
    return [], None


def _ssm_state_bytes(kv: Mapping[str, Any], arch: str, n_recurrent: int) -> int | None:
    """f32 conv + delta-net state of all recurrent layers for one sequence (n_embd_r + n_embd_s)."""
    if n_recurrent == 0:
        return 0
    try:
        d_conv = int(kv[f"{arch}.ssm.conv_kernel"])
        d_inner = int(kv[f"{arch}.ssm.inner_size"])
        d_state = int(kv[f"{arch}.ssm.state_size"])
        n_group = int(kv.get(f"{arch}.ssm.group_count", 0))
    except KeyError:
        return None
    n_embd_r = max(d_conv - 1, 0) * (d_inner + 2 * n_group * d_state)
    n_embd_s = d_state * d_inner
    return n_recurrent * (n_embd_r + n_embd_s) * 4


def model_info_from_metadata(
    kv: Mapping[str, Any], tensors: list[TensorInfo], *, path: str | None = None, file_size: int | None = None
) -> ModelInfo:
    """Distil a GGUF key/value dict and tensor table into a ModelInfo (pure)."""
    arch = str(kv.get("general.architecture", "unknown"))

    def key(name: str) -> Any:
        return kv.get(f"{arch}.{name}")

    block_count = int(key("block_count")) if key("block_count") is not None else None
    nextn = int(key("nextn_predict_layers") or 0)
    trunk = block_count - nextn if block_count is not None else None
    head_count_raw = key("attention.head_count")
    head_count = max(head_count_raw) if isinstance(head_count_raw, list) else head_count_raw
    embd = key("embedding_length")
    head_count_kv = None
    if block_count is not None:
        head_count_kv = _per_layer(key("attention.head_count_kv"), block_count) or _per_layer(
            head_count_raw, block_count
        )
    key_length = key("attention.key_length")
    value_length = key("attention.value_length")
    if head_count and embd:
        key_length = key_length if key_length is not None else embd // head_count
        value_length = value_length if value_length is not None else embd // head_count

    recurrent: list[int] = []
    interval = None
    attention_layers = None
    swa = None
    if trunk is not None:
        recurrent, interval = _recurrent_layers(kv, arch, trunk, block_count, head_count_kv)
        swa = _swa_pattern(kv, arch, trunk, block_count)
        if head_count_kv is not None:
            attention_layers = [il for il in range(trunk) if il not in recurrent and head_count_kv[il] > 0]

    tensor_types: dict[str, int] = {}
    layer_bytes = [0] * (block_count or 0)
    other = 0
    embd_bytes = 0
    for t in tensors:
        tensor_types[t.type] = tensor_types.get(t.type, 0) + t.n_bytes
        if t.name == "token_embd.weight":
            embd_bytes = t.n_bytes
        m = _BLOCK_RE.match(t.name)
        if m and int(m.group(1)) < len(layer_bytes):
            layer_bytes[int(m.group(1))] += t.n_bytes
        else:
            other += t.n_bytes

    info = ModelInfo(
        path=path,
        file_size_bytes=file_size,
        arch=arch,
        name=kv.get("general.name"),
        param_count=sum(t.n_elements for t in tensors) if tensors else None,
        quant=file_type_name(kv.get("general.file_type")) or _dominant_type(tensors),
        tensor_types=tensor_types,
        block_count=block_count,
        nextn_predict_layers=nextn,
        trunk_layers=trunk,
        context_length=key("context_length"),
        embedding_length=embd,
        feed_forward_length=_max_or_none(key("feed_forward_length")),
        head_count=head_count,
        head_count_kv=head_count_kv,
        key_length=key_length,
        value_length=value_length,
        sliding_window=key("attention.sliding_window") or None,
        sliding_window_pattern=swa,
        full_attention_interval=interval,
        recurrent_layers=recurrent,
        ssm_state_bytes_per_seq=_ssm_state_bytes(kv, arch, len(recurrent)),
        expert_count=key("expert_count"),
        expert_used_count=key("expert_used_count"),
        expert_feed_forward_length=key("expert_feed_forward_length"),
        expert_shared_feed_forward_length=key("expert_shared_feed_forward_length"),
        layer_weight_bytes=layer_bytes,
        other_weight_bytes=other if tensors else None,
        token_embd_bytes=embd_bytes,
        mtp_arch=arch in MTP_ARCHES,
        tokenizer_model=kv.get("tokenizer.ggml.model"),
        chat_template=bool(kv.get("tokenizer.chat_template")),
        attention_layers=attention_layers,
        mla=key("attention.kv_lora_rank") is not None,
    )
    # planner inputs (llmtp/core/memory.py): SWA head dims and routed-expert bytes per block
    info.key_length_swa = key("attention.key_length_swa")
    info.value_length_swa = key("attention.value_length_swa")
    if any("_exps." in t.name for t in tensors):
        experts = [0] * (block_count or 0)
        for t in tensors:
            m = _BLOCK_RE.match(t.name)
            if m and "_exps." in t.name and int(m.group(1)) < len(experts):
                experts[int(m.group(1))] += t.n_bytes
        info.layer_expert_bytes = experts
    ffn = [0] * (block_count or 0)
    for t in tensors:
        m = _BLOCK_RE.match(t.name)
        if m and _DENSE_FFN_RE.search(t.name) and int(m.group(1)) < len(ffn):
            ffn[int(m.group(1))] += t.n_bytes
    if any(ffn):
        info.layer_ffn_bytes = ffn
    for cache_type in KV_CACHE_TYPES:
        value = kv_bytes_per_token(info, cache_type)
        if value is not None:
            info.kv_bytes_per_token[cache_type] = value
        nextn_value = kv_bytes_per_token(info, cache_type, nextn_layers=True)
        if nextn_value:
            info.nextn_kv_bytes_per_token[cache_type] = nextn_value
    return info


def _dominant_type(tensors: list[TensorInfo]) -> str | None:
    """The type holding most bytes among matrices (norms and biases are f32 in every quant)."""
    totals: dict[str, int] = {}
    for t in tensors:
        if len([d for d in t.shape if d > 1]) >= 2:
            totals[t.type] = totals.get(t.type, 0) + t.n_bytes
    return max(totals, key=totals.__getitem__) if totals else None


def _max_or_none(value: Any) -> int | None:
    """GGUF stores some widths as a scalar, some per layer (an array; 0 on layers without an FFN)."""
    if isinstance(value, list):
        return max(value) if value else None
    return int(value) if value else None
