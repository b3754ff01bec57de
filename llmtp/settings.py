"""Settings, built once: CLI flags > LLMTP_* environment > TOML config file > defaults.

Every path derives from `home` (LLMTP_HOME) when it is set, else from platformdirs, and each can be
overridden on its own, so tests never touch the real home directory.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from llmtp import paths
from llmtp.core import limits
from llmtp.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "llmtp"
ENV_PREFIX = "LLMTP_"


class Settings(BaseSettings):
    """Effective settings. Paths are absolute after `resolve_paths`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    home: Path | None = Field(None, description="relocates every data/cache/config/state path")
    config_dir: Path | None = Field(None, description="where config.toml lives")
    data_dir: Path | None = Field(None, description="builds, baselines, model settings")
    cache_dir: Path | None = Field(None, description="sources, downloads, build trees")
    state_dir: Path | None = Field(None, description="running servers: state files, logs")
    models_dir: Path | None = Field(None, description="models pulled without the HF cache")
    host: str = Field("127.0.0.1", description="address llama-server binds to")
    port: limits.Port = Field(8080, description="port llama-server listens on")
    offline: bool = Field(False, description="never reach the network (builds use the pinned sdist)")
    build_jobs: limits.BuildJobs | None = Field(None, description="parallel compile jobs (default: from cores and RAM)")
    build_ui: Literal["auto", "on", "off"] = Field(
        "auto", description="web UI in builds: auto (prebuilt, else npm, else none), on (fail without), off"
    )
    default_model: str | None = Field(None, description="model served when none is named")
    pull_missing: bool = Field(
        True, description="`llmtp serve` downloads a model that is not on disk (false: it refuses, as --no-pull)"
    )
    rpc: str | None = Field(None, description="RPC workers HOST:PORT,... that serve/plan/verify use (`llmtp worker`)")
    clients: limits.Clients | None = Field(
        None,
        description="concurrent users `llmtp serve` plans for: one slot each, MTP on up to the measured "
        "crossover (as --clients; default: one user, one slot)",
    )
    sets: dict[str, list[str]] = Field(
        default_factory=dict,
        description='named model sets `llmtp serve NAME` serves on one router port (`desk = ["a", "b"]` under [sets])',
    )
    mtp_guard: bool = Field(
        True,
        description="`llmtp serve` steps to a safer MTP setting when served acceptance "
        "stays under the break-even (false: the setting is pinned, as --no-mtp-guard)",
    )

    @field_validator("sets", mode="before")
    @classmethod
    def _sets_from_json(cls, value: Any) -> Any:
        """LLMTP_SETS='{"desk": ["a", "b"]}': the environment's text as the table config.toml holds."""
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value  # the model's own error names the setting
        return value

    @property
    def builds_dir(self) -> Path:
        return self.data_dir / "builds"  # type: ignore[operator]

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"  # type: ignore[operator]


_PATH_FIELDS = ("config_dir", "data_dir", "cache_dir", "state_dir", "models_dir")


def _env_values(env: Mapping[str, str]) -> dict[str, str]:
    names = set(Settings.model_fields)
    out = {}
    for key, value in env.items():
        if key.startswith(ENV_PREFIX) and key[len(ENV_PREFIX) :].lower() in names:
            out[key[len(ENV_PREFIX) :].lower()] = value
    return out


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = paths.read_toml(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"The settings file {path} is not UTF-8 text (byte {exc.start} cannot be decoded)",
            "Save it as UTF-8 (TOML files must be UTF-8), or move it away; `llmtp config show` lists the valid keys.",
        ) from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"Cannot read the settings file {path}: {exc}",
            "Fix the TOML syntax or move the file away; `llmtp config show` lists the valid keys.",
        ) from exc
    unknown = sorted(set(data) - set(Settings.model_fields))
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {', '.join(unknown)} in {path}",
            f"Valid keys: {', '.join(Settings.model_fields)}.",
        )
    return data


class LoadedSettings:
    """Settings plus where each value came from (flag, env, file, default)."""

    def __init__(self, settings: Settings, origins: dict[str, str]):
        self.settings = settings
        self.origins = origins


def load_settings(flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> LoadedSettings:
    """Build settings once. `env` defaults to the process environment (tests pass their own)."""
    env = dict(os.environ if env is None else env)
    flags = {k: v for k, v in (flags or {}).items() if v is not None}
    env_vals = _env_values(env)
    config_path, home = paths.config_path(flags, env)
    defaults = paths.default_dirs(home)
    file_vals = _read_toml(config_path)
    if "home" in file_vals and home is None:
        home = Path(file_vals["home"])
        defaults = paths.default_dirs(home)

    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for name in Settings.model_fields:
        for origin, source in (
            ("flag", flags),
            (f"env {ENV_PREFIX}{name.upper()}", env_vals),
            (f"file {config_path}", file_vals),
        ):
            if name in source:
                merged[name] = source[name]
                origins[name] = origin
                break
        else:
            if name in defaults:
                merged[name] = defaults[name]
                origins[name] = "default (LLMTP_HOME)" if home is not None else "default (platformdirs)"
            else:
                origins[name] = "default"
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"Invalid setting {field!r} (from {origins.get(field, 'unknown')}): {first['msg']}",
            "Correct the flag, the LLMTP_* variable or the config file; `llmtp config show` lists them.",
        ) from exc
    for name in _PATH_FIELDS:
        value = getattr(settings, name)
        setattr(settings, name, Path(value).expanduser().resolve())
    return LoadedSettings(settings, origins)
