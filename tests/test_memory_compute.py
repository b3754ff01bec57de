"""Compute buffers and the MTP draft reserve against llama-server's own numbers (captured, CPU b11434)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmtp.core import memory as mem
from llmtp.core.gguf_meta import ModelInfo

MiB = 1024 * 1024
DATA = json.loads((Path(__file__).parent / "fixtures/llama/b11434-cpu/compute-buffers.json").read_text())

# Shapes where, as in every released model, the FFN step is the peak (n_ff > n_embd), or the test
# bed's own tiny shape. The toy shapes with wide SSM or attention next to a 64-wide FFN (h8, s64,
# s64h8, a8) peak in the recurrent/attention step, which the model leaves out (docs/planning.md).
MODELLED = {"t0", "e640", "f512", "f2048", "e1024f4096", "q27ratio"}


def _info(r: dict) -> ModelInfo:
    return ModelInfo(
        arch="qwen35",
        embedding_length=r["n_embd"],
        feed_forward_length=r["n_ff"],
        head_count=r.get("n_head"),
        head_count_kv=[r.get("n_head_kv", 1)],
        key_length=r.get("head_dim"),
        value_length=r.get("head_dim"),
    )


@pytest.mark.parametrize(
    "r",
    [r for r in DATA["qwen35"] if r["name"] in MODELLED],
    ids=lambda r: f"{r['name']}-{r['ctx']}-{r['ub']}-{'mtp' if r['mtp'] else 'plain'}",
)
def test_target_context_compute_within_half_a_percent(r):
    predicted = mem.compute_buffer_bytes(_info(r), r["ctx"], r["ub"]) / MiB
    assert predicted == pytest.approx(r["compute_mib"][0], rel=0.005)


@pytest.mark.parametrize("r", DATA["llama_smollm2_135m_q4_1"], ids=lambda r: f"{r['ctx']}-{r['ub']}-fa{r['fa']}")
def test_llama_compute_with_and_without_flash_attention(r):
    info = ModelInfo(arch="llama", embedding_length=r["n_embd"], feed_forward_length=r["n_ff"], head_count=r["n_head"])
    predicted = mem.compute_buffer_bytes(info, r["ctx"], r["ub"], flash_attn=r["fa"]) / MiB
    assert predicted == pytest.approx(r["compute_mib"], rel=0.01)


@pytest.mark.parametrize(
    "r",
    [r for r in DATA["qwen35"] if r["mtp"] and r["name"] in MODELLED],
    ids=lambda r: f"{r['name']}-{r['ctx']}-{r['ub']}",
)
def test_mtp_draft_compute(r):
    # the draft context's own buffer (printed after the target's), without its KV
    info = _info(r)
    draft = (mem.mtp_draft_bytes(info, r["ctx"], n_ubatch=r["ub"]) - mem.nextn_kv_bytes(info, r["ctx"])) / MiB
    tolerance = 0.10 if (r["name"], r["ctx"]) in {("f2048", 2048), ("q27ratio", 2048)} else 0.03
    assert draft == pytest.approx(r["compute_mib"][-1], rel=tolerance)


def test_mtp_draft_on_a_gpu_uses_the_documented_cuda_figures():
    info = ModelInfo(
        arch="qwen35",
        embedding_length=5120,
        feed_forward_length=17408,
        block_count=65,
        nextn_predict_layers=1,
        head_count=24,
        head_count_kv=[4] * 65,
        key_length=256,
        value_length=256,
    )
    ctx = 16384
    gpu = mem.mtp_draft_bytes(info, ctx, gpu=True)
    assert gpu == mem.nextn_kv_bytes(info, ctx) + 4096 * ctx + 500 * MiB  # 64 MiB at 16k + headroom
    # the CPU build has no verify headroom: the reserve of a tiny model is no longer ~0.5 GiB
    tiny = next(r for r in DATA["qwen35"] if r["name"] == "t0" and r["mtp"])
    assert mem.mtp_draft_bytes(_info(tiny), 4096) < 16 * MiB


def test_moe_models_count_the_experts_a_token_goes_through():
    moe = ModelInfo(
        arch="qwen35moe",
        embedding_length=2048,
        feed_forward_length=None,
        expert_count=256,
        expert_used_count=8,
        expert_feed_forward_length=512,
        expert_shared_feed_forward_length=512,
    )
    # 8 routed experts of 512 + the shared one = a 4608-wide FFN step
    assert mem.compute_buffer_bytes(moe, 0, 512) == 512 * (4 * (5 * 2048 + 3 * 4608) + 40)
