"""Which llama-server flags after `--` llmtp refuses, and what to use instead (pure).

llama-server keeps the last value of a repeated flag, and llmtp's own flags come first on its argv,
so a pass-through `--host 0.0.0.0` would silently override the bind address llmtp checked (and
the API-key guard with it). Flags that llmtp owns, or that change who can reach the server or what
it serves, are therefore refused with the llmtp option to use instead.

Spellings are from `llama-server --help` of the pinned b11434 (tests/fixtures/llama/b11434-cpu/
server-help.txt). Its parser (common/arg.cpp, `parse_cli_args`) turns `_` into `-` in every argument
that starts with `--` (`--api_key` is `--api-key`), and has no `--flag=value` form; we refuse the
`=` form anyway, so a future parser that learns it cannot reopen the hole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from llmtp.errors import UsageError

_MODEL = "the MODEL argument of `llmtp serve` (an alias, a .gguf path, or hf:org/repo:QUANT)"
_PLAN = "the plan llmtp makes for this machine (`llmtp plan MODEL` shows it; --ctx and --parallel change it)"

_OWNED = "llmtp sets it itself and llama-server keeps the last value given, so it would override llmtp's"
_EXPOSES = "it changes who can reach the server or what it serves, past llmtp's network guard"

# (spellings, why refused, what to use instead). Refused whatever the launch looks like.
_ALWAYS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (
        ("--host",),
        f"the bind address: {_OWNED} (and skip the API-key check for open binds)",
        "`--host ADDR` (with `--api-key-file FILE` off loopback)",
    ),
    (("--port",), f"the port: {_OWNED}", "`--port N`"),
    (("--reuse-port",), f"a shared listening port: {_EXPOSES}", "a free `--port N` (llmtp checks it is free)"),
    (("--path",), f"a static file directory: {_EXPOSES}", "nothing: llmtp does not serve files"),
    (
        ("--api-prefix",),
        "the URL prefix: llmtp's health probe and clients expect the API at the root",
        "nothing: serve at the root",
    ),
    (
        ("--api-key",),
        "an API key on the command line, which `ps` shows to every user",
        "`--api-key-file FILE` (one key per line, chmod 600)",
    ),
    (("--api-key-file",), f"the API key file: {_OWNED}", "llmtp's own `--api-key-file FILE`"),
    (
        ("--ssl-key-file", "--ssl-cert-file"),
        f"TLS: {_EXPOSES}, and llmtp's health probe speaks plain HTTP",
        "a TLS-terminating reverse proxy in front of the loopback server",
    ),
    (
        ("--ui", "--webui", "--no-ui", "--no-webui"),
        f"the web UI switch: {_OWNED}",
        "`llmtp serve --no-ui` to turn the UI off (it is on wherever the build has one: `llmtp builds list`)",
    ),
    (
        (
            "--ui-config",
            "--webui-config",
            "--ui-config-file",
            "--webui-config-file",
            "--ui-mcp-proxy",
            "--webui-mcp-proxy",
            "--no-ui-mcp-proxy",
            "--no-webui-mcp-proxy",
        ),
        f"the web UI: {_EXPOSES}",
        "llama-server's default web UI as llmtp serves it (restrict paths in a reverse proxy if needed)",
    ),
    (
        (
            "--tools",
            "--tools-runtime",
            "--mcp-servers-config",
            "--mcp-servers-json",
            "-ag",
            "--agent",
            "-no-ag",
            "--no-agent",
        ),
        f"built-in agent tools with file and shell access: {_EXPOSES}",
        "nothing: llmtp does not expose tools (upstream: do not enable in untrusted environments)",
    ),
    (
        (
            "-m",
            "--model",
            "-mu",
            "--model-url",
            "-hf",
            "-hfr",
            "--hf-repo",
            "-hff",
            "--hf-file",
            "-dr",
            "--docker-repo",
            "--models-dir",
            "--models-preset",
        ),
        f"the model: {_OWNED}",
        _MODEL,
    ),
    (("-a", "--alias"), f"the model name clients see in /v1/models: {_OWNED}", "`llmtp serve MODEL --alias NAME`"),
    (("-c", "--ctx-size"), f"the context size: {_OWNED}", "`--ctx N`"),
    (("-np", "--parallel"), f"the slot count: {_OWNED}", "`--parallel N`"),
    (("-ngl", "--gpu-layers", "--n-gpu-layers"), f"the GPU offload: {_OWNED}", _PLAN),
    (("--log-file",), f"llama-server's log file: {_OWNED}", "`llmtp logs` (the log lives under llmtp's state dir)"),
    (("--metrics",), f"the /metrics endpoint: {_OWNED}", "nothing: llmtp turns --metrics on itself"),
    (
        ("--rpc",),
        "RPC workers: llmtp checks each answers, splits the layers over them (RPC devices first) and "
        "watches them while serving",
        "`--rpc HOST:PORT,...` (`llmtp worker start` on each host)",
    ),
)

# Alias groups of flags llmtp sets from its plan (llmtp/core/argv.py): refused when this launch
# sets them, since the later pass-through value would win over what the plan budgeted memory for.
_PLAN_SET: tuple[tuple[str, ...], ...] = (
    ("-ctk", "--cache-type-k"),
    ("-ctv", "--cache-type-v"),
    ("-fa", "--flash-attn"),
    ("-ncmoe", "--n-cpu-moe"),
    ("-t", "--threads"),
    ("-fit", "--fit"),
    ("-s", "--seed"),
)

_TABLE: dict[str, tuple[str, str]] = {s: (why, instead) for names, why, instead in _ALWAYS for s in names}
_GROUP: dict[str, tuple[str, ...]] = {s: names for names in _PLAN_SET for s in names}


@dataclass(frozen=True)
class Refusal:
    arg: str  # as the user wrote it
    flag: str  # the flag llama-server would see
    reason: str
    instead: str

    @property
    def message(self) -> str:
        return f"Refusing the pass-through flag {self.arg} after `--`: {self.reason}"

    @property
    def hint(self) -> str:
        return f"Drop it from after `--` and use {self.instead}."


def flag_name(arg: str) -> str:
    """The flag llama-server would see for one argv word: `--api_key=x` -> `--api-key`."""
    name = arg.split("=", 1)[0]
    return name.replace("_", "-") if name.startswith("--") else name


def refused_passthrough(extra: Iterable[str], set_by_llmtp: Iterable[str] = ()) -> Refusal | None:
    """The first pass-through word that must be refused, or None.

    `set_by_llmtp`: the words of the argv llmtp built before the pass-through (its flags and
    values). Every word is checked, values included: a value that looks like a refused flag is
    refused too, which errs on the safe side.
    """
    ours = {flag_name(a) for a in set_by_llmtp if a.startswith("-")}
    ours_groups = {g for f in ours if (g := _GROUP.get(f)) is not None}
    for arg in extra:
        if not arg.startswith("-"):
            continue
        name = flag_name(arg)
        if name in _TABLE:
            why, instead = _TABLE[name]
            return Refusal(arg, name, f"it sets {why}", instead)
        group = _GROUP.get(name)
        if group is not None and group in ours_groups:
            return Refusal(
                arg,
                name,
                f"llmtp already sets {' / '.join(group)} for this launch, and the "
                "later value would override what its plan budgeted memory for",
                _PLAN,
            )
    return None


def check_passthrough(extra: Iterable[str], set_by_llmtp: Iterable[str] = ()) -> None:
    """refused_passthrough as a UsageError (exit 2) naming the llmtp option to use instead."""
    refusal = refused_passthrough(extra, set_by_llmtp)
    if refusal is not None:
        raise UsageError(refusal.message, refusal.hint)
