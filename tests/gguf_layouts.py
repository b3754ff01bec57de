"""Header-only GGUF files with the real key and tensor layout of three released models (no weights).

Tensor names and shapes follow upstream llama.cpp b11434 (src/models/qwen35.cpp, qwen35moe.cpp,
gemma4.cpp `load_arch_tensors`, names from src/llama-arch.cpp; keys from conversion/*.py);
hyperparameters from llmtp/data/catalog.toml (which cites each config.json). Types follow
llama-quantize's Q4_K_M rules (src/llama-quant.cpp), simplified: matrices Q4_K; attn_v and
ffn_down* Q6_K where `use_more_bits` holds, else Q4_K; fused attn_qkv Q5_K; the output head (or
the tied token embedding) Q6_K; 1-D tensors, norms, ssm_conv1d and routers F32. Unsloth's dynamic
quants mix differently: tests compare against this layout, not against a published file size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

Q4_K_M_FILE_TYPE = 15  # LlamaFileType.MOSTLY_Q4_K_M
Layout = tuple[dict[str, Any], list[tuple[str, list[int], str]]]  # kv, [(name, ggml dims, type)]


def use_more_bits(i: int, n: int) -> bool:
    """llama-quant.cpp: the first and last eighth and every third layer between get more bits."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _matrix_type(name: str, dims: list[int]) -> str:
    if (
        len(dims) < 2
        or "_norm" in name
        or "ssm_conv1d" in name
        or "ffn_gate_inp" in name
        or not name.endswith("weight")
    ):
        return "F32"
    return "Q4_K"


class _Builder:
    def __init__(self, n_block: int) -> None:
        self.tensors: list[tuple[str, list[int], str]] = []
        self.n_block = n_block
        self.n_attn_v = 0  # set before adding blocks: attn_v count decides use_more_bits
        self.i_attn_v = 0

    def add(self, name: str, dims: list[int], qtype: str | None = None) -> None:
        if qtype is None:
            qtype = _matrix_type(name, dims)
            il = int(name.split(".")[1]) if name.startswith("blk.") else None
            if qtype == "Q4_K" and ".attn_v." in name:
                qtype = "Q6_K" if use_more_bits(self.i_attn_v, self.n_attn_v) else "Q4_K"
                self.i_attn_v += 1
            elif qtype == "Q4_K" and ".ffn_down" in name and il is not None:
                qtype = "Q6_K" if use_more_bits(il, self.n_block) else "Q4_K"
            elif qtype == "Q4_K" and ".attn_qkv." in name:
                qtype = "Q5_K"
        self.tensors.append((name, dims, qtype))


def _qwen35_kv(
    arch: str, n_block: int, embd: int, heads: int, kv_heads: int, inner: int, dt_rank: int
) -> dict[str, Any]:
    return {
        "general.architecture": arch,
        "general.file_type": Q4_K_M_FILE_TYPE,
        f"{arch}.block_count": n_block,
        f"{arch}.nextn_predict_layers": 1,
        f"{arch}.context_length": 262144,
        f"{arch}.embedding_length": embd,
        f"{arch}.attention.head_count": heads,
        f"{arch}.attention.head_count_kv": kv_heads,
        f"{arch}.attention.key_length": 256,
        f"{arch}.attention.value_length": 256,
        f"{arch}.attention.layer_norm_rms_epsilon": 1e-6,
        f"{arch}.rope.freq_base": 10000000.0,
        f"{arch}.rope.dimension_count": 64,
        f"{arch}.rope.dimension_sections": [11, 11, 10, 0],
        f"{arch}.full_attention_interval": 4,
        f"{arch}.ssm.conv_kernel": 4,
        f"{arch}.ssm.state_size": 128,
        f"{arch}.ssm.group_count": 16,
        f"{arch}.ssm.time_step_rank": dt_rank,
        f"{arch}.ssm.inner_size": inner,
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.chat_template": "{{ messages }}",
    }


