from pathlib import Path

import pytest

from llmtp.errors import ConfigError
from llmtp.settings import load_settings


def test_precedence_flag_env_file_default(tmp_path):
    home = tmp_path / "h"
    (home / "config").mkdir(parents=True)
    (home / "config" / "config.toml").write_text('port = 9001\nhost = "127.0.0.2"\noffline = true\n')
    env = {"LLMTP_HOME": str(home), "LLMTP_PORT": "9002"}
    loaded = load_settings({"port": 9003}, env=env)
    s = loaded.settings
    assert s.port == 9003 and loaded.origins["port"] == "flag"
    loaded = load_settings({}, env=env)
    assert loaded.settings.port == 9002 and loaded.origins["port"] == "env LLMTP_PORT"
    assert loaded.settings.host == "127.0.0.2" and loaded.origins["host"].startswith("file ")
    assert loaded.settings.offline is True
    assert loaded.settings.build_jobs is None and loaded.origins["build_jobs"] == "default"


def test_home_relocates_every_path(tmp_path):
    s = load_settings({}, env={"LLMTP_HOME": str(tmp_path)}).settings
    for name in ("config_dir", "data_dir", "cache_dir", "state_dir", "models_dir"):
        assert Path(getattr(s, name)).is_relative_to(tmp_path), name


def test_single_path_override(tmp_path):
    s = load_settings({}, env={"LLMTP_HOME": str(tmp_path), "LLMTP_CACHE_DIR": str(tmp_path / "c2")}).settings
    assert s.cache_dir == (tmp_path / "c2").resolve()


def test_unknown_key_in_file_is_named(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("prot = 1\n")
    with pytest.raises(ConfigError, match="prot"):
        load_settings({}, env={"LLMTP_HOME": str(tmp_path)})


def test_invalid_value_names_origin(tmp_path):
    with pytest.raises(ConfigError, match="env LLMTP_PORT"):
        load_settings({}, env={"LLMTP_HOME": str(tmp_path), "LLMTP_PORT": "99999"})


def test_broken_toml(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text("port = \n")
    with pytest.raises(ConfigError, match="config.toml"):
        load_settings({}, env={"LLMTP_HOME": str(tmp_path)})
