"""A ModelInfo from catalog numbers alone (no file): what `llmtp plan ALIAS` plans with before a download."""

from __future__ import annotations

from llmtp.core.catalog import MTP_GRAPH_ARCHS, NOMINAL_BPW, ArchMeta, CatalogEntry
from llmtp.core.gguf_meta import ModelInfo


def _layer_kinds(meta: ArchMeta, n_trunk: int) -> tuple[list[bool], list[bool]]:
    """(is_recurrent, is_swa) per trunk layer, from the hybrid interval or the SWA period."""
    recurrent = [False] * n_trunk
    swa = [False] * n_trunk
    if meta.full_attention_interval:
        k = meta.full_attention_interval
        recurrent = [(i + 1) % k != 0 for i in range(n_trunk)]
    if meta.sliding_window_period:
        p = meta.sliding_window_period
        swa = [(i + 1) % p != 0 for i in range(n_trunk)]
    return recurrent, swa


def model_info_from_catalog(
    entry: CatalogEntry, quant_name: str | None = None, listed_size: int | None = None
) -> ModelInfo:
    """A ModelInfo from catalog numbers alone (no file): what `plan ALIAS` uses before a download.

    `listed_size` is the file's size in the repo's hub listing; it replaces the catalog's figure.
    Per-layer weight bytes are not published; they are the file size spread evenly over the blocks
    after the token embedding and output head (each vocab x n_embd at the quant's nominal width).
    """
    meta = entry.arch
    quant = entry.quant(quant_name) or entry.quant(None)
    assert quant is not None
    size = listed_size if listed_size is not None else entry.estimated_size_bytes(quant)[0]
    n_trunk = None if meta.block_count is None else meta.block_count - meta.nextn_layers
    info = ModelInfo(
        arch=meta.arch,
        name=entry.name,
        quant=quant.name,
        file_size_bytes=size,
        param_count=None if meta.params_b is None else int(meta.params_b * 1e9),
        block_count=meta.block_count,
        nextn_predict_layers=meta.nextn_layers,
        trunk_layers=n_trunk,
        context_length=meta.context_length,
        embedding_length=meta.embedding_length,
        feed_forward_length=meta.feed_forward_length,
        head_count=meta.head_count,
        key_length=meta.key_length,
        value_length=meta.value_length,
        key_length_swa=meta.key_length_swa,
        value_length_swa=meta.value_length_swa,
        sliding_window=meta.sliding_window,
        full_attention_interval=meta.full_attention_interval,
        expert_count=meta.expert_count,
        expert_used_count=meta.expert_used_count,
        expert_feed_forward_length=meta.expert_feed_forward_length,
        expert_shared_feed_forward_length=meta.expert_shared_feed_forward_length,
        mtp_arch=meta.arch in MTP_GRAPH_ARCHS,
    )
    if n_trunk is None or meta.block_count is None:
        return info
    recurrent, swa = _layer_kinds(meta, n_trunk)
    all_layers = meta.block_count
    if meta.head_count_kv is not None:
        kv = []
        for i in range(all_layers):
            if i < n_trunk and recurrent[i]:
                kv.append(0)
            elif i < n_trunk and swa[i] and meta.head_count_kv_swa is not None:
                kv.append(meta.head_count_kv_swa)
            else:
                kv.append(meta.head_count_kv)
        info.head_count_kv = kv
    info.recurrent_layers = [i for i in range(n_trunk) if recurrent[i]]
    if meta.sliding_window_period:
        info.sliding_window_pattern = swa + [False] * meta.nextn_layers
    if None not in (meta.ssm_conv_kernel, meta.ssm_state_size, meta.ssm_group_count, meta.ssm_inner_size):
        info.ssm_state_bytes_per_seq = len(info.recurrent_layers) * recurrent_state_bytes_per_layer(
            meta.ssm_conv_kernel, meta.ssm_state_size, meta.ssm_group_count, meta.ssm_inner_size
        )  # type: ignore[arg-type]
    if size is not None:
        bpw = NOMINAL_BPW.get(quant.name.upper(), size * 8 / max(1, info.param_count or size))
        # vocabulary unknown: no head to set apart, the whole file is spread over the blocks (the
        # total stays the file size; counting unknown weights as zero would make anything "fit")
        head = int(meta.vocab_size * (meta.embedding_length or 0) * bpw / 8) if meta.vocab_size else 0
        other = 2 * head  # token_embd + output (untied; tied models store one, which we overcount)
        per_layer = max(0, size - other) // all_layers
        info.other_weight_bytes = size - per_layer * all_layers
        info.layer_weight_bytes = [per_layer] * all_layers
        info.token_embd_bytes = head
        if meta.expert_count and meta.expert_feed_forward_length and meta.embedding_length:
            # gate, up and down projections of every routed expert
            exps = int(meta.expert_count * 3 * meta.embedding_length * meta.expert_feed_forward_length * bpw / 8)
            info.layer_expert_bytes = [min(per_layer, exps)] * n_trunk + [0] * meta.nextn_layers
        elif meta.feed_forward_length and meta.embedding_length:
            # a dense FFN: gate, up and down projections (what --n-cpu-ffn moves to the CPU)
            ffn = int(3 * meta.embedding_length * meta.feed_forward_length * bpw / 8)
            info.layer_ffn_bytes = [min(per_layer, ffn)] * all_layers
    return info


def recurrent_state_bytes_per_layer(d_conv: int, d_state: int, n_group: int, d_inner: int) -> int:
    """f32 state of one Gated DeltaNet / Mamba layer for one sequence.

    llama.cpp llama-hparams.cpp: n_embd_r = (d_conv - 1) * (d_inner + 2 * n_group * d_state) (conv),
    n_embd_s = d_state * d_inner (ssm); both f32.
    """
    return 4 * ((d_conv - 1) * (d_inner + 2 * n_group * d_state) + d_state * d_inner)