def _qwen35_block(
    b: _Builder, il: int, *, embd: int, heads: int, kv_heads: int, dt_rank: int, recurrent: bool, ffn
) -> None:
    """One qwen35/qwen35moe block: gated attention or Gated DeltaNet, then the FFN (`ffn`)."""
    p = f"blk.{il}."
    hd, n_k_heads, head_dim_ssm = 256, 16, 128
    b.add(p + "attn_norm.weight", [embd])
    b.add(p + "post_attention_norm.weight", [embd])
    if recurrent:
        key_dim, value_dim = head_dim_ssm * n_k_heads, head_dim_ssm * dt_rank
        b.add(p + "attn_qkv.weight", [embd, 2 * key_dim + value_dim])
        b.add(p + "attn_gate.weight", [embd, value_dim])
        b.add(p + "ssm_conv1d.weight", [4, 2 * key_dim + value_dim])
        b.add(p + "ssm_dt.bias", [dt_rank])
        b.add(p + "ssm_a", [dt_rank])
        b.add(p + "ssm_beta.weight", [embd, dt_rank])
        b.add(p + "ssm_alpha.weight", [embd, dt_rank])
        b.add(p + "ssm_norm.weight", [head_dim_ssm])
        b.add(p + "ssm_out.weight", [value_dim, embd])
    else:
        b.add(p + "attn_q.weight", [embd, hd * heads * 2])  # query + output gate
        b.add(p + "attn_k.weight", [embd, hd * kv_heads])
        b.add(p + "attn_v.weight", [embd, hd * kv_heads])
        b.add(p + "attn_output.weight", [hd * heads, embd])
        b.add(p + "attn_q_norm.weight", [hd])
        b.add(p + "attn_k_norm.weight", [hd])
    ffn(b, p)


def _nextn(b: _Builder, il: int, embd: int) -> None:
    p = f"blk.{il}.nextn."
    b.add(p + "eh_proj.weight", [2 * embd, embd])
    b.add(p + "enorm.weight", [embd])
    b.add(p + "hnorm.weight", [embd])
    b.add(p + "shared_head_norm.weight", [embd])


def qwen35_27b() -> Layout:
    """Qwen3.6-27B: 64 trunk blocks (every 4th full attention) + 1 nextn block, untied output."""
    embd, n_ff, vocab, n_block, heads, kv_heads, dt_rank = 5120, 17408, 248320, 65, 24, 4, 48
    b = _Builder(n_block)
    b.n_attn_v = 64 // 4 + 1  # 16 trunk attention blocks + the nextn block

    def ffn(b: _Builder, p: str) -> None:
        b.add(p + "ffn_gate.weight", [embd, n_ff])
        b.add(p + "ffn_up.weight", [embd, n_ff])
        b.add(p + "ffn_down.weight", [n_ff, embd])

    b.add("token_embd.weight", [embd, vocab])
    for il in range(n_block):
        _qwen35_block(
            b,
            il,
            embd=embd,
            heads=heads,
            kv_heads=kv_heads,
            dt_rank=dt_rank,
            recurrent=il < 64 and (il + 1) % 4 != 0,
            ffn=ffn,
        )
        if il == 64:
            _nextn(b, il, embd)
    b.add("output_norm.weight", [embd])
    b.add("output.weight", [embd, vocab], "Q6_K")
    kv = _qwen35_kv("qwen35", n_block, embd, heads, kv_heads, 6144, dt_rank)
    kv.update({"general.name": "Qwen3.6-27B", "qwen35.feed_forward_length": n_ff})
    return kv, b.tensors


def qwen35moe_35b_a3b() -> Layout:
    """Qwen3.6-35B-A3B: 40 trunk blocks + 1 nextn; 256 routed experts (8 used) + one shared expert."""
    embd, vocab, n_block, heads, kv_heads, dt_rank, n_exp, n_ff_exp = 2048, 248320, 41, 16, 2, 32, 256, 512
    b = _Builder(n_block)
    b.n_attn_v = 40 // 4 + 1

    def ffn(b: _Builder, p: str) -> None:
        b.add(p + "ffn_gate_inp.weight", [embd, n_exp])
        b.add(p + "ffn_gate_exps.weight", [embd, n_ff_exp, n_exp])
        b.add(p + "ffn_up_exps.weight", [embd, n_ff_exp, n_exp])
        b.add(p + "ffn_down_exps.weight", [n_ff_exp, embd, n_exp])
        b.add(p + "ffn_gate_inp_shexp.weight", [embd])
        b.add(p + "ffn_gate_shexp.weight", [embd, n_ff_exp])
        b.add(p + "ffn_up_shexp.weight", [embd, n_ff_exp])
        b.add(p + "ffn_down_shexp.weight", [n_ff_exp, embd])

    b.add("token_embd.weight", [embd, vocab])
    for il in range(n_block):
        _qwen35_block(
            b,
            il,
            embd=embd,
            heads=heads,
            kv_heads=kv_heads,
            dt_rank=dt_rank,
            recurrent=il < 40 and (il + 1) % 4 != 0,
            ffn=ffn,
        )
        if il == 40:
            _nextn(b, il, embd)
    b.add("output_norm.weight", [embd])
    b.add("output.weight", [embd, vocab], "Q6_K")
    kv = _qwen35_kv("qwen35moe", n_block, embd, heads, kv_heads, 4096, dt_rank)
    kv.update(
        {
            "general.name": "Qwen3.6-35B-A3B",
            "qwen35moe.expert_count": n_exp,
            "qwen35moe.expert_used_count": 8,
            "qwen35moe.expert_feed_forward_length": n_ff_exp,
            "qwen35moe.expert_shared_feed_forward_length": n_ff_exp,
        }
    )
    return kv, b.tensors


