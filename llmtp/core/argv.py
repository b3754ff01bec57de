"""Turn a LaunchSpec into llama-server argv for one binary's dialect (its probed Capabilities).

Built like Ollama's `append*Args`: one small helper per concern, each asking the binary which
spelling it accepts. A flag the binary does not know is an error only where the user asked for the
feature; otherwise it is left to the binary's default (unknown stays unknown).
"""

from __future__ import annotations

from collections.abc import Callable

from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec
from llmtp.core.passthrough import check_passthrough, flag_name
from llmtp.errors import ServeError, UsageError

_Appender = Callable[[list[str], Capabilities, LaunchSpec], None]

# Pass-through flags that would fight the MTP flags llmtp sets (a second draft model, another
# speculative type, the removed --draft* family, the branch dialect). Spellings from
# `llama-server --help` b11434 plus the qwen3-mtp branch.
_MTP_CONFLICTS = frozenset(
    {
        "-md",
        "--model-draft",
        "--spec-draft-model",
        "-hfd",
        "-hfrd",
        "--hf-repo-draft",
        "--spec-draft-hf",
        "--spec-type",
        "--spec-default",
        "--spec-draft-n-max",
        "--spec-draft-n-min",
        "--spec-draft-p-min",
        "--draft-p-min",
        "--mtp",
        "--mtp-draft-tokens",
    }
)


def _flag(caps: Capabilities, *spellings: str, what: str) -> str:
    """The spelling this binary accepts, or a ServeError naming the feature the spec asked for."""
    found = caps.first_of(*spellings)
    if found is None:
        raise ServeError(
            f"This llama-server does not accept {' / '.join(spellings)} (needed for {what})",
            "Rebuild a newer llama.cpp with `llmtp build`, or drop the setting.",
        )
    return found


def _fmt(value: object) -> str:
    return str(value)


