"""docs/configuration.md, generated from the settings model (llmtp/settings.py) so the two never disagree;
tests/test_config_cli.py checks the file in the repository is this function's output. Regenerate with
`python -m llmtp.services.config.reference_doc > docs/configuration.md`."""

from __future__ import annotations

import types
import typing
from pathlib import Path

from llmtp.core.toml_edit import toml_value
from llmtp.services.config.edit import NOT_IN_FILE
from llmtp.settings import ENV_PREFIX, Settings


def type_words(annotation) -> str:  # noqa: ANN001 - a typing annotation
    """`integer 1-65535`, `path`, `one of auto, on, off`, each with `or unset` where None is allowed."""
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(type_words(a) for a in inner) + (" (unset: default)" if len(inner) < len(args) else "")
    if origin is typing.Annotated:
        base, *meta = args
        bounds = [m for m in meta if hasattr(m, "ge") or hasattr(m, "le")]
        if bounds:
            b = bounds[0]
            return f"{type_words(base)} {b.ge}-{b.le}"
        return type_words(base)
    if origin is dict:
        return "a table NAME = [MODEL, ...] (env: as JSON)"
    if origin is typing.Literal:
        return "one of " + ", ".join(str(a) for a in args)
    return {str: "text", int: "integer", float: "number", bool: "true or false", Path: "path"}.get(
        annotation, str(annotation)
    )


def _bounded(name: str, field) -> str:  # noqa: ANN001 - pydantic FieldInfo
    words = type_words(field.annotation)
    for m in field.metadata:  # `port: limits.Port` keeps its bounds here, not in the annotation
        if getattr(m, "ge", None) is not None and getattr(m, "le", None) is not None:
            words += f" {m.ge}-{m.le}"
    return words


def render() -> str:
    rows = []
    for name, field in Settings.model_fields.items():
        default = (
            "platform default"
            if name.endswith("_dir")
            else "none"
            if field.default_factory is not None
            else "unset"
            if field.default is None
            else f"`{_toml(field.default)}`"
        )
        where = "env only" if name in NOT_IN_FILE else f"`{name}`"
        env = f"`{ENV_PREFIX}{name.upper()}`"
        rows.append(f"| {where} | {env} | {_bounded(name, field)} | {default} | {field.description} |")
    return "\n".join(
        [
            "# Configuration",
            "",
            "<!-- generated from llmtp/settings.py by `python -m llmtp.services.config.reference_doc`; "
            "tests/test_config_cli.py keeps it true -->",
            "",
            "Each setting comes from, first to last: a command-line flag, an `LLMTP_*` environment variable, the",
            "config file, the default. `llmtp config show` prints every value and where it came from.",
            "",
            "The config file is `config.toml` in the config directory (`~/.config/llmtp/` on Linux, or",
            "`$LLMTP_HOME/config/` when `LLMTP_HOME` is set; `LLMTP_CONFIG_DIR` moves it). Change it with",
            "",
            "```",
            "llmtp config set port 8081      # validated first: `llmtp config set port 99999` is refused",
            "llmtp config get port",
            "llmtp config unset port         # back to the default",
            "```",
            "",
            "`config set` and `config unset` change only their own line: other keys, comments and blank lines stay",
            "as written. Editing the file by hand works too; an unknown key or a bad value is an error naming the "
            "file.",
            "",
            "| key in config.toml | environment | value | default | what it does |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Directories default to the platform's (platformdirs: data, cache, state and config directories), or to",
            "`data/`, `cache/`, `state/`, `config/` and `models/` under `home` when it is set.",
            "",
        ]
    )


def _toml(value) -> str:  # noqa: ANN001

    return toml_value(value)


if __name__ == "__main__":
    print(render(), end="")
