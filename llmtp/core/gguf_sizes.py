"""Sizes that follow from a GGUF model: bytes of a row of a ggml type, and KV-cache bytes per token of context.

Pure arithmetic on ggml's type table (the gguf package) and a ModelInfo's layer layout (core/gguf_meta.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmtp.core.gguf_meta import ModelInfo

KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")


def ggml_type_sizes(type_name: str) -> tuple[int, int] | None:
    """(block size in elements, bytes per block) for a ggml type name, from the gguf package."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        return GGML_QUANT_SIZES[GGMLQuantizationType[type_name.upper()]]
    except KeyError:
        return None


def row_bytes(type_name: str, n_elements: int) -> int | None:
    """Bytes of `n_elements` values stored as `type_name` (None: unknown type or partial block)."""
    sizes = ggml_type_sizes(type_name)
    if sizes is None or n_elements % sizes[0]:
        return None
    return n_elements // sizes[0] * sizes[1]


def _layer_kv_bytes(info: ModelInfo, il: int, cache_type: str) -> int | None:
    assert info.head_count_kv is not None and info.key_length is not None and info.value_length is not None
    n_kv = info.head_count_kv[il]
    sliding = bool(info.sliding_window_pattern and info.sliding_window_pattern[il])
    # gemma4's sliding layers have their own head dims ({arch}.attention.key_length_swa)
    k_len = (info.key_length_swa or info.key_length) if sliding else info.key_length
    v_len = (info.value_length_swa or info.value_length) if sliding else info.value_length
    k = row_bytes(cache_type, n_kv * k_len)
    v = row_bytes(cache_type, n_kv * v_len)
    return None if k is None or v is None else k + v


def kv_bytes_per_token(info: ModelInfo, cache_type: str, *, nextn_layers: bool = False) -> int | None:
    """KV-cache bytes one token of context costs in the layers whose cache grows with context.

    Counts full-attention trunk layers only: recurrent layers keep a fixed state
    (`ssm_state_bytes_per_seq`), sliding-window layers keep about window + ubatch tokens, and
    nextn (MTP) layers live in the draft context (`nextn_layers=True` gives those instead).
    None when the layout is unknown (missing heads/dims, MLA, a window without a known pattern).
    """
    if ggml_type_sizes(cache_type) is None:
        raise ValueError(f"unknown ggml type {cache_type!r}")
    if (
        info.mla
        or info.head_count_kv is None
        or info.key_length is None
        or info.value_length is None
        or info.trunk_layers is None
        or info.attention_layers is None
    ):
        return None
    if nextn_layers:
        layers = list(range(info.trunk_layers, info.block_count or info.trunk_layers))
    else:
        if info.sliding_window and info.sliding_window_pattern is None:
            return None
        swa = info.sliding_window_pattern or []
        layers = [il for il in info.attention_layers if not (il < len(swa) and swa[il])]
    total = 0
    for il in layers:
        layer = _layer_kv_bytes(info, il, cache_type)
        if layer is None:
            return None
        total += layer
    return total


def swa_kv_bytes_per_token(info: ModelInfo, cache_type: str) -> int | None:
    """Per-token KV bytes of the sliding-window layers (their cache holds ~window + ubatch tokens)."""
    if not info.sliding_window:
        return 0
    if info.sliding_window_pattern is None or info.attention_layers is None:
        return None
    total = 0
    for il in info.attention_layers:
        if info.sliding_window_pattern[il]:
            layer = _layer_kv_bytes(info, il, cache_type)
            if layer is None:
                return None
            total += layer
    return total
