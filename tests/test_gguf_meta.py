"""GGUF metadata distilled into ModelInfo: pure, from dicts, with hand-computed expectations."""

from __future__ import annotations

import pytest

from llmtp.core.gguf_meta import TensorInfo, file_type_name, model_info_from_metadata
from llmtp.core.gguf_sizes import kv_bytes_per_token, row_bytes, swa_kv_bytes_per_token


def qwen35_kv(**extra) -> dict:
    kv = {
        "general.architecture": "qwen35",
        "general.name": "hybrid",
        "general.file_type": 15,
        "qwen35.block_count": 5,
        "qwen35.nextn_predict_layers": 1,
        "qwen35.full_attention_interval": 2,
        "qwen35.context_length": 262144,
        "qwen35.embedding_length": 1024,
        "qwen35.attention.head_count": 8,
        "qwen35.attention.head_count_kv": 2,
        "qwen35.attention.key_length": 128,
        "qwen35.attention.value_length": 128,
        "qwen35.ssm.conv_kernel": 4,
        "qwen35.ssm.inner_size": 256,
        "qwen35.ssm.state_size": 128,
        "qwen35.ssm.group_count": 2,
        "qwen35.ssm.time_step_rank": 2,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.chat_template": "{{ x }}",
    }
    kv.update(extra)
    return kv


def test_qwen35_hybrid_layout_and_kv():
    info = model_info_from_metadata(qwen35_kv(), [])
    assert (info.arch, info.block_count, info.nextn_predict_layers, info.trunk_layers) == ("qwen35", 5, 1, 4)
    assert info.has_mtp_heads and info.mtp_arch
    # (il + 1) % 2 != 0 -> recurrent: layers 0 and 2; the nextn layer (4) is never trunk.
    assert info.recurrent_layers == [0, 2]
    assert info.attention_layers == [1, 3]
    assert info.full_attention_interval == 2
    # per attention layer: 2 kv heads * (128 + 128) values; f16 = 2 bytes -> 1024 B; two layers.
    assert info.kv_bytes_per_token == {"f16": 2048, "q8_0": 2 * 544, "q4_0": 2 * 288}
    assert info.nextn_kv_bytes_per_token == {"f16": 1024, "q8_0": 544, "q4_0": 288}
    # conv: (4 - 1) * (256 + 2*2*128) = 2304; delta-net: 128 * 256 = 32768; f32, two layers.
    assert info.ssm_state_bytes_per_seq == 2 * (2304 + 32768) * 4
    assert info.quant == "Q4_K_M"
    assert info.tokenizer_model == "gpt2" and info.chat_template
    assert info.context_length == 262144


def test_qwen35_default_interval_is_four():
    kv = qwen35_kv(**{"qwen35.block_count": 8, "qwen35.nextn_predict_layers": 0})
    del kv["qwen35.full_attention_interval"]
    info = model_info_from_metadata(kv, [])
    assert info.attention_layers == [3, 7]
    assert info.recurrent_layers == [0, 1, 2, 4, 5, 6]
    assert not info.has_mtp_heads and info.mtp_arch


def test_explicit_recurrent_layers_key_wins():
    kv = qwen35_kv(**{"qwen35.attention.recurrent_layers": [True, False, False, True, False]})
    info = model_info_from_metadata(kv, [])
    assert info.recurrent_layers == [0, 3]
    assert info.attention_layers == [1, 2]