def _append_model(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    argv += [_flag(caps, "-m", "--model", what="the model path"), spec.model]


def _append_alias(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    # The name OpenAI clients see in /v1/models and may send as "model"; without it llama-server
    # shows the file path.
    if spec.alias is not None:
        argv += [_flag(caps, "-a", "--alias", what="the model name clients see"), spec.alias]


def _append_listen(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    # --port always explicit: upstream's default port has changed before.
    argv += [_flag(caps, "--host", what="the bind address"), spec.host]
    argv += [_flag(caps, "--port", what="the port"), str(spec.port)]


def _append_gpu_layers(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.n_gpu_layers is not None:
        flag = _flag(caps, "-ngl", "--n-gpu-layers", "--gpu-layers", what="GPU offload")
        argv += [flag, _fmt(spec.n_gpu_layers)]


def _append_context(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.ctx_size is not None:
        argv += [_flag(caps, "-c", "--ctx-size", what="the context size"), str(spec.ctx_size)]


def _append_cache_types(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.cache_type_k is not None:
        argv += [_flag(caps, "-ctk", "--cache-type-k", what="the K cache type"), spec.cache_type_k]
    if spec.cache_type_v is not None:
        argv += [_flag(caps, "-ctv", "--cache-type-v", what="the V cache type"), spec.cache_type_v]


def _flash_attn_takes_value(caps: Capabilities) -> bool:
    # New form `-fa, --flash-attn [on|off|auto]` (value required since mid-2025);
    # old form `-fa, --flash-attn  enable Flash Attention (default: disabled)` is a bare switch.
    values = caps.enums.get("-fa") or caps.enums.get("--flash-attn") or []
    return "on" in values


def _append_flash_attn(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.flash_attn is None:
        return
    flag = _flag(caps, "-fa", "--flash-attn", what="flash attention")
    if _flash_attn_takes_value(caps):
        argv += [flag, spec.flash_attn]
    elif spec.flash_attn == "on":
        argv.append(flag)
    # old boolean form: off and auto both mean "leave the switch out" (off is its default)


def _append_moe(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.n_cpu_moe is not None:
        flag = _flag(caps, "--n-cpu-moe", "-ncmoe", what="MoE experts on the CPU")
        argv += [flag, str(spec.n_cpu_moe)]


def cpu_ffn_override(n: int) -> str:
    """The -ot value that keeps the dense FFN weights of layers 0..n-1 in system RAM: what llama.cpp's
    --n-cpu-ffn adds (common/common.h, b11434: `blk\\.%d` + LLM_FFN_DENSE_REGEX `\\.ffn_(up|down|gate)\\.`,
    buffer type CPU), as one pattern for binaries that have -ot but not --n-cpu-ffn."""
    layers = "|".join(str(i) for i in range(n))
    return f"blk\\.({layers})\\.ffn_(up|down|gate)\\.=CPU"


def _append_cpu_ffn(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if not spec.n_cpu_ffn:
        return
    flag = caps.first_of("--n-cpu-ffn", "-ncffn")
    if flag is not None:
        argv += [flag, str(spec.n_cpu_ffn)]
        return
    argv += [
        _flag(caps, "-ot", "--override-tensor", what="dense FFN weights on the CPU"),
        cpu_ffn_override(spec.n_cpu_ffn),
    ]


def _append_parallel(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.parallel is not None:
        argv += [_flag(caps, "-np", "--parallel", what="the slot count"), str(spec.parallel)]


def _append_threads(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.threads is not None:
        argv += [_flag(caps, "-t", "--threads", what="the thread count"), str(spec.threads)]


def _append_fit(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.fit is not None:
        if caps.accepts("--fit"):
            argv += ["--fit", spec.fit]
        elif spec.fit == "on":
            raise ServeError(
                "This llama-server has no --fit (llama.cpp's own memory fitting)",
                "Let llmtp plan the offload (drop --fit), or rebuild a newer llama.cpp.",
            )
        # fit off on a binary without --fit: nothing to turn off


def _append_mtp(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    mtp = spec.mtp
    if not mtp.enabled:
        return
    dialect = caps.mtp_dialect
    if dialect == "upstream":
        types = ["draft-mtp", *[t for t in mtp.extra_types if t != "draft-mtp"]]
        unknown = [t for t in types if t not in caps.spec_types]
        if unknown:
            raise ServeError(
                f"This llama-server does not know speculative type(s) {', '.join(unknown)}",
                f"Known types: {', '.join(caps.spec_types)}.",
            )
        argv += ["--spec-type", ",".join(types)]
        argv += [_flag(caps, "--spec-draft-n-max", what="the MTP draft length"), str(mtp.n_max)]
        if mtp.n_min is not None:
            argv += [_flag(caps, "--spec-draft-n-min", what="the MTP minimum draft"), str(mtp.n_min)]
        if mtp.p_min is not None:
            argv += [_flag(caps, "--spec-draft-p-min", "--draft-p-min", what="the MTP p-min"), _fmt(mtp.p_min)]
        if mtp.draft_model is not None:
            argv += [_flag(caps, "-md", "--spec-draft-model", "--model-draft", what="the MTP sidecar"), mtp.draft_model]
        if mtp.draft_ngl is not None:
            argv += [
                _flag(caps, "--spec-draft-ngl", "-ngld", "--n-gpu-layers-draft", what="the MTP draft GPU layers"),
                _fmt(mtp.draft_ngl),
            ]
        _append_draft_cache_types(argv, caps, spec)
        return
    if dialect == "branch":
        # The unmerged qwen3-mtp branch: heads embedded only, no sidecar, no stacking.
        if mtp.draft_model is not None or mtp.extra_types:
            raise ServeError(
                "This llama-server speaks the qwen3-mtp branch dialect (--mtp), which has "
                "no MTP sidecar model and no stacked speculative types",
                "Build upstream llama.cpp (b9180 or newer) with `llmtp build`.",
            )
        argv += ["--mtp", "1", "--mtp-draft-tokens", str(mtp.n_max)]
        return
    raise ServeError(
        "MTP was requested but this llama-server has neither `--spec-type draft-mtp` nor `--mtp`",
        "Rebuild a llama.cpp with MTP (upstream b9180 or newer) with `llmtp build`, or serve with --no-mtp.",
    )


def _append_draft_cache_types(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    """The draft context keeps its own KV in f16 unless told (b11434): give it the plan's cache
    types, which the plan's MTP reserve already assumes. Older binaries without the flags keep f16."""
    for value, spellings in (
        (spec.cache_type_k, ("-ctkd", "--cache-type-k-draft", "--spec-draft-type-k")),
        (spec.cache_type_v, ("-ctvd", "--cache-type-v-draft", "--spec-draft-type-v")),
    ):
        flag = caps.first_of(*spellings)
        if value is not None and value != "f16" and flag is not None:
            argv += [flag, value]


def _append_metrics(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.metrics and caps.accepts("--metrics"):
        argv.append("--metrics")  # status and verify read acceptance from /metrics; absent = unknown


def _append_api_key(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    # Only the file form: a key on argv is readable by every user through `ps`.
    if spec.api_key_file is not None:
        argv += [_flag(caps, "--api-key-file", what="the API key file"), spec.api_key_file]


def _append_ui(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    # The UI is on by default in every llama-server that has one; a binary whose --help lists neither
    # spelling predates the switch and is left as it is.
    flag = caps.first_of("--no-ui", "--no-webui")
    if not spec.ui and flag is not None:
        argv.append(flag)


def _append_log_file(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.log_file is not None:
        argv += [_flag(caps, "--log-file", what="the log file"), spec.log_file]


def _append_seed(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    if spec.seed is not None:
        argv += [_flag(caps, "-s", "--seed", what="the seed"), str(spec.seed)]


def _append_rpc(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    # --rpc registers the workers' devices before -dev names them (llama.cpp parses in order).
    if spec.rpc:
        argv += [_flag(caps, "--rpc", what="RPC workers"), ",".join(spec.rpc)]
    if spec.devices:
        argv += [_flag(caps, "-dev", "--device", what="the device order"), ",".join(spec.devices)]
    if spec.tensor_split:
        argv += [
            _flag(caps, "-ts", "--tensor-split", what="the tensor split"),
            ",".join(str(s) for s in spec.tensor_split),
        ]


def check_extra_args(spec: LaunchSpec, set_by_llmtp: list[str] | None = None) -> None:
    """Refuse pass-through flags that llmtp owns, that change exposure (core/passthrough.py), or
    that fight the MTP settings. `set_by_llmtp`: the argv llmtp built before the pass-through."""
    check_passthrough(spec.extra_args, set_by_llmtp or [])
    for arg in spec.extra_args:
        name = flag_name(arg)
        if spec.mtp.enabled and (name in _MTP_CONFLICTS or name.startswith("--draft")):
            raise UsageError(
                f"The pass-through flag {name} conflicts with MTP, which llmtp already configures "
                "(--spec-type draft-mtp and its draft settings)",
                "Drop the flag, or serve with --no-mtp to configure speculative decoding yourself.",
            )


def _append_extra(argv: list[str], caps: Capabilities, spec: LaunchSpec) -> None:
    check_extra_args(spec, argv)
    argv += spec.extra_args


_APPENDERS: tuple[_Appender, ...] = (
    _append_model,
    _append_alias,
    _append_listen,
    _append_rpc,
    _append_gpu_layers,
    _append_context,
    _append_cache_types,
    _append_flash_attn,
    _append_moe,
    _append_cpu_ffn,
    _append_parallel,
    _append_threads,
    _append_fit,
    _append_mtp,
    _append_metrics,
    _append_api_key,
    _append_ui,
    _append_log_file,
    _append_seed,
    _append_extra,
)


def build_server_argv(server: str, caps: Capabilities, spec: LaunchSpec) -> list[str]:
    """Full argv (binary first) for `spec` in the dialect `caps` describes."""
    argv = [server]
    for append in _APPENDERS:
        append(argv, caps, spec)
    return argv
