"""The MTP guard against the real llama-server: a served setting that loses on its traffic is stepped down.

The tiny `random` model's MTP head is useless (its drafts are rejected), as after a bad conversion or a
damaged quant; ngram-mod finds nothing to copy in open-ended prompts either. Its stored tune record says
"n-max 2 + ngram-mod, break-even 0.28" (the issue's figures), so the guard must drop the n-gram drafts,
then MTP, within a bounded number of requests, while a client keeps sending requests and none fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from llmtp.adapters.ports import free_port
from llmtp.core.launch import MtpSettings
from llmtp.core.tune import label
from llmtp.core.tune_decision import SettingBreakEven

pytestmark = pytest.mark.llama

STACKED = MtpSettings(enabled=True, n_max=2, p_min=0.0, extra_types=["ngram-mod"])
SINGLE = MtpSettings(enabled=True, n_max=2, p_min=0.0)
OPEN_ENDED = [
    "Once upon a time, in a village by the sea,",
    "Question: Why do cats purr?\nAnswer:",
    "Dear Sir or Madam, I am writing to",
    "User: What should I cook tonight?\nAssistant:",
    "The best thing about autumn is",
]
MAX_REQUESTS = 30  # both switches (6 requests of evidence each) must happen within this many requests


def _complete(url: str, prompt: str, deadline_s: float = 60.0) -> dict:
    """One request, retried on a refused connection or a 503 (loading), as OpenAI clients do: a server
    being switched is down for a moment; a request that was answered was never cut."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            r = httpx.post(
                f"{url}/completion",
                json={"prompt": prompt, "n_predict": 48, "temperature": 0.0, "cache_prompt": False},
                timeout=120,
            )
            if r.status_code == 200:
                return r.json()
            if r.status_code != 503:
                raise AssertionError(f"request failed: {r.status_code} {r.text[:200]}")
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            if isinstance(exc, httpx.RemoteProtocolError):
                raise AssertionError(f"a request in flight was cut: {exc}") from exc
        if time.monotonic() > end:
            raise AssertionError("the server did not come back within 60 s")
        time.sleep(0.2)


def _switch_seconds(sup_log: str) -> list[float]:
    """From each `switch -> restarting` line to the next `ready -> ready` line of the supervisor log."""
    from datetime import datetime

    out, since = [], None
    for line in sup_log.splitlines():
        stamp = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f") if line[:4].isdigit() else None
        if " switch -> restarting: " in line:
            since = stamp
        elif " ready -> ready: " in line and since is not None and stamp is not None:
            out.append(round((stamp - since).total_seconds(), 2))
            since = None
    return out


def _status(env: dict) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "llmtp", "status", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_losing_setting_is_stepped_down_within_bounded_requests_and_none_fails(llama_bin_dir, tiny_models):
    from test_verify_real import install_current

    from llmtp.services.stores import mtp_settings
    from llmtp.settings import load_settings

    settings = load_settings().settings
    install_current(settings, llama_bin_dir)
    model = tiny_models["random"]
    key = mtp_settings.model_key(model)
    mtp_settings.save(
        settings,
        key,
        STACKED,
        mtp_settings.TuneFindings(
            speedup=2.07,
            acceptance=0.70,
            break_even_acceptance=0.28,
            ladder=[
                SettingBreakEven(mtp=STACKED, label=label(STACKED), break_even_acceptance=0.28),
                SettingBreakEven(mtp=SINGLE, label=label(SINGLE), break_even_acceptance=0.28),
            ],
        ),
        reason="test: as tune stored it",
    )
    port = free_port()
    env = {**os.environ}
    log = Path(settings.state_dir) / "guard-test-serve.out"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmtp", "serve", str(model), "--port", str(port), "--foreground", "--", "-t", "1"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            st = _status(env)
            if st and st[0]["state"] == "ready":
                break
            time.sleep(0.5)
        argv = _status(env)[0]["argv"]
        assert "draft-mtp,ngram-mod" in argv or "ngram-mod,draft-mtp" in argv, argv
        answers = []
        for i in range(MAX_REQUESTS):
            answers.append(_complete(url, OPEN_ENDED[i % len(OPEN_ENDED)]))
            guard = _status(env)[0]["mtp_guard"]
            if (
                guard
                and guard["serving"] == "plain"
                and len(answers) >= 3
                and all("draft_n" not in a["timings"] for a in answers[-3:])
            ):
                break
            time.sleep(0.4)  # a person reading the answer: the guard switches in such a gap
        entry = _status(env)[0]
        guard = entry["mtp_guard"]
        print(f"served plain after {len(answers)} requests; switches: {guard and guard['switches']}")
        text = log.read_text()
        assert guard is not None and guard["serving"] == "plain", (guard, text[-3000:])
        assert [(s["from_label"], s["to_label"]) for s in guard["switches"]] == [
            ("n-max 2, p-min 0 + ngram-mod", "n-max 2, p-min 0"),
            ("n-max 2, p-min 0", "plain"),
        ]
        assert all("is losing: acceptance" in s["why"] for s in guard["switches"])
        assert len(answers) < MAX_REQUESTS  # within a bounded number of requests; every one was answered
        # served plain now: no drafts in the last answers, no --spec-type in the argv, no restart counted
        assert all("draft_n" not in a["timings"] for a in answers[-3:])
        assert "--spec-type" not in entry["argv"] and entry["restarts"] == 0
        sup_log = (Path(settings.state_dir) / "logs" / f"llmtp-serve-{port}.log").read_text()
        assert "MTP guard: stepping down from n-max 2, p-min 0 + ngram-mod to n-max 2, p-min 0" in sup_log
        assert "switch -> restarting: MTP guard" in sup_log
        print("switch to ready (s):", _switch_seconds(sup_log))  # the figure docs/verify.md quotes
        # the human status names the switch too
        human = subprocess.run(
            [sys.executable, "-m", "llmtp", "status"],
            env={**env, "COLUMNS": "250"},
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert f"port {port}: MTP guard: serving plain; 2 switch(es)" in human
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
