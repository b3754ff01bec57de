"""GGUF metadata of real architectures: header-only files with the real key/tensor layout of
Qwen3.6-27B (qwen35), Qwen3.6-35B-A3B (qwen35moe) and Gemma 4 31B (gemma4), read the way a planner
reads the first MB of a remote file, checked against hand-computed numbers.

Byte arithmetic: Q4_K = 144 bytes / 256 values, Q5_K = 176 / 256, Q6_K = 210 / 256, F32 = 4 / value,
KV cache f16 = 2 bytes / value, q8_0 = 34 / 32, q4_0 = 18 / 32.
"""

from __future__ import annotations

import pytest
from gguf_layouts import LAYOUTS, write_header_only

from llmtp.adapters.gguf_file import read_model_info
from llmtp.core import memory as mem
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.plan import make_plan
from llmtp.core.plan_types import GiB, PlanDevice, PlanHardware, PlanRequest
from llmtp.errors import ModelFileError


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("layouts")
    return {k: write_header_only(d / f"{k}.gguf", f()) for k, f in LAYOUTS.items()}


def _info(files, key: str, **kw) -> ModelInfo:
    return read_model_info(files[key], header_only=True, cache_dir=False, **kw)


def _gpu(gib: float) -> PlanHardware:
    return PlanHardware(
        gpus=[PlanDevice(name="GPU0", free_bytes=int(gib * GiB), bandwidth_gbps=1000.0)],
        ram_bytes=64 * GiB,
        ram_bandwidth_gbps=60,
        backend="cuda",
    )


def test_files_are_header_only_and_a_normal_read_calls_them_truncated(files):
    for path in files.values():
        assert path.stat().st_size < 64 * 1024  # headers only: 65 blocks of tensor infos, no weights
        with pytest.raises(ModelFileError, match="truncated"):
            read_model_info(path, cache_dir=False)


def test_header_only_size_comes_from_the_caller_and_the_cache_keeps_them_apart(files, tmp_path):
    p = files["qwen35-27b"]
    assert _info(files, "qwen35-27b").file_size_bytes is None
    a = read_model_info(p, header_only=True, file_size=16_789_000_000, cache_dir=tmp_path)
    b = read_model_info(p, header_only=True, file_size=15_500_000_000, cache_dir=tmp_path)
    assert (a.file_size_bytes, b.file_size_bytes) == (16_789_000_000, 15_500_000_000)
    assert len(list((tmp_path / "gguf-meta").glob("*.json"))) == 2
    # a cached entry is served as is (same key again)
    assert read_model_info(p, header_only=True, file_size=16_789_000_000, cache_dir=tmp_path) == a


def test_qwen35_27b(files):
    info = _info(files, "qwen35-27b")
    assert (info.arch, info.name, info.quant) == ("qwen35", "Qwen3.6-27B", "Q4_K_M")
    # 65 blocks stored = 64 trunk + 1 nextn (MTP) block
    assert (info.block_count, info.trunk_layers, info.nextn_predict_layers) == (65, 64, 1)
    # full_attention_interval 4: layers 3, 7, ..., 63 have KV (16), the other 48 are Gated DeltaNet
    assert info.attention_layers == list(range(3, 64, 4)) and len(info.recurrent_layers) == 48
    # KV per token: 16 layers x 4 KV heads x (256 K + 256 V) values
    assert info.kv_bytes_per_token == {
        "f16": 16 * 4 * 512 * 2,  # 65,536
        "q8_0": 16 * 4 * 512 // 32 * 34,  # 34,816
        "q4_0": 16 * 4 * 512 // 32 * 18,
    }  # 18,432
    assert info.nextn_kv_bytes_per_token["f16"] == 1 * 4 * 512 * 2  # the nextn block: 4,096
    # recurrent state, f32: 48 x 4 x ((conv 4 - 1) x (6144 + 2 x 16 x 128) + 128 x 6144)
    assert info.ssm_state_bytes_per_seq == 48 * 4 * (3 * 10240 + 128 * 6144) == 156_893_184
    # parameters: embedding + untied output, 48 recurrent, 16 attention, 1 nextn block, final norm
    ffn = 3 * 5120 * 17408
    rec = 2 * 5120 + 5120 * 10240 + 5120 * 6144 + 4 * 10240 + 2 * 48 + 2 * 5120 * 48 + 128 + 6144 * 5120 + ffn
    att = 2 * 5120 + 5120 * 12288 + 2 * 5120 * 1024 + 6144 * 5120 + 2 * 256 + ffn
    nextn = att + 10240 * 5120 + 3 * 5120
    assert info.param_count == 2 * 5120 * 248320 + 48 * rec + 16 * att + nextn + 5120 == 27_320_697_856
    assert info.param_count == pytest.approx(27e9, rel=0.02)  # published: 27B
    # block 0, recurrent; ffn_down Q6_K (first eighth of 65 blocks: use_more_bits)
    assert info.layer_weight_bytes[0] == (
        2 * 5120 * 4  # attn_norm, post_attention_norm (F32)
        + 5120 * 10240 // 256 * 176  # attn_qkv Q5_K        36,044,800
        + 2 * 5120 * 6144 // 256 * 144  # attn_gate, ssm_out   35,389,440
        + 4 * 10240 * 4
        + 2 * 48 * 4
        + 128 * 4  # conv1d, dt, a, ssm_norm (F32)
        + 2 * 5120 * 48 // 256 * 144  # ssm_beta, ssm_alpha  276,480
        + 2 * 5120 * 17408 // 256 * 144  # ffn_gate, ffn_up     100,270,080
        + 17408 * 5120 // 256 * 210
    )  # ffn_down Q6_K        73,113,600
    assert info.layer_weight_bytes[0] == 245_300_096
    # block 3, attention; its attn_v is the first of 17 (Q6_K), ffn_down Q6_K
    assert (
        info.layer_weight_bytes[3]
        == (
            2 * 5120 * 4
            + 2 * 256 * 4
            + 5120 * 12288 // 256 * 144
            + 5120 * 1024 // 256 * 144  # attn_q (with gate), attn_k Q4_K
            + 5120 * 1024 // 256 * 210  # attn_v Q6_K
            + 6144 * 5120 // 256 * 144  # attn_output Q4_K
            + 2 * 5120 * 17408 // 256 * 144
            + 17408 * 5120 // 256 * 210
        )
        == 233_760_768
    )
    # token_embd Q4_K + output Q6_K + output_norm F32
    assert info.other_weight_bytes == 5120 * 248320 // 256 * (144 + 210) + 5120 * 4 == 1_758_126_080
    assert sum(info.tensor_types.values()) == sum(info.layer_weight_bytes) + info.other_weight_bytes
    assert set(info.tensor_types) == {"F32", "Q4_K", "Q5_K", "Q6_K"}
    # the embedding is told apart from the output head (it stays in host memory at any -ngl)
    assert info.token_embd_bytes == 5120 * 248320 // 256 * 144
    assert info.expert_count is None and info.layer_expert_bytes == []