def test_dense_gqa_model():
    kv = {
        "general.architecture": "llama",
        "llama.block_count": 4,
        "llama.embedding_length": 4096,
        "llama.attention.head_count": 32,
        "llama.attention.head_count_kv": 8,
    }
    info = model_info_from_metadata(kv, [])
    assert (info.key_length, info.value_length) == (128, 128)  # n_embd / n_head
    assert info.head_count_kv == [8, 8, 8, 8]
    # 8 * (128 + 128) * 2 B * 4 layers
    assert kv_bytes_per_token(info, "f16") == 16384
    assert kv_bytes_per_token(info, "f32") == 32768
    assert kv_bytes_per_token(info, "q4_0") == 4 * 2 * (8 * 128 // 32 * 18)
    assert info.recurrent_layers == [] and info.ssm_state_bytes_per_seq == 0
    assert not info.mtp_arch and not info.has_mtp_heads


def test_sliding_window_default_pattern_from_upstream():
    kv = {
        "general.architecture": "gemma3",
        "gemma3.block_count": 12,
        "gemma3.embedding_length": 2560,
        "gemma3.attention.head_count": 8,
        "gemma3.attention.head_count_kv": 4,
        "gemma3.attention.key_length": 256,
        "gemma3.attention.value_length": 256,
        "gemma3.attention.sliding_window": 1024,
    }
    info = model_info_from_metadata(kv, [])
    # gemma3: load_swa_pattern(ml, 6): il % 6 < 5 is sliding -> layers 5 and 11 are global.
    assert [il for il, swa in enumerate(info.sliding_window_pattern) if not swa] == [5, 11]
    per_layer = 4 * (256 + 256) * 2
    assert kv_bytes_per_token(info, "f16") == 2 * per_layer
    assert swa_kv_bytes_per_token(info, "f16") == 10 * per_layer


def test_sliding_window_pattern_array_and_unknown_pattern():
    kv = {
        "general.architecture": "newarch",
        "newarch.block_count": 3,
        "newarch.embedding_length": 64,
        "newarch.attention.head_count": 2,
        "newarch.attention.sliding_window": 128,
    }
    info = model_info_from_metadata(kv, [])
    assert info.sliding_window == 128 and info.sliding_window_pattern is None
    assert info.kv_bytes_per_token == {}  # unknown, never guessed
    assert swa_kv_bytes_per_token(info, "f16") is None
    kv["newarch.attention.sliding_window_pattern"] = [True, False, True]
    info = model_info_from_metadata(kv, [])
    assert info.sliding_window_pattern == [True, False, True]
    assert kv_bytes_per_token(info, "f16") == 2 * (32 + 32) * 2


def test_zero_kv_heads_mark_recurrent_layers_in_other_hybrids():
    kv = {
        "general.architecture": "nemotron_h",
        "nemotron_h.block_count": 4,
        "nemotron_h.embedding_length": 512,
        "nemotron_h.attention.head_count": 4,
        "nemotron_h.attention.head_count_kv": [0, 2, 0, 0],
        "nemotron_h.attention.key_length": 64,
        "nemotron_h.attention.value_length": 64,
        "nemotron_h.ssm.state_size": 16,
        "nemotron_h.ssm.conv_kernel": 4,
        "nemotron_h.ssm.inner_size": 32,
        "nemotron_h.ssm.group_count": 1,
    }
    info = model_info_from_metadata(kv, [])
    assert info.recurrent_layers == [0, 2, 3]
    assert info.attention_layers == [1]
    assert kv_bytes_per_token(info, "f16") == 2 * 128 * 2
    assert info.ssm_state_bytes_per_seq == 3 * (3 * (32 + 2 * 16) + 16 * 32) * 4


def test_mla_and_missing_heads_are_unknown():
    mla = {
        "general.architecture": "deepseek2",
        "deepseek2.block_count": 2,
        "deepseek2.embedding_length": 64,
        "deepseek2.attention.head_count": 2,
        "deepseek2.attention.kv_lora_rank": 512,
    }
    info = model_info_from_metadata(mla, [])
    assert info.mla and info.kv_bytes_per_token == {} and info.mtp_arch
    bare = model_info_from_metadata({"general.architecture": "mamba", "mamba.block_count": 2}, [])
    assert bare.kv_bytes_per_token == {} and bare.head_count is None
    assert model_info_from_metadata({}, []).arch == "unknown"


def test_unknown_cache_type_is_an_error():
    info = model_info_from_metadata(qwen35_kv(), [])
    with pytest.raises(ValueError):
        kv_bytes_per_token(info, "q3_banana")


def test_tensor_accounting_and_dominant_quant():
    tensors = [
        TensorInfo(name="token_embd.weight", shape=[64, 100], type="Q8_0", n_bytes=6800),
        TensorInfo(name="output_norm.weight", shape=[64], type="F32", n_bytes=256),
        TensorInfo(name="blk.0.attn_q.weight", shape=[64, 64], type="Q4_K", n_bytes=2304),
        TensorInfo(name="blk.0.attn_norm.weight", shape=[64], type="F32", n_bytes=256),
        TensorInfo(name="blk.1.ffn_up.weight", shape=[64, 256], type="Q4_K", n_bytes=9216),
        TensorInfo(name="blk.1.nextn.eh_proj.weight", shape=[128, 64], type="Q4_K", n_bytes=4608),
    ]
    kv = {"general.architecture": "llama", "llama.block_count": 2}
    info = model_info_from_metadata(kv, tensors, path="/m.gguf", file_size=30000)
    assert info.param_count == 6400 + 64 + 4096 + 64 + 16384 + 8192
    assert info.layer_weight_bytes == [2304 + 256, 9216 + 4608]
    assert info.other_weight_bytes == 6800 + 256
    assert info.tensor_types == {"Q8_0": 6800, "F32": 512, "Q4_K": 16128}
    assert info.quant == "Q4_K"  # no general.file_type: the type holding most matrix bytes
    assert (info.path, info.file_size_bytes) == ("/m.gguf", 30000)


def test_file_type_names():
    assert file_type_name(15) == "Q4_K_M"
    assert file_type_name(1024 | 7) == "Q8_0"  # the GUESSED flag is ignored
    assert file_type_name(0) == "F32"
    assert file_type_name(None) is None
    assert file_type_name(9999) is None


def test_row_bytes_uses_ggml_block_sizes():
    assert row_bytes("q8_0", 256) == 272
    assert row_bytes("Q4_K", 512) == 288
    assert row_bytes("q8_0", 33) is None  # not a whole number of blocks
    assert row_bytes("nope", 32) is None
