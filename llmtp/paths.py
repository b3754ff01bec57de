"""Where llmtp's directories are: LLMTP_* environment > config.toml > LLMTP_HOME > platformdirs.

Stdlib only (plus platformdirs), so the entry point can find the state dir before pydantic loads (the
warm start); llmtp.settings resolves its paths through these same functions, so both always agree.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

APP = "llmtp"
ENV_PREFIX = "LLMTP_"
PATH_FIELDS = ("config_dir", "data_dir", "cache_dir", "state_dir", "models_dir")


def default_dirs(home: Path | None) -> dict[str, Path]:
    if home is not None:
        home = home.expanduser().resolve()
        return {
            "config_dir": home / "config",
            "data_dir": home / "data",
            "cache_dir": home / "cache",
            "state_dir": home / "state",
            "models_dir": home / "models",
        }
    import platformdirs

    dirs = platformdirs.PlatformDirs(APP, appauthor=False)
    return {
        "config_dir": Path(dirs.user_config_dir),
        "data_dir": Path(dirs.user_data_dir),
        "cache_dir": Path(dirs.user_cache_dir),
        "state_dir": Path(dirs.user_state_dir),
        "models_dir": Path(dirs.user_data_dir) / "models",
    }


def env_value(env: Mapping[str, str], name: str) -> str | None:
    return env.get(ENV_PREFIX + name.upper())


def config_path(flags: Mapping[str, Any], env: Mapping[str, str]) -> tuple[Path, Path | None]:
    """(config.toml's path, the home from flags or environment)."""
    home_raw = flags.get("home") or env_value(env, "home")
    home = Path(home_raw) if home_raw else None
    config_dir = Path(flags.get("config_dir") or env_value(env, "config_dir") or default_dirs(home)["config_dir"])
    return config_dir / "config.toml", home


def read_toml(path: Path) -> dict[str, Any]:
    """The config file's table, {} when there is none. Raises OSError, UnicodeDecodeError or
    tomllib.TOMLDecodeError: llmtp.settings turns them into a ConfigError."""
    if not path.is_file():
        return {}
    return tomllib.loads(path.read_text(encoding="utf-8"))


def state_dir(env: Mapping[str, str]) -> Path:
    """The state dir as load_settings() without flags resolves it (the order is that of
    load_settings; tests/test_settings.py checks both agree)."""
    path, home = config_path({}, env)
    file_vals = read_toml(path)
    if "home" in file_vals and home is None:
        home = Path(file_vals["home"])
    raw = env_value(env, "state_dir") or file_vals.get("state_dir") or default_dirs(home)["state_dir"]
    return Path(raw).expanduser().resolve()
