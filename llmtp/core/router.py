"""Several models behind one port with llama.cpp's own router (pure): each model's launch plan as a section of
the router's preset file, how many of them fit in memory together, and the router's command line.

The router (b11434 `llama-server` started with no model, tools/server/README.md "Using multiple models") spawns
one llama-server child per loaded model with the preset section's keys as its flags (`key = value` for
`--key value`, `key = true` for a bare flag; short names such as `c`, `ngl`, `m` are accepted), and overwrites
or removes host, port, alias, API key and TLS in them itself. Its INI reader (common/preset.cpp) ends a value at
`;`, `#` or a line break and strips blanks around it, keeps one value per key, and ends a section name at `]`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from llmtp.core.plan_types import MemoryBreakdown
from llmtp.errors import UsageError

# flags the router sets or removes in every child (server-models.cpp unset_reserved_args, update_args), or that
# llmtp puts on the router's own command line instead (the key, the web UI): never written to a section
ROUTER_OWNED = frozenset(
    {
        "host",
        "port",
        "a",
        "alias",
        "api-key",
        "api-key-file",
        "ssl-key-file",
        "ssl-cert-file",
        "ui",
        "webui",
        "no-ui",
        "no-webui",
        "models-dir",
        "models-max",
        "models-preset",
        "models-autoload",
        "no-models-autoload",
        "hf-repo",
        "hf",
        "hfr",
    }
)
_NUMBER = re.compile(r"-\d+(\.\d+)?([eE][-+]?\d+)?")
_SECTION = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@+-]*")


@dataclass(frozen=True)
class RouterModel:
    """One model of a set: the name clients send as `"model"`, and the argv its single-model plan would run."""

    name: str
    argv: tuple[str, ...]


def _is_flag(word: str) -> bool:
    return word.startswith("-") and len(word) > 1 and not _NUMBER.fullmatch(word)


def preset_keys(name: str, argv: Sequence[str]) -> list[tuple[str, str]]:
    """The preset keys of one model's argv (the program name first, as build_server_argv writes it): every
    flag as a key without dashes, its value or `true`; the router's own flags left out. A flag given twice, or a
    value the INI reader would cut, is a UsageError: the preset would run something else than the plan."""
    keys: list[tuple[str, str]] = []
    seen: set[str] = set()
    words = list(argv[1:])
    i = 0
    while i < len(words):
        word = words[i]
        if not _is_flag(word):
            raise UsageError(
                f"Model {name}: llama-server argument {word!r} follows no flag, so it cannot go into the router's "
                "preset file",
                "Pass llama-server flags after `--` as `--flag value`.",
            )
        value = "true"
        if i + 1 < len(words) and not _is_flag(words[i + 1]):
            value = words[i + 1]
            i += 1
        i += 1
        key = word.lstrip("-")
        if key in ROUTER_OWNED:
            continue
        if key in seen:
            raise UsageError(
                f"Model {name}: {word} is given twice; a router preset keeps one value per flag",
                "Give the flag once (after `--`, join several patterns into one value where llama-server allows it).",
            )
        if value != value.strip() or any(c in value for c in ";#\r\n"):
            raise UsageError(
                f"Model {name}: the value {value!r} of {word} cannot be written to the router's preset file "
                "(its reader ends a value at ';', '#' or a line break and strips blanks)",
                "Rename the file or drop the flag; the model can still be served on its own with `llmtp serve`.",
            )
        seen.add(key)
        keys.append((key, value))
    return keys


def check_names(names: Sequence[str]) -> None:
    """Refuse a set the router would refuse or route wrongly: a name twice, a name its INI reader cannot hold."""
    seen: set[str] = set()
    for name in names:
        if not _SECTION.fullmatch(name):
            raise UsageError(
                f"The model name {name!r} cannot name a router preset section (letters, digits and . _ - : / @ +)",
                "Serve a copy or a hard link of the file under a name without these characters.",
            )
        if name in seen:
            raise UsageError(
                f"The model {name} is named twice in this set; the router routes by name, so each must be unique",
                "Name each model once (an alias and its file name are the same model).",
            )
        seen.add(name)


def preset_ini(models: Sequence[RouterModel], shared: Sequence[tuple[str, str]] = ()) -> str:
    """The router's preset file: `version = 1`, the `[*]` keys every child gets, one section per model."""
    check_names([m.name for m in models])
    lines = ["; written by llmtp from each model's launch plan; `llmtp serve` rewrites it at every start"]
    lines.append("version = 1")
    if shared:
        lines += ["", "[*]", *(f"{k} = {v}" for k, v in shared)]
    for m in models:
        lines += ["", f"[{m.name}]", *(f"{k} = {v}" for k, v in preset_keys(m.name, m.argv))]
    return "\n".join(lines) + "\n"


def router_argv(
    server: str,
    preset_path: str,
    *,
    models_max: int,
    host: str,
    port: int,
    api_key_file: str | None = None,
    ui: bool = True,
) -> list[str]:
    """The router's own command line. Children inherit it (it wins over the preset), so it carries only what the
    router itself owns: where it listens, the key it checks, the preset, how many children at once."""
    argv = [server, "--models-preset", preset_path, "--models-max", str(models_max), "--host", host]
    argv += ["--port", str(port)]
    if api_key_file is not None:
        argv += ["--api-key-file", api_key_file]
    if not ui:
        argv.append("--no-webui")
    return argv


@dataclass(frozen=True)
class Fit:
    """How many models of a set fit in memory together, and why not more."""

    models_max: int
    reason: str


def models_that_fit(names: Sequence[str], memories: Sequence[Sequence[MemoryBreakdown]]) -> Fit:
    """The largest k such that ANY k models of the set fit together on every device: the k largest per device
    must fit that device's budget (each model's plan is its single-model plan). 0 when one model alone does
    not fit. Devices without a budget are not limits."""
    budgets: dict[str, int] = {}
    per_device: dict[str, list[tuple[int, str]]] = {}
    for name, memory in zip(names, memories, strict=True):
        for m in memory:
            if m.budget is None:
                continue
            budgets[m.device] = min(budgets.get(m.device, m.budget), m.budget)
            per_device.setdefault(m.device, []).append((m.total, name))
    k_max = len(names)
    limit = ""
    for device, uses in per_device.items():
        uses.sort(reverse=True)
        k, used = 0, 0
        for total, _ in uses:
            if used + total > budgets[device]:
                break
            used, k = used + total, k + 1
        if k == len(uses):  # every model that uses this device fits it at once
            continue
        if k < k_max:
            k_max = k
            limit = device
    if not limit:
        return Fit(len(names), f"all {len(names)} fit together")
    if k_max == 0:
        biggest = per_device[limit][0]
        return Fit(0, f"{biggest[1]} alone does not fit {limit}")
    at_once = "one at a time" if k_max == 1 else f"{k_max} at a time"
    return Fit(k_max, f"{at_once}: the {k_max + 1} largest together would not fit {limit}")
