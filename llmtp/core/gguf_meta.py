"""What llmtp knows about a GGUF model: metadata distilled from the header and tensor table.

Built from plain values (a key/value dict and a tensor list) so planning and tests need no file.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class TensorInfo(BaseModel):
    name: str
    shape: list[int]
    type: str  # ggml type name: "F16", "Q4_K", ...
    n_bytes: int


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
    layer_weight_bytes: list[int] = Field(default_factory=list)  # per block (incl. nextn blocks)
    other_weight_bytes: int | None = None  # token embedding, output head, final norm
    kv_bytes_per_token: dict[str, int] = Field(default_factory=dict)  # cache type -> bytes/token (f16, q8_0, q4_0)
    mtp_arch: bool = False  # architecture has an MTP graph upstream
    tokenizer_model: str | None = None
    chat_template: bool = False

    @property
    def has_mtp_heads(self) -> bool:
        return self.nextn_predict_layers > 0