def gemma4_31b() -> Layout:
    """Gemma 4 31B: 60 blocks, 5 sliding (16 KV heads x 256) per global (4 KV heads x 512, K = V:
    no attn_v on global blocks, which upstream allows with TENSOR_NOT_REQUIRED); tied embedding."""
    embd, n_ff, vocab, n_block, heads = 5376, 21504, 262144, 60, 32
    swa = [(il + 1) % 6 != 0 for il in range(n_block)]
    b = _Builder(n_block)
    b.n_attn_v = sum(swa)
    b.add("token_embd.weight", [embd, vocab], "Q6_K")  # tied: also the output head
    b.add("rope_freqs.weight", [512 // 2])  # global layers' proportional rope
    for il in range(n_block):
        p = f"blk.{il}."
        hd, kv_heads = (256, 16) if swa[il] else (512, 4)
        b.add(p + "attn_norm.weight", [embd])
        b.add(p + "attn_q.weight", [embd, hd * heads])
        b.add(p + "attn_k.weight", [embd, hd * kv_heads])
        if swa[il]:
            b.add(p + "attn_v.weight", [embd, hd * kv_heads])
        b.add(p + "attn_output.weight", [hd * heads, embd])
        b.add(p + "attn_q_norm.weight", [hd])
        b.add(p + "attn_k_norm.weight", [hd])
        b.add(p + "post_attention_norm.weight", [embd])
        b.add(p + "layer_output_scale.weight", [1])
        b.add(p + "ffn_norm.weight", [embd])
        b.add(p + "ffn_gate.weight", [embd, n_ff])
        b.add(p + "ffn_up.weight", [embd, n_ff])
        b.add(p + "ffn_down.weight", [n_ff, embd])
        b.add(p + "post_ffw_norm.weight", [embd])
    b.add("output_norm.weight", [embd])
    kv = {
        "general.architecture": "gemma4",
        "general.name": "Gemma 4 31B",
        "general.file_type": Q4_K_M_FILE_TYPE,
        "gemma4.block_count": n_block,
        "gemma4.context_length": 262144,
        "gemma4.embedding_length": embd,
        "gemma4.feed_forward_length": n_ff,
        "gemma4.attention.head_count": heads,
        "gemma4.attention.head_count_kv": [16 if s else 4 for s in swa],
        "gemma4.attention.key_length": 512,
        "gemma4.attention.value_length": 512,
        "gemma4.attention.key_length_swa": 256,
        "gemma4.attention.value_length_swa": 256,
        "gemma4.attention.sliding_window": 1024,
        "gemma4.attention.sliding_window_pattern": swa,
        "gemma4.attention.shared_kv_layers": 0,
        "gemma4.embedding_length_per_layer_input": 0,
        "gemma4.attention.layer_norm_rms_epsilon": 1e-6,
        "gemma4.final_logit_softcapping": 30.0,
        "gemma4.rope.dimension_count": 512,
        "gemma4.rope.dimension_count_swa": 256,
        "tokenizer.ggml.model": "gemma4",
        "tokenizer.chat_template": "{{ messages }}",
    }
    return kv, b.tensors


LAYOUTS = {"qwen35-27b": qwen35_27b, "qwen35moe-35b-a3b": qwen35moe_35b_a3b, "gemma4-31b": gemma4_31b}


def tensor_bytes(dims: list[int], qtype: str) -> int:
    block, size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    n = int(np.prod(dims, dtype=np.int64))
    assert n % block == 0, (dims, qtype)
    return n // block * size


def write_header_only(path: Path, layout: Layout) -> Path:
    """Write the header (key/values + tensor infos) and stop: no tensor data follows."""
    kv, tensors = layout
    arch = kv["general.architecture"]
    w = GGUFWriter(str(path), arch)  # writes general.architecture itself
    for key, value in kv.items():
        if key == "general.architecture":
            continue
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_array(key, value)
    for name, dims, qtype in tensors:
        # numpy order is ggml's reversed; a float32 dtype with raw_dtype keeps the shape in elements
        w.add_tensor_info(
            name,
            list(reversed(dims)),
            np.dtype(np.float32),
            tensor_bytes(dims, qtype),
            raw_dtype=GGMLQuantizationType[qtype],
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    w.close()
    return path
