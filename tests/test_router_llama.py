"""Several models on one port, for real: `llmtp serve A B C` starts llama.cpp's router (the pinned test bed's
llama-server) with a preset written from each model's own launch plan. Three tiny models: agree (MTP on, every
draft accepted), random (MTP heads, but `llmtp tune` stored MTP off for it) and plain (no MTP heads)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from test_verify_real import settings  # noqa: F401 - the fixture: the test bed's build as the current one
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app
from llmtp.core.launch import MtpSettings
from llmtp.errors import UsageError
from llmtp.services.stores import mtp_settings
from llmtp.settings import load_settings

pytestmark = pytest.mark.llama
NAMES = ("agree", "random", "plain")
QUICK_AB = ["--runs", "1", "--warmups", "0", "--n-predict", "32", "--temperature", "0", "--budget", "10"]


@pytest.fixture
def three(tiny_models, tmp_path) -> list[Path]:
    """The three tiny models under short names (the file stem is the name clients send), random tuned off."""
    out = []
    for name in NAMES:
        path = tmp_path / f"{name}.gguf"
        shutil.copy(tiny_models[name], path)
        out.append(path)
    mtp_settings.save(
        load_settings().settings,
        mtp_settings.model_key(out[1]),
        MtpSettings(enabled=False),
        reason="nothing beats plain decoding on this model (test bed: random heads)",
    )
    return out


def _serve(llama_bin_dir: Path, models: list[Path], port: int, *extra: str) -> dict:
    argv = [sys.executable, "-m", "llmtp", "serve", *map(str, models), "--server", str(llama_bin_dir / "llama-server")]
    argv += ["--port", str(port), "--ctx", "512", "--json", *extra]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _chat(port: int, model: str, tokens: int = 16) -> dict:
    body = {"model": model, "messages": [{"role": "user", "content": "a b c"}], "max_tokens": tokens, "temperature": 0}
    r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body, timeout=120)
    assert r.status_code == 200, r.text
    return r.json()


def _metric(port: int, model: str, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", params={"model": model}, timeout=30).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(f"llamacpp:{name} ")]
    assert values, text[:400]
    return values[0]


def _states(port: int) -> dict[str, str]:
    data = httpx.get(f"http://127.0.0.1:{port}/models", timeout=30).json()["data"]
    return {m["id"]: ("failed" if m["status"].get("failed") else m["status"]["value"]) for m in data}


def _status() -> list[dict]:
    r = CliRunner().invoke(app, ["status", "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def _tree(pid: int) -> list[int]:
    try:
        proc = psutil.Process(pid)
        return [pid, *(c.pid for c in proc.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def test_three_models_each_with_its_own_plan_and_mtp(llama_bin_dir, three):
    port = free_port()
    started = _serve(llama_bin_dir, three, port)
    tree: list[int] = []
    try:
        assert started["models"] == list(NAMES) and started["openai_base_url"] == f"http://127.0.0.1:{port}/v1"
        listed = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=30).json()["data"]
        assert sorted(m["id"] for m in listed) == sorted(NAMES)
        args = {m["id"]: m["status"]["args"] for m in httpx.get(f"http://127.0.0.1:{port}/models").json()["data"]}
        assert "draft-mtp" in args["agree"] and "draft-mtp" not in args["random"] and "draft-mtp" not in args["plain"]
        for name in NAMES:
            answer = _chat(port, name)
            assert answer["model"] == name and answer["usage"]["completion_tokens"] == 16
        # drafts generated and accepted only where MTP is on, from each model's own /metrics
        assert _metric(port, "agree", "spec_decode_num_accepted_tokens_total") > 0
        assert _metric(port, "random", "spec_decode_num_accepted_tokens_total") == 0
        assert _metric(port, "plain", "spec_decode_num_accepted_tokens_total") == 0
        assert _states(port) == dict.fromkeys(NAMES, "loaded")  # all three fit together here: models-max 3

        [entry] = _status()
        assert entry["kind"] == "router" and entry["port"] == port
        rows = {m["name"]: m for m in entry["models"]}
        assert {n: rows[n]["state"] for n in NAMES} == dict.fromkeys(NAMES, "loaded")
        assert (rows["agree"]["mtp"], rows["random"]["mtp"], rows["plain"]["mtp"]) == (True, False, False)
        assert rows["agree"]["mtp_acceptance"] > 0.5 and rows["plain"]["mtp_words"] == "off"
        assert all(rows[n]["rss_bytes"] and rows[n]["tokens_generated"] == 16 for n in NAMES)
        text = CliRunner().invoke(app, ["status"]).stdout
        assert all(f"  {n}" in text for n in NAMES) and "router, 3 models" in text

        # one model's llama-server killed: the others keep answering; status names it; its next request reloads it
        tree = _tree(started["server_pid"])
        os.kill(rows["agree"]["server_pid"], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _states(port)["agree"] != "failed" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _states(port)["agree"] == "failed"
        assert _chat(port, "plain")["usage"]["completion_tokens"] == 16
        [entry] = _status()
        assert {m["name"]: m["state"] for m in entry["models"]}["agree"] == "failed"
        assert _chat(port, "agree")["usage"]["completion_tokens"] == 16
        tree = sorted(set(tree) | set(_tree(started["server_pid"])))

        # stop one model: unloaded, the router and the others stay
        r = CliRunner().invoke(app, ["stop", "random"])
        assert r.exit_code == 0 and "unloaded random" in r.stdout, r.output
        deadline = time.monotonic() + 30
        while _states(port)["random"] != "unloaded" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _states(port)["random"] == "unloaded" and _states(port)["plain"] == "loaded"
        logs = CliRunner().invoke(app, ["logs", "--port", str(port), "-n", "200"]).stdout
        assert "agree: llama-server exited with status" in logs and "agree: request" in logs, logs
        only = CliRunner().invoke(app, ["logs", "agree", "-n", "200"]).stdout
        assert "agree: request" in only and "plain:" not in only and "random:" not in only, only
    finally:
        r = CliRunner().invoke(app, ["stop", "--port", str(port)])
    assert f"stopped port(s) {port}" in r.stdout
    assert tree and not [p for p in tree if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]


def test_models_max_one_swaps_models_on_demand(llama_bin_dir, three):
    port = free_port()
    _serve(llama_bin_dir, [three[0], three[2]], port, "--models-max", "1")
    try:
        assert _chat(port, "agree")["model"] == "agree"
        assert _states(port) == {"agree": "loaded", "plain": "unloaded"}
        assert _chat(port, "plain")["model"] == "plain"
        assert _states(port) == {"agree": "unloaded", "plain": "loaded"}
        assert _chat(port, "agree")["usage"]["completion_tokens"] == 16

        # the router itself killed: its loaded child goes with it, the supervisor starts the router again
        [entry] = _status()
        router, child = entry["server_pid"], {m["name"]: m for m in entry["models"]}["agree"]["server_pid"]
        os.kill(router, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            [entry] = _status()
            if entry["state"] == "ready" and entry["server_pid"] not in (None, router):
                break
            time.sleep(0.3)
        assert entry["restarts"] == 1 and entry["state"] == "ready", entry
        deadline = time.monotonic() + 30
        while psutil.pid_exists(child) and psutil.Process(child).status() != "zombie" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not psutil.pid_exists(child) or psutil.Process(child).status() == "zombie"  # no orphan holds memory
        assert _chat(port, "plain")["model"] == "plain"
    finally:
        CliRunner().invoke(app, ["stop", "--port", str(port)])


def test_the_openai_client_chooses_a_model_by_name(llama_bin_dir, three, tmp_path):
    openai = pytest.importorskip("openai")
    key_file = tmp_path / "key"
    key_file.write_text("sk-router\n")
    key_file.chmod(0o600)
    port = free_port()
    _serve(llama_bin_dir, [three[0], three[2]], port, "--api-key-file", str(key_file))
    try:
        base = f"http://127.0.0.1:{port}/v1"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=base, api_key="sk-router", max_retries=0, timeout=120)
        assert sorted(m.id for m in client.models.list()) == ["agree", "plain"]
        messages = [{"role": "user", "content": "a b c"}]
        for name in ("plain", "agree"):
            done = client.chat.completions.create(model=name, messages=messages, max_tokens=8, temperature=0)
            assert done.model == name and done.usage.completion_tokens == 8
        with pytest.raises(openai.BadRequestError, match="not found"):
            client.chat.completions.create(model="nope", messages=messages, max_tokens=8)
        [entry] = _status()  # llmtp's own requests send the key
        assert {m["name"]: m["state"] for m in entry["models"]} == {"agree": "loaded", "plain": "loaded"}
    finally:
        CliRunner().invoke(app, ["stop", "--port", str(port)])


def test_verify_checks_one_model_of_a_running_router(settings, three):  # noqa: F811 - test_verify_real's fixture
    """`verify MODEL --port P` on a router: the live check of that model (its requests name it, its own metrics),
    after the A/B of the same plan stored its break-even; a plain `verify MODEL` of a served member is refused."""
    ab = CliRunner().invoke(app, ["verify", str(three[0]), "--ctx", "512", *QUICK_AB, "--json"])
    assert ab.stdout.strip(), ab.output
    report = json.loads(ab.stdout)
    assert report["break_even_acceptance"] is not None, ab.output
    port = free_port()
    r = subprocess.run(
        [sys.executable, "-m", "llmtp", "serve", str(three[0]), str(three[2]), "--port", str(port), "--ctx", "512"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr
    try:
        refused = CliRunner().invoke(app, ["verify", str(three[0]), "--ctx", "512", *QUICK_AB])
        assert isinstance(refused.exception, UsageError) and f"verify agree --port {port}" in refused.exception.hint
        unnamed = CliRunner().invoke(app, ["verify", "--port", str(port)])
        assert isinstance(unnamed.exception, UsageError) and "agree, plain" in str(unnamed.exception)
        live = CliRunner().invoke(app, ["verify", "agree", "--port", str(port), "--tolerance", "1.0", "--json"])
        assert live.stdout.strip(), (live.output, repr(live.exception))
        checked = json.loads(live.stdout)
        assert checked["mode"] == "live" and checked["markers"]["runtime"]["ok"] is True, checked
        assert checked["acceptance"] > 0.9 and checked["break_even_acceptance"] == report["break_even_acceptance"]
        assert live.exit_code == checked["verdict"]["code"]
        assert _metric(port, "agree", "spec_decode_num_accepted_tokens_total") > 0  # the check's drafts: agree's
        assert _states(port)["plain"] == "unloaded"  # nothing of the check went to the other model
    finally:
        CliRunner().invoke(app, ["stop", "--port", str(port)])


def test_an_idle_model_sleeps_and_wakes_on_its_next_request(llama_bin_dir, three):
    port = free_port()
    _serve(llama_bin_dir, [three[0], three[2]], port, "--idle-unload", "1")
    try:
        assert _chat(port, "agree")["model"] == "agree"
        deadline = time.monotonic() + 60
        while _states(port)["agree"] != "sleeping" and time.monotonic() < deadline:
            time.sleep(0.3)
        assert _states(port)["agree"] == "sleeping"
        [entry] = _status()
        assert {m["name"]: m["state"] for m in entry["models"]}["agree"] == "sleeping"
        assert _chat(port, "agree")["usage"]["completion_tokens"] == 16
    finally:
        CliRunner().invoke(app, ["stop", "--port", str(port)])
