"""The launch options, declared once: `serve`, `service install`, `plan`, `verify` and `worker start/install`
take them from here, and `launch_request` turns them into the one LaunchRequest (core/launch_plan.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmtp.cli._complete import model_names
from llmtp.core import limits
from llmtp.core.launch_plan import LaunchRequest
from llmtp.errors import UsageError

Model = Annotated[
    str,
    typer.Argument(
        help="Alias (`llmtp models list`), GGUF path, or org/repo:QUANT (also hf:, hf.co/).", autocompletion=model_names
    ),
]
ModelsMax = Annotated[
    Optional[int],
    typer.Option(
        "--models-max",
        help="With several models: how many may be loaded at once (default: as many as fit together).",
        **limits.option(limits.ModelsMax),
    ),
]
IdleUnload = Annotated[
    Optional[int],
    typer.Option(
        "--idle-unload",
        metavar="SECONDS",
        help="With several models: a model idle this long sleeps and frees its memory (llama-server's sleep).",
        **limits.option(limits.IdleSeconds),
    ),
]


def split_models(model: str, extra: list[str] | None) -> tuple[list[str], list[str]]:
    """`serve A B C -- --flag v`: click hands B, C and the words after `--` to one list. A llama-server command
    line starts with a flag, so the words before the first flag are more models and the rest is passed through."""
    words = list(extra or [])
    n = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
    return [model, *words[:n]], words[n:]


Extra = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="More models (`serve A B C`: one router port serves them all), then after `--`: flags passed to "
        "llama-server as is."
    ),
]
Host = Annotated[Optional[str], typer.Option(help="Bind address (default from settings: 127.0.0.1).")]
Port = Annotated[Optional[int], typer.Option(help="Port (default from settings: 8080).", **limits.option(limits.Port))]
Ctx = Annotated[
    Optional[int], typer.Option("--ctx", "-c", help="Context size; overrides the plan.", **limits.option(limits.Ctx))
]
NoMtp = Annotated[bool, typer.Option("--no-mtp", help="Without MTP speculative decoding.")]
Parallel = Annotated[
    Optional[int],
    typer.Option(
        "--parallel",
        "-np",
        help="Server slots; MTP keeps 1 unless --clients plans more.",
        **limits.option(limits.Parallel),
    ),
]
Clients = Annotated[
    Optional[int],
    typer.Option(
        "--clients",
        help="Concurrent users to plan for: one slot each, MTP on only up to the measured crossover "
        "(`llmtp plan MODEL --clients N` shows why; default from settings: clients). --parallel and --no-mtp win.",
        **limits.option(limits.Clients),
    ),
]
CacheType = Annotated[
    Optional[str],
    typer.Option(
        "--cache-type",
        metavar="TYPE",
        help="KV cache type for keys and values (f16, q8_0, q4_0, ...); overrides the plan.",
    ),
]
GpuLayers = Annotated[
    Optional[str],
    typer.Option(
        "--gpu-layers",
        metavar="N|auto|all",
        help="Layers offloaded to the GPU (llama-server's -ngl); overrides the plan.",
    ),
]
Threads = Annotated[
    Optional[int],
    typer.Option("--threads", "-t", help="CPU threads for llama-server.", **limits.option(limits.Threads)),
]
DraftNMax = Annotated[
    Optional[int],
    typer.Option(
        "--draft-n-max",
        help="MTP draft tokens per step (--spec-draft-n-max); overrides `llmtp tune`.",
        **limits.option(limits.DraftTokens),
    ),
]
DraftPMin = Annotated[
    Optional[float],
    typer.Option(
        "--draft-p-min",
        help="MTP draft probability floor (--spec-draft-p-min); overrides `llmtp tune`.",
        **limits.option(limits.Fraction),
    ),
]
Alias = Annotated[
    Optional[str],
    typer.Option(
        help="Model name clients see in /v1/models (default: the llmtp alias, else the file name without .gguf)."
    ),
]
ApiKeyFile = Annotated[Optional[str], typer.Option(help="File with the API key(s); required off loopback.")]
Rpc = Annotated[
    Optional[str],
    typer.Option(
        "--rpc",
        help="RPC workers HOST:PORT,... to spread the model over (`llmtp worker start`; default from settings: rpc).",
    ),
]
Server = Annotated[Optional[str], typer.Option(help="Use this llama-server instead of the current build.")]
NoUi = Annotated[bool, typer.Option("--no-ui", help="Turn llama-server's web UI off (its own --no-ui).")]
MtpGuard = Annotated[
    Optional[bool],
    typer.Option(
        "--mtp-guard/--no-mtp-guard",
        help="Step to a safer MTP setting when served acceptance stays under "
        "the break-even (--no-mtp-guard pins the setting; default from "
        "settings: mtp_guard).",
    ),
]


def _refuse_hf(value: Optional[str]) -> None:
    if value is not None:
        raise UsageError(
            f"llmtp takes the model as its argument, not with -hf: `llmtp serve {value}`",
            "Name a hub model as org/repo:QUANT (also hf:org/repo:QUANT); llmtp downloads it "
            "first when it is not on disk.",
        )


def _refuse_ngl(value: Optional[str]) -> None:
    if value is not None:
        raise UsageError(
            f"llmtp spells -ngl as --gpu-layers: `--gpu-layers {value}`",
            "Or leave it out: llmtp plans the offload for this GPU (`llmtp plan MODEL` shows why).",
        )


# llama-server's spellings, answered with llmtp's (hidden; eager so they answer before a missing MODEL does)
HfHabit = Annotated[Optional[str], typer.Option("-hf", "--hf-repo", hidden=True, is_eager=True, callback=_refuse_hf)]
NglHabit = Annotated[
    Optional[str], typer.Option("-ngl", "--n-gpu-layers", hidden=True, is_eager=True, callback=_refuse_ngl)
]


def gpu_layers_value(text: str | None) -> int | str | None:
    if text is None or text in ("auto", "all"):
        return text
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise UsageError(f"--gpu-layers {text} is not a layer count", "Pass a number of layers, auto or all.")
    return n


def absolute(path: str | None) -> str | None:
    """A file option as an absolute path: a service does not start in the current directory."""
    return str(Path(path).expanduser().resolve()) if path else None


def launch_request(model: str, extra: list[str] | None = None, **options) -> LaunchRequest:  # noqa: ANN003
    """The CLI's values (the names above, lower case) as the LaunchRequest they ask for."""
    options["gpu_layers"] = gpu_layers_value(options.get("gpu_layers"))
    options["ui"] = not options.pop("no_ui", False)
    options = {k: v for k, v in options.items() if v is not None}
    return LaunchRequest(model=model, extra=tuple(extra or ()), **options)
