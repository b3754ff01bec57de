"""`llmtp config set|get|unset`: one key of config.toml, validated by the settings model itself, written
without losing the user's other keys, comments or layout (core/toml_edit.py), never half-written."""

from __future__ import annotations

import difflib
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from llmtp import paths
from llmtp.adapters import files
from llmtp.adapters.files import write_text_atomic
from llmtp.core.toml_edit import set_key, unset_key
from llmtp.errors import ConfigError, UsageError
from llmtp.settings import Settings, _read_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# config.toml cannot say where config.toml is
NOT_IN_FILE = {"config_dir": "it says where config.toml itself lives: set LLMTP_CONFIG_DIR instead"}


def config_file(env: Mapping[str, str]) -> Path:
    """config.toml as load_settings() finds it in `env` (the CLI passes the process environment)."""
    return paths.config_path({}, dict(env))[0]


def check_key(key: str) -> None:
    if key in Settings.model_fields and key not in NOT_IN_FILE:
        return
    if key in NOT_IN_FILE:
        raise UsageError(
            f"{key} cannot be set in config.toml: {NOT_IN_FILE[key]}", "`llmtp config show` lists the settings."
        )
    close = difflib.get_close_matches(key, list(Settings.model_fields), n=2)
    raise UsageError(
        f"Unknown setting {key!r}" + (f" (did you mean {' or '.join(close)}?)" if close else ""),
        f"Settings: {', '.join(k for k in Settings.model_fields if k not in NOT_IN_FILE)} "
        "(docs/configuration.md says what each does).",
    )


def parse_value(key: str, raw: str) -> Any:
    """`raw` (as typed) validated as the setting's own type and bounds; the value to write to TOML."""
    check_key(key)
    try:
        value = getattr(Settings.model_validate({key: raw}), key)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(
            f"Invalid value {raw!r} for {key}: {first['msg']}",
            f"`llmtp config get {key}` shows the current value; docs/configuration.md the allowed ones.",
        ) from None
    if value is None:
        raise UsageError(f"{key} = {raw!r} is no value", f"Remove the setting instead: `llmtp config unset {key}`.")
    return str(value) if isinstance(value, Path) else value


def _current_text(path: Path) -> str:
    _read_toml(path)  # a damaged file is a ConfigError naming it: never edited blind
    return files.read_text(path) if path.is_file() else ""


def _checked(path: Path, new_text: str, changed: str) -> str:
    """`new_text` if it parses to valid settings in which only `changed` differs; else a ConfigError."""
    try:
        new = tomllib.loads(new_text)
    except tomllib.TOMLDecodeError as exc:  # e.g. the key sat in a multi-line construct llmtp does not edit
        raise ConfigError(
            f"Editing {changed} in {path} would break its TOML ({exc}); the file is unchanged", f"Edit {path} by hand."
        ) from exc
    old = paths.read_toml(path)
    if {k: v for k, v in new.items() if k != changed} != {k: v for k, v in old.items() if k != changed}:
        raise ConfigError(
            f"Editing {changed} in {path} would change other keys; the file is unchanged", f"Edit {path} by hand."
        )
    try:
        Settings.model_validate(new)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"{path} has an invalid {where}: {first['msg']}; nothing was written",
            f"Fix {where} first: `llmtp config set {where} VALUE` or `llmtp config unset {where}`.",
        ) from exc
    return new_text


def set_value(key: str, raw: str, env: Mapping[str, str]) -> tuple[Path, Any]:
    value = parse_value(key, raw)
    path = config_file(env)
    write_text_atomic(path, _checked(path, set_key(_current_text(path), key, value), key))
    return path, value


def unset_value(key: str, env: Mapping[str, str]) -> tuple[Path, bool]:
    """Remove `key` from config.toml; False when the file did not set it."""

    check_key(key)
    path = config_file(env)
    text, found = unset_key(_current_text(path), key)
    if found:
        write_text_atomic(path, _checked(path, text, key))
    return path, found
