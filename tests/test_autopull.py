"""`llmtp serve` pulls a missing model (says file, size, free disk), or refuses before anything
starts: --no-pull / pull_missing = false, offline, not enough disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fake_hf_cache import put
from llmtp.cli.main import app
from llmtp.errors import ModelNotDownloadedError, NetworkError, UsageError
from llmtp.services import autopull
from llmtp.services import models as svc
from llmtp.settings import load_settings
from test_models import FakeHub, _gguf

Q4 = "Qwen3.6-27B-Q4_K_M.gguf"


class NoHub:
    """A hub that must not be asked anything."""

    def __getattr__(self, name):
        raise AssertionError(f"the hub was asked: {name}")


def _hub(tmp_path: Path) -> FakeHub:
    src = _gguf(tmp_path / "m.gguf", nextn=1)
    return FakeHub(tmp_path, {Q4: src, "Qwen3.6-27B-IQ4_XS.gguf": src})


def test_serve_pull_says_what_it_fetches_then_the_model_is_there(tmp_path):
    hub, said = _hub(tmp_path), []
    s = load_settings().settings
    done = autopull.ensure_model(s, "qwen3.6-27b", allow=True, say=said.append, hub=hub, free=lambda p: 5 * 10**12)
    size = (tmp_path / "m.gguf").stat().st_size
    assert done is not None and done.files == [Q4] and done.size_bytes == size
    assert said[0].startswith(f"qwen3.6-27b is not downloaded: fetching {Q4} from unsloth/Qwen3.6-27B-MTP-GGUF")
    assert "5000.00 GB free in" in said[0] and any(m.startswith("downloading ") for m in said[1:])
    assert hub.downloads == [Q4]
    assert svc.resolve_model("qwen3.6-27b", s).path is not None
    assert autopull.ensure_model(s, "qwen3.6-27b", allow=False, say=said.append, hub=NoHub()) is None  # present


def test_no_pull_and_no_disk_refuse_before_any_download(tmp_path):
    hub = _hub(tmp_path)
    s = load_settings().settings
    with pytest.raises(UsageError, match="--no-pull"):
        autopull.ensure_model(s, "qwen3.6-27b", allow=False, say=print, hub=hub, free=lambda p: 10**15)
    with pytest.raises(UsageError, match=r"needs .* but only 0.0 MB is free"):
        autopull.ensure_model(s, "qwen3.6-27b", allow=True, say=print, hub=hub, free=lambda p: 100)
    hub = FakeHub(tmp_path, {Q4: _gguf(tmp_path / "m.gguf", nextn=1)}, sizes={Q4: 17 * 10**9})
    with pytest.raises(UsageError, match="17.00 GB"):
        autopull.ensure_model(s, "qwen3.6-27b", allow=True, say=print, hub=hub, free=lambda p: 10**9)
    assert hub.downloads == [] and svc.resolve_model("qwen3.6-27b", s).path is None


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "LLMTP_OFFLINE"])
def test_offline_fails_with_the_reason_and_asks_no_hub(how, monkeypatch):
    monkeypatch.setenv(how, "1")
    s = load_settings().settings
    for ref in ("qwen3.6-27b", "someone/Tiny-GGUF:Q8_0"):
        with pytest.raises(NetworkError, match=f"not downloaded and .*{'HF_HUB_OFFLINE' if how.startswith('HF') else 'offline mode'}"):
            autopull.ensure_model(s, ref, allow=True, say=print, hub=NoHub())


def test_a_model_on_disk_or_a_path_needs_nothing(tmp_path):
    s = load_settings().settings
    put(Path(os.environ["HF_HUB_CACHE"]), "someone/Tiny-GGUF", "Tiny-Q8_0.gguf",
        _gguf(tmp_path / "t.gguf", nextn=0).read_bytes())
    assert autopull.missing_download(s, "someone/Tiny-GGUF:Q8_0", hub=NoHub()) is None
    assert autopull.missing_download(s, str(tmp_path / "t.gguf"), hub=NoHub()) is None
    with pytest.raises(UsageError, match="Unknown model alias"):
        autopull.missing_download(s, "no-such-alias", hub=NoHub())


def test_serve_no_pull_and_the_setting_refuse_before_anything_starts(tmp_path, monkeypatch):
    fake_server = tmp_path / "llama-server"
    fake_server.write_text("#!/bin/sh\nexit 0\n")
    fake_server.chmod(0o755)
    monkeypatch.setattr("llmtp.services.serve.cached_capabilities", lambda server, cache: _caps())
    r = CliRunner().invoke(app, ["serve", "qwen3.6-27b", "--server", str(fake_server), "--no-pull"])
    assert isinstance(r.exception, UsageError) and "--no-pull" in r.exception.message
    monkeypatch.setenv("LLMTP_PULL_MISSING", "false")
    r = CliRunner().invoke(app, ["serve", "qwen3.6-27b", "--server", str(fake_server)])
    assert isinstance(r.exception, UsageError) and "pull_missing = false" in r.exception.message
    dry = CliRunner().invoke(app, ["serve", "qwen3.6-27b", "--server", str(fake_server), "--dry-run"])
    assert isinstance(dry.exception, ModelNotDownloadedError)  # a dry run never downloads
    state = Path(load_settings().settings.state_dir)
    assert not state.exists() or not any(state.rglob("*.json"))


def _caps():
    from test_serve_cli import _caps as caps

    return caps()
