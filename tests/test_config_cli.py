"""`llmtp config set/get/unset`: validated by the settings model, one line changed, comments and other
keys kept; docs/configuration.md is what the settings model generates."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.cli.main import app
from llmtp.core.toml_edit import set_key, toml_value, unset_key
from llmtp.errors import ConfigError, UsageError
from llmtp.services.config import reference_doc

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

USER_FILE = '# my box\nport = 8090   # the usual one\n\nhost = "0.0.0.0"\n'


@pytest.fixture
def config_file(llmtp_home) -> Path:
    path = llmtp_home / "config" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(USER_FILE, encoding="utf-8")
    return path


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def test_set_changes_one_line_and_keeps_comments(config_file):
    r = _run("config", "set", "port", "8081")
    assert r.exit_code == 0 and r.stdout.startswith("port = 8081 in ")
    assert config_file.read_text() == '# my box\nport = 8081   # the usual one\n\nhost = "0.0.0.0"\n'
    assert _run("config", "set", "offline", "yes").exit_code == 0
    assert _run("config", "set", "models_dir", "/srv/models").exit_code == 0
    data = tomllib.loads(config_file.read_text())
    assert data == {"port": 8081, "host": "0.0.0.0", "offline": True, "models_dir": "/srv/models"}
    assert config_file.read_text().startswith("# my box\n")
    got = json.loads(_run("config", "get", "port", "--json").stdout)
    assert got["value"] == 8081 and got["origin"].startswith("file ")


def test_unset_removes_only_its_line(config_file):
    r = _run("config", "unset", "host")
    assert r.exit_code == 0 and "removed host" in r.stdout
    assert config_file.read_text() == "# my box\nport = 8090   # the usual one\n\n"
    assert "was not set" in _run("config", "unset", "host").stdout
    assert _run("config", "get", "host").stdout.strip() == "127.0.0.1"


@pytest.mark.parametrize(
    "key, value, words",
    [
        ("port", "99999", "less than or equal to 65535"),
        ("port", "eighty", "valid integer"),
        ("build_ui", "sometimes", "'auto', 'on' or 'off'"),
        ("offline", "maybe", "valid boolean"),
        ("prot", "1", "did you mean port"),
        ("config_dir", "/x", "LLMTP_CONFIG_DIR"),
    ],
)
def test_bad_values_are_refused_and_the_file_is_untouched(config_file, key, value, words):
    r = _run("config", "set", key, value)
    assert isinstance(r.exception, UsageError) and words in r.exception.message + (r.exception.hint or "")
    assert config_file.read_text() == USER_FILE


def test_a_broken_file_is_never_edited(config_file):
    config_file.write_text("port = [1,\n")
    r = _run("config", "set", "port", "8081")
    assert isinstance(r.exception, ConfigError) and str(config_file) in r.exception.message
    assert config_file.read_text() == "port = [1,\n"


def test_set_creates_the_file(llmtp_home):
    assert _run("config", "set", "default_model", "smollm2-135m").exit_code == 0
    assert (llmtp_home / "config" / "config.toml").read_text() == 'default_model = "smollm2-135m"\n'
    assert _run("config", "get", "default_model").stdout.strip() == "smollm2-135m"


def test_toml_edit_keeps_tables_below_and_quotes_strings():
    text = "a = 1\n\n[t]\nport = 5\n"
    assert set_key(text, "port", 8081) == "a = 1\nport = 8081\n\n[t]\nport = 5\n"
    assert unset_key(text, "port") == (text, False)  # the table's key is not the top-level one
    assert toml_value('say "hi"\\') == '"say \\"hi\\"\\\\"' and toml_value(True) == "true"
    assert tomllib.loads(set_key("", "rpc", 'a"b'))["rpc"] == 'a"b'


def test_configuration_md_is_generated_from_the_settings_model():
    doc = Path(__file__).parent.parent / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == reference_doc.render(), (
        "regenerate: python -m llmtp.services.config.reference_doc > docs/configuration.md"
    )
    from llmtp.settings import Settings

    for name in Settings.model_fields:
        assert f"`LLMTP_{name.upper()}`" in doc.read_text()
