"""The pure GGUF header parser: hand-built bytes, truncation, skipped arrays, and agreement with
gguf.GGUFReader on a complete file."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from gguf import GGUFWriter

from llmtp.adapters.gguf_file import read_metadata
from llmtp.core.gguf_header import (
    MAX_ARRAY_ITEMS,
    GGUFHeaderError,
    GGUFTruncated,
    parse_gguf_header,
    tensor_infos,
)


def _s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def _header_bytes() -> bytes:
    """GGUF v3 by hand: 4 key/values (u32, string, f32 array, bool array) and 2 tensor infos."""
    kv = (
        _s("general.architecture")
        + struct.pack("<I", 8)
        + _s("qwen35")
        + _s("qwen35.block_count")
        + struct.pack("<II", 4, 65)
        + _s("a.floats")
        + struct.pack("<IIQ", 9, 6, 2)
        + struct.pack("<ff", 0.5, 2.0)
        + _s("a.flags")
        + struct.pack("<IIQ", 9, 7, 3)
        + bytes([1, 0, 1])
    )
    ti = (
        _s("token_embd.weight")
        + struct.pack("<I", 2)
        + struct.pack("<QQ", 5120, 248320)
        + struct.pack("<IQ", 12, 0)  # Q4_K at offset 0
        + _s("output_norm.weight")
        + struct.pack("<I", 1)
        + struct.pack("<Q", 5120)
        + struct.pack("<IQ", 0, 715_161_600)
    )  # F32 right after
    return b"GGUF" + struct.pack("<IQQ", 3, 2, 4) + kv + ti


def test_parses_hand_built_header():
    data = _header_bytes()
    h = parse_gguf_header(data)
    assert h.version == 3
    assert h.kv == {
        "general.architecture": "qwen35",
        "qwen35.block_count": 65,
        "a.floats": [0.5, 2.0],
        "a.flags": [True, False, True],
    }
    assert h.header_bytes == len(data)
    assert h.data_offset == (len(data) + 31) // 32 * 32
    infos = tensor_infos(h)
    # Q4_K: 144 bytes per 256 values -> 5120 * 248320 / 256 * 144; F32 output_norm: 5120 * 4
    assert [(t.name, t.shape, t.type, t.n_bytes) for t in infos] == [
        ("token_embd.weight", [5120, 248320], "Q4_K", 715_161_600),
        ("output_norm.weight", [5120], "F32", 20_480),
    ]
    assert h.data_bytes == 715_161_600 + 20_480


def test_every_cut_inside_the_header_is_truncation():
    data = _header_bytes()
    for cut in range(len(data)):
        with pytest.raises(GGUFTruncated):
            parse_gguf_header(data[:cut])


def test_not_gguf_and_old_versions_are_rejected():
    with pytest.raises(GGUFHeaderError, match="not a GGUF"):
        parse_gguf_header(b"PK\x03\x04" + bytes(20))
    with pytest.raises(GGUFHeaderError, match="version 1"):
        parse_gguf_header(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
    with pytest.raises(GGUFHeaderError, match="unknown GGUF value type 99"):
        parse_gguf_header(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + _s("k") + struct.pack("<I", 99))


def test_long_arrays_are_skipped_not_decoded():
    n = MAX_ARRAY_ITEMS + 1
    tokens = b"".join(_s(f"t{i}") for i in range(n))
    data = (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 3)
        + _s("tokenizer.ggml.tokens")
        + struct.pack("<IIQ", 9, 8, n)
        + tokens
        + _s("tokenizer.ggml.scores")
        + struct.pack("<IIQ", 9, 6, n)
        + bytes(4 * n)
        + _s("general.name")
        + struct.pack("<I", 8)
        + _s("after")
    )
    assert parse_gguf_header(data).kv == {"general.name": "after"}


def test_agrees_with_gguf_reader_on_a_complete_file(tmp_path):
    path = tmp_path / "full.gguf"
    w = GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_array("llama.attention.head_count_kv", [4, 8])
    w.add_float32("llama.rope.freq_base", 10000.0)
    w.add_string("general.name", "tiny")
    w.add_tensor("blk.0.attn_q.weight", np.ones((8, 32), dtype=np.float32))
    w.add_tensor("blk.0.ffn_up.weight", np.ones((4, 64), dtype=np.float16))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    kv, tensors, size = read_metadata(path)
    h = parse_gguf_header(path.read_bytes())
    assert h.kv == kv
    assert tensor_infos(h) == tensors
    assert h.data_offset + h.data_bytes <= size
