"""`llmtp inspect MODEL.gguf`: what a GGUF file holds (arch, quant, layers, MTP heads, KV cost)."""

from __future__ import annotations

from pathlib import Path

import typer


def inspect(
    model: str = typer.Argument(
        ..., help="Path of a .gguf file, or a downloaded model: alias or org/repo:QUANT.", show_default=False
    ),
    json_out: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Read a GGUF header: architecture, size, quant, layers, MTP heads and KV-cache cost per token."""
    from llmtp.adapters.gguf_file import read_model_info

    info = read_model_info(_local_file(model))
    if json_out:
        from llmtp.cli._out import emit_json

        data = info.model_dump(mode="json")
        data["has_mtp_heads"] = info.has_mtp_heads
        emit_json(data)
        return
    render(info)


def _local_file(model: str) -> Path:
    """A path as given; an alias or hub reference: its file on disk (HF cache, LLAMA_CACHE, pulls)."""
    path = Path(model).expanduser()
    if path.exists() or path.suffix.lower() == ".gguf":
        return path
    from llmtp.errors import ModelNotDownloadedError
    from llmtp.services.models.resolve import resolve_model
    from llmtp.settings import load_settings

    resolved = resolve_model(model, load_settings().settings)
    if resolved.path is None:
        raise ModelNotDownloadedError(
            f"{model} is not downloaded: there is no file to inspect",
            f"Run `llmtp models pull {model}` first, or `llmtp plan {model}` for what the catalog knows.",
        )
    return Path(resolved.path)


def rows(info) -> list[tuple[str, str]]:
    """The human view: (label, value) pairs built from the same ModelInfo as --json."""
    from llmtp.cli._out import human_bytes

    def opt(value) -> str:
        return "unknown" if value is None else str(value)

    mtp = (
        f"yes ({info.nextn_predict_layers} nextn layer{'s' if info.nextn_predict_layers > 1 else ''})"
        if info.has_mtp_heads
        else ("no (heads not in this file)" if info.mtp_arch else "no")
    )
    types = ", ".join(
        f"{name} {human_bytes(n)}" for name, n in sorted(info.tensor_types.items(), key=lambda kv: -kv[1])
    )
    heads_kv = None
    if info.head_count_kv:
        distinct = sorted(set(info.head_count_kv))
        heads_kv = str(distinct[0]) if len(distinct) == 1 else ",".join(map(str, info.head_count_kv))
    out = [
        ("file", opt(info.path)),
        ("size", human_bytes(info.file_size_bytes)),
        ("name", opt(info.name)),
        ("architecture", info.arch + (" (MTP graph upstream)" if info.mtp_arch else "")),
        ("parameters", _count(info.param_count)),
        ("quant", opt(info.quant)),
        ("tensor types", types or "none"),
        (
            "blocks",
            opt(info.block_count)
            + (
                f" ({info.trunk_layers} trunk + {info.nextn_predict_layers} nextn)" if info.nextn_predict_layers else ""
            ),
        ),
        ("MTP heads", mtp),
        ("trained context", opt(info.context_length)),
        ("embedding", opt(info.embedding_length)),
        ("heads / KV heads", f"{opt(info.head_count)} / {opt(heads_kv)}"),
        ("head dims (k/v)", f"{opt(info.key_length)} / {opt(info.value_length)}"),
    ]
    if info.attention_layers is not None:
        out.append(("attention layers", f"{len(info.attention_layers)} of {info.trunk_layers}"))
    if info.recurrent_layers:
        state = human_bytes(info.ssm_state_bytes_per_seq)
        interval = f", full attention every {info.full_attention_interval}" if info.full_attention_interval else ""
        out.append(("recurrent layers", f"{len(info.recurrent_layers)} ({state} f32 state per sequence{interval})"))
    if info.sliding_window:
        n_swa = None if info.sliding_window_pattern is None else sum(info.sliding_window_pattern)
        out.append(("sliding window", f"{info.sliding_window} tokens on {opt(n_swa)} layers"))
    if info.expert_count:
        out.append(("experts", f"{info.expert_used_count} of {info.expert_count} used"))
    kv = ", ".join(f"{t} {human_bytes(n)}" for t, n in info.kv_bytes_per_token.items())
    out.append(("KV per token", kv or "unknown"))
    if info.nextn_kv_bytes_per_token:
        out.append(
            (
                "MTP draft KV per token",
                ", ".join(f"{t} {human_bytes(n)}" for t, n in info.nextn_kv_bytes_per_token.items()),
            )
        )
    out.append(("tokenizer", opt(info.tokenizer_model) + (" + chat template" if info.chat_template else "")))
    return out


def _count(n: int | None) -> str:
    if n is None:
        return "unknown"
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= scale:
            return f"{n / scale:.2f} {unit} ({n})"
    return str(n)


def render(info) -> None:
    from rich.table import Table

    from llmtp.cli._out import console

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for label, value in rows(info):
        table.add_row(label, value)
    console().print(table)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
