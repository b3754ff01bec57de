"""LaunchSpec: everything that decides one llama-server launch, independent of the binary's dialect.

The planner fills it, `serve`/`verify`/`tune` adjust it, llmtp/core/argv.py turns it into argv for a
given binary's Capabilities.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core import limits


class MtpSettings(BaseModel):
    enabled: bool = False
    n_max: limits.DraftTokens = 3  # --spec-draft-n-max (upstream default 3)
    n_min: limits.DraftTokens | None = None  # --spec-draft-n-min; None = upstream default
    p_min: limits.Fraction | None = None  # --spec-draft-p-min; None = upstream default (0.0)
    draft_model: str | None = None  # -md sidecar (Gemma 4 mtp-*.gguf); None = heads embedded in the model
    extra_types: list[str] = Field(default_factory=list)  # stacked, e.g. ["ngram-mod"]
    draft_ngl: int | str | None = None  # --spec-draft-ngl


class LaunchSpec(BaseModel):
    model: str  # path to the GGUF
    alias: str | None = None  # --alias: the model name /v1/models shows (llmtp alias or file stem)
    host: str = "127.0.0.1"
    port: int
    n_gpu_layers: int | Literal["auto", "all"] | None = None  # None: leave to the binary
    ctx_size: int | None = None  # -c; None: leave to the binary
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    flash_attn: Literal["on", "off", "auto"] | None = None
    n_cpu_moe: int | None = None
    n_cpu_ffn: int | None = None  # dense FFN weights of the first N layers in system RAM (--n-cpu-ffn or -ot)
    parallel: int | None = None  # -np
    threads: int | None = None
    fit: Literal["on", "off"] | None = None
    mtp: MtpSettings = Field(default_factory=MtpSettings)
    metrics: bool = True
    api_key_file: str | None = None
    log_file: str | None = None
    seed: int | None = None
    ui: bool = True  # False: llama-server's own --no-ui (its web UI off; `llmtp serve --no-ui`)
    extra_args: list[str] = Field(default_factory=list)  # user pass-through after `--`
    rpc: list[str] = Field(default_factory=list)  # RPC workers HOST:PORT (--rpc); see core/rpc.py
    devices: list[str] = Field(default_factory=list)  # -dev order (RPC devices first); empty: llama.cpp's
    tensor_split: list[int] = Field(default_factory=list)  # -ts proportions, one per entry of `devices`


ALIAS_MAX_CHARS = 128


def alias_problem(name: str) -> str | None:
    """Why `name` cannot be the model name llama-server shows (--alias), or None when it can.
    llama-server splits --alias at commas into several names (common/arg.cpp, b11434)."""
    if not name.strip():
        return "it is empty"
    if "," in name:
        return "llama-server reads a comma as a separator between several names"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a control character"
    if len(name) > ALIAS_MAX_CHARS:
        return f"it is longer than {ALIAS_MAX_CHARS} characters"
    return None


def default_alias(model_path: str, catalog_alias: str | None) -> str:
    """The name clients see when the user gave none: the llmtp alias, else the file name without .gguf."""
    if catalog_alias:
        return catalog_alias
    name = model_path.replace("\\", "/").rsplit("/", 1)[-1]
    stem = name[:-5] if name.lower().endswith(".gguf") else name
    return stem.replace(",", "_")[:ALIAS_MAX_CHARS] or "model"