def test_qwen35moe_35b_a3b(files):
    info = _info(files, "qwen35moe-35b-a3b")
    assert (info.block_count, info.trunk_layers, info.nextn_predict_layers) == (41, 40, 1)
    assert (info.expert_count, info.expert_used_count) == (256, 8)
    assert info.attention_layers == list(range(3, 40, 4)) and len(info.recurrent_layers) == 30
    # 10 attention layers x 2 KV heads x 512 values
    assert (
        info.kv_bytes_per_token
        == {"f16": 10 * 2 * 512 * 2, "q8_0": 10 * 2 * 512 // 32 * 34, "q4_0": 10 * 2 * 512 // 32 * 18}
        == {"f16": 20480, "q8_0": 10880, "q4_0": 5760}
    )
    # 30 x 4 x (3 x (4096 + 2 x 16 x 128) + 128 x 4096)
    assert info.ssm_state_bytes_per_seq == 30 * 4 * (3 * 8192 + 128 * 4096) == 65_863_680
    # routed experts per block: gate + up Q4_K, down Q6_K in the first eighth (block 0) ...
    exps_q4 = 2048 * 512 * 256 // 256 * 144  # 150,994,944 per [2048, 512, 256] tensor
    exps_q6 = 512 * 2048 * 256 // 256 * 210  # 220,200,960
    assert info.layer_expert_bytes[0] == 2 * exps_q4 + exps_q6 == 522_190_848
    # ... and all Q4_K in block 6 ((6 - 41 // 8) % 3 == 1: no extra bits)
    assert info.layer_expert_bytes[6] == 3 * exps_q4 == 452_984_832
    # Q6_K down in blocks 0-4, 35-40 and 7, 10, ..., 34: 5 + 6 + 10 = 21 of 41
    assert len(info.layer_expert_bytes) == 41
    assert sum(info.layer_expert_bytes) == 41 * 2 * exps_q4 + 21 * exps_q6 + 20 * exps_q4 == 20_025_704_448
    # routed experts: 41 blocks x 256 x 3 x 2048 x 512 = 33.0B of the 35.5B parameters
    assert info.param_count - 41 * 256 * 3 * 2048 * 512 == pytest.approx(2.49e9, rel=0.01)
    assert info.param_count == pytest.approx(35e9, rel=0.02)  # published: 35B total


def test_gemma4_31b_sliding_window_layout(files):
    info = _info(files, "gemma4-31b")
    assert (info.block_count, info.trunk_layers, info.nextn_predict_layers) == (60, 60, 0)
    assert not info.has_mtp_heads and info.recurrent_layers == []  # MTP lives in a sidecar
    assert info.sliding_window == 1024
    assert [il for il, s in enumerate(info.sliding_window_pattern) if not s] == list(range(5, 60, 6))
    assert info.head_count_kv[:6] == [16, 16, 16, 16, 16, 4]
    assert (info.key_length, info.key_length_swa) == (512, 256)
    # per-token KV that grows with context: the 10 global layers, 4 KV heads x (512 + 512)
    assert (
        info.kv_bytes_per_token
        == {"f16": 10 * 4 * 1024 * 2, "q8_0": 10 * 4 * 1024 // 32 * 34, "q4_0": 10 * 4 * 1024 // 32 * 18}
        == {"f16": 81920, "q8_0": 43520, "q4_0": 23040}
    )
    # the planner's per-layer KV at 32768: sliding layers hold pad256(1024 + 512) = 1536 cells of
    # 16 heads x (256 + 256); global layers the full context of 4 heads x (512 + 512)
    from llmtp.core.gguf_sizes import swa_kv_bytes_per_token

    assert swa_kv_bytes_per_token(info, "f16") == 50 * 16 * (256 + 256) * 2 == 819_200
    kv = mem.kv_bytes_per_layer(info, 32768)
    assert kv[0] == 16 * 512 * 2 * 1536 == 25_165_824
    assert kv[5] == 4 * 1024 * 2 * 32768 == 268_435_456
    assert sum(kv.values()) == 50 * 25_165_824 + 10 * 268_435_456 == 3_942_645_760
    # block 0 (sliding, attn_v Q6_K as the first of 50, ffn_down Q6_K) vs block 5 (global, K = V: no attn_v)
    ffn0 = 2 * 5376 * 21504 // 256 * 144 + 21504 * 5376 // 256 * 210
    norms = 4 * 5376 * 4 + 4  # attn_norm, post_attention_norm, ffn_norm, post_ffw_norm + layer_output_scale
    assert (
        info.layer_weight_bytes[0]
        == norms
        + 2 * 256 * 4
        + (5376 * 8192 // 256 * 144 + 5376 * 4096 // 256 * 144 + 5376 * 4096 // 256 * 210 + 8192 * 5376 // 256 * 144)
        + ffn0
        == 304_971_780
    )
    assert (
        info.layer_weight_bytes[5]
        == norms
        + 2 * 512 * 4
        + (5376 * 16384 // 256 * 144 + 5376 * 2048 // 256 * 144 + 16384 * 5376 // 256 * 144)
        + ffn0
        == 330_262_532
    )
    # tied embedding (Q6_K, doubles as the output head) + rope_freqs + output_norm
    assert info.other_weight_bytes == 5376 * 262144 // 256 * 210 + 256 * 4 + 5376 * 4
    # parameters: 262144 x 5376 embedding + 50 sliding + 10 global blocks (text model only)
    assert info.param_count == pytest.approx(31e9, rel=0.02)  # published: 31B


def test_plans_from_a_single_file(files):
    """make_plan on one file plans that file's quant (the quant choice needs the catalog's candidates,
    tested in test_plan.py). This layout's Q4_K_M is 16.8 GB (llama-quantize's mix, larger than
    Unsloth's 15.5 GB file), so 24 GiB holds it whole and 12 GiB needs a partial offload."""
    q27 = _info(files, "qwen35-27b", file_size=16_789_889_024)
    weights = sum(q27.layer_weight_bytes) + q27.other_weight_bytes
    full = make_plan(q27, _gpu(24), PlanRequest())
    # every block (64 trunk + the nextn block, llama.cpp's n_layer_all) and the output layer: 65 left
    # block 0 on the CPU on b11434
    assert full.quant == "Q4_K_M" and full.fits and full.n_gpu_layers == full.n_layers + 2 == 66
    # the token embedding (0.7 GB) stays in host memory at any -ngl: not counted against the GPU
    assert weights == 16_789_889_024 and q27.token_embd_bytes == 715_161_600
    assert full.mtp.enabled and full.memory[0].weights == weights - q27.token_embd_bytes
    assert full.memory[0].recurrent_state == 156_893_184 * (1 + 3)  # x (1 + draft n-max 3) with MTP
    part = make_plan(q27, _gpu(12), PlanRequest())
    assert part.fits and part.n_layers == 64 and part.memory[0].total <= part.memory[0].budget
    # the FFN spill: every layer on the GPU, the real ffn_up/gate/down bytes of the first layers in RAM
    assert part.n_cpu_ffn and part.n_gpu_layers > part.n_layers
    spilled = sum(q27.layer_ffn_bytes[: part.n_cpu_ffn])
    assert part.memory[1].weights - q27.token_embd_bytes >= spilled > 0

    moe = make_plan(_info(files, "qwen35moe-35b-a3b"), _gpu(16), PlanRequest())
    assert moe.fits and moe.n_cpu_moe and moe.n_gpu_layers == moe.n_layers + 2  # one nextn block
    gemma = make_plan(_info(files, "gemma4-31b"), _gpu(24), PlanRequest())
    assert gemma.fits and gemma.n_gpu_layers == gemma.n_layers + 1 and not gemma.mtp.enabled
