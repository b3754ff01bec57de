"""`llmtp serve` pulls a missing model (says file, size, free disk), or refuses before anything
starts: --no-pull / pull_missing = false, offline, not enough disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fake_hf_cache import put
from test_models import FakeHub, _gguf
from typer.testing import CliRunner

from llmtp.cli.main import app
from llmtp.errors import ModelNotDownloadedError, NetworkError, UsageError
from llmtp.services.models import autopull
from llmtp.services.models import resolve as svc
from llmtp.settings import load_settings

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
        with pytest.raises(
            NetworkError, match=f"not downloaded and .*{'HF_HUB_OFFLINE' if how.startswith('HF') else 'offline mode'}"
        ):
            autopull.ensure_model(s, ref, allow=True, say=print, hub=NoHub())


def test_a_model_on_disk_or_a_path_needs_nothing(tmp_path):
    s = load_settings().settings
    put(
        Path(os.environ["HF_HUB_CACHE"]),
        "someone/Tiny-GGUF",
        "Tiny-Q8_0.gguf",
        _gguf(tmp_path / "t.gguf", nextn=0).read_bytes(),
    )
    assert autopull.missing_download(s, "someone/Tiny-GGUF:Q8_0", hub=NoHub()) is None
    assert autopull.missing_download(s, str(tmp_path / "t.gguf"), hub=NoHub()) is None
    with pytest.raises(UsageError, match="Unknown model alias"):
        autopull.missing_download(s, "no-such-alias", hub=NoHub())


def test_serve_no_pull_and_the_setting_refuse_before_anything_starts(tmp_path, monkeypatch):
    fake_server = tmp_path / "llama-server"
    fake_server.write_text("#!/bin/sh\nexit 0\n")
    fake_server.chmod(0o755)
    monkeypatch.setattr("llmtp.services.serve.launch_plan.cached_capabilities", lambda server, cache: _caps())
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


def test_a_pull_by_huggingface_hub_lands_in_the_hf_cache_and_is_found_there(tmp_path, monkeypatch):
    """The real client (huggingface_hub) against the fake hub: the file it writes is what
    `models list --local` and resolve find, with no llmtp record."""
    from fake_hub import FakeFile, FakeHubServer, FakeRepo

    from llmtp.adapters.hf import HfHubClient

    body = _gguf(tmp_path / "t.gguf", nextn=0).read_bytes()
    repo = FakeRepo(sha="c" * 40, files={"Tiny-Q8_0.gguf": FakeFile(size=len(body), body=body, exact=True)})
    with FakeHubServer({"someone/Tiny-GGUF": repo}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        HfHubClient._unreachable.clear()
        s = load_settings().settings
        done = autopull.ensure_model(s, "hf.co/someone/Tiny-GGUF:Q8_0", allow=True, say=print)
        assert done is not None and done.files == ["Tiny-Q8_0.gguf"] and done.size_bytes == len(body)
    cached = (
        Path(os.environ["HF_HUB_CACHE"]) / "models--someone--Tiny-GGUF" / "snapshots" / ("c" * 40) / "Tiny-Q8_0.gguf"
    )
    assert cached.read_bytes() == body
    (Path(s.data_dir) / "models" / "pulled.json").unlink()  # the cache alone says it is there
    assert svc.resolve_model("someone/Tiny-GGUF:Q8_0", s).path == cached


@pytest.mark.llama
def test_serve_a_hub_reference_pulls_it_then_serves_it(tmp_path, monkeypatch, llama_bin_dir, tiny_models):
    """`llmtp serve org/repo:QUANT` as a user types it: nothing on disk, the (fake) hub has it; serve
    says what it fetches, huggingface_hub downloads it into the HF cache, the real llama-server
    serves it. A second serve with HF_HUB_OFFLINE finds it in the cache."""
    import json
    import subprocess
    import sys

    from fake_hub import FakeFile, FakeHubServer, FakeRepo

    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.ports import free_port

    body = tiny_models["agree"].read_bytes()
    repo = FakeRepo(sha="d" * 40, files={"Tiny-MTP-Q8_0.gguf": FakeFile(size=len(body), body=body, exact=True)})
    server = str(llama_bin_dir / "llama-server")
    with FakeHubServer({"someone/Tiny-MTP-GGUF": repo}) as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint}
        port = str(free_port())
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "llmtp",
                "serve",
                "someone/Tiny-MTP-GGUF:Q8_0",
                "--server",
                server,
                "--port",
                port,
                "--ctx",
                "512",
                "--json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
    try:
        assert r.returncode == 0, r.stderr
        assert (
            "someone/Tiny-MTP-GGUF:Q8_0 is not downloaded: fetching Tiny-MTP-Q8_0.gguf from someone/Tiny-MTP-GGUF"
            in r.stderr
            and " free in " in r.stderr
        )
        assert json.loads(r.stdout)["state"] == "ready"
        with LlamaClient(f"http://127.0.0.1:{port}") as c:
            assert c.completion("a b c", n_predict=4)["timings"]["predicted_n"] == 4
    finally:
        subprocess.run([sys.executable, "-m", "llmtp", "stop", "--port", port], capture_output=True, timeout=60)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    dry = subprocess.run(
        [sys.executable, "-m", "llmtp", "serve", "hf:someone/Tiny-MTP-GGUF:Q8_0", "--server", server, "--dry-run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    assert "models--someone--Tiny-MTP-GGUF/snapshots/" in dry.stdout and "draft-mtp" in dry.stdout
