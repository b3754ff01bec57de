"""The live MTP check while serving: rolling acceptance against tune's break-even, the supervisor hook,
and what `llmtp status` shows. Nothing here restarts a server."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llmtp.adapters.files import LogFollower
from llmtp.core import live
from llmtp.core.metrics import LastRequest, requests
from llmtp.services.verify import live_check

FIXTURES = Path(__file__).parent / "fixtures" / "server-logs"


def timing(task: int, tokens: int, ms: float, drafted: int | None = None, accepted: int | None = None) -> str:
    """Two print_timing lines as b11434 writes them (see the captured fixture)."""
    out = (
        f"0.02.015.956 I slot print_timing: id  0 | task {task} |        eval time =   {ms:8.2f} ms / "
        f"{tokens:5d} tokens (    0.31 ms per token,  {tokens / ms * 1000:8.2f} tokens per second)\n"
    )
    if drafted is not None:
        out += (
            f"0.02.015.983 I slot print_timing: id  0 | task {task} | draft acceptance = "
            f"{accepted / drafted:.5f} ( {accepted:4d} accepted / {drafted:4d} generated), mean len =  2.00\n"
        )
    return out


def test_requests_parses_every_finished_request_of_a_captured_log():
    got = requests((FIXTURES / "b11434-cpu-tiny-agree-mtp-two-requests.log").read_text())
    assert [(r.task, r.tokens, r.eval_ms, r.drafted, r.accepted) for r in got] == [
        (0, 16, 4.61, 11, 11),
        (6, 32, 7.37, 23, 23),
    ]


def req(acc, drafted=40, tokens=50, ms=1000.0):
    return LastRequest(
        task=0,
        tokens=tokens,
        tokens_per_second=tokens / ms * 1000,
        eval_ms=ms,
        drafted=drafted,
        accepted=round(acc * drafted) if drafted else None,
    )


def test_assess_needs_evidence_then_compares_with_break_even():
    assert live.assess([], 0.4, "m.gguf").state == "unknown"
    few = live.assess([req(0.1)] * 3, 0.4, "m.gguf")
    assert few.state == "unknown" and few.fix is None
    losing = live.assess([req(0.2)] * 10, 0.42, "m.gguf")
    assert losing.state == "losing" and losing.fix == "llmtp tune m.gguf"
    assert losing.acceptance == pytest.approx(0.2) and losing.tokens_per_second == pytest.approx(50.0)
    assert losing.detail.startswith(
        "MTP is losing: acceptance 0.20 over the last 10 requests is under the break-even 0.42"
    )
    assert live.assess([req(0.9)] * 10, 0.42, "m.gguf").state == "winning"
    unmeasured = live.assess([req(0.2)] * 10, None, "m.gguf")
    assert unmeasured.state == "unknown" and unmeasured.fix == "llmtp tune m.gguf"
    assert live.assess([req(0, drafted=None)] * 10, 0.4, "m.gguf").state == "off"


def test_rolling_window_forgets_old_requests():
    r = live.RollingMtp(window=5)
    r.add([req(0.1)] * 5)
    assert r.assess(0.4, "m").state == "losing"
    r.add([req(0.9)] * 5)
    assert r.assess(0.4, "m").state == "winning"


def test_log_follower_reads_only_new_complete_lines_and_survives_rotation(tmp_path):
    path = tmp_path / "server.log"
    f = LogFollower(path)
    assert f.read() == ""  # no file yet
    path.write_text("a\nb\npartial")
    assert f.read() == "a\nb\n"
    with path.open("a") as fh:
        fh.write(" line\nc\n")
    assert f.read() == "partial line\nc\n"
    path.write_text("new\n")  # rotated at a restart: shorter than what was read
    assert f.read() == "new\n"


@pytest.fixture
def tuned_model(tmp_path):
    from llmtp.core.launch import MtpSettings
    from llmtp.services.stores import mtp_settings
    from llmtp.settings import load_settings

    settings = load_settings().settings
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + b"\0" * 64)
    mtp_settings.save(
        settings,
        mtp_settings.model_key(model),
        MtpSettings(enabled=True, n_max=3),
        mtp_settings.TuneFindings(speedup=1.4, acceptance=0.8, break_even_acceptance=0.42),
    )
    return settings, model


def test_hook_logs_once_when_mtp_starts_losing_with_the_fix(tuned_model, tmp_path, caplog):
    settings, model = tuned_model
    log_file = tmp_path / "server.log"
    log_file.write_text("".join(timing(i, 50, 1000.0, 40, 36) for i in range(6)))
    tick = live_check.live_check_hook(settings, str(model), log_file)
    caplog.set_level(logging.INFO, logger="llmtp.serve")
    tick(None)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with log_file.open("a") as fh:  # the traffic changes: drafts stop being accepted
        fh.write("".join(timing(10 + i, 50, 1000.0, 40, 2) for i in range(20)))
    tick(None)
    tick(None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith(
        "MTP is losing: acceptance 0.05 over the last 20 requests is under the break-even 0.42"
    )
    assert warnings[0].endswith(f"fix: `llmtp tune {model}` (the server keeps running as it is)")


def test_status_shows_the_live_verdict(tuned_model, tmp_path):
    settings, model = tuned_model
    log_file = tmp_path / "server.log"
    log_file.write_text("".join(timing(i, 50, 1000.0, 40, 4) for i in range(8)))
    entries = live_check.annotate(settings, [{"model": str(model), "log_path": str(log_file), "port": 8080}])
    assert entries[0]["mtp_live"]["state"] == "losing"
    assert entries[0]["mtp_live"]["fix"] == f"llmtp tune {model}"
    other = tmp_path / "never-tuned.gguf"
    other.write_bytes(b"GGUF" + b"\1" * 64)
    e = live_check.annotate(settings, [{"model": str(other), "log_path": str(log_file), "port": 8081}])[0]
    assert e["mtp_live"]["state"] == "unknown" and "no measured break-even" in e["mtp_live"]["detail"]


def test_supervisor_calls_the_tick_hook_while_serving_and_keeps_the_server():
    import threading
    import time

    from llmtp.core.launch import LaunchSpec
    from llmtp.services.serve.supervisor import Supervisor, SupervisorConfig
    from tests.test_supervisor_fake import FAST, FakeProc

    procs, ticks = [], []

    def launch(spec):
        procs.append(FakeProc(spec))
        return procs[-1]

    sup = Supervisor(
        LaunchSpec(model="m", port=1), launch, config=SupervisorConfig(**FAST), on_tick=lambda s: ticks.append(s.state)
    )
    t = threading.Thread(target=sup.run, daemon=True)
    t.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(ticks) < 3:
        time.sleep(0.01)
    sup.request_stop()
    t.join(5)
    assert len(ticks) >= 3 and len(procs) == 1 and sup.restarts == 0


def test_hook_never_raises_into_the_supervisor(tuned_model, tmp_path, monkeypatch):
    settings, model = tuned_model
    tick = live_check.live_check_hook(settings, str(model), tmp_path / "server.log")
    monkeypatch.setattr(live_check, "requests", lambda text: 1 / 0)
    tick(None)  # logged at debug level, not raised


def test_an_untuned_model_uses_the_break_even_its_passing_verify_stored(tmp_path):
    from llmtp.core.baseline import Baseline
    from llmtp.services.stores import mtp_settings
    from llmtp.services.verify import baselines as store
    from llmtp.settings import load_settings

    settings = load_settings().settings
    model = tmp_path / "v.gguf"
    model.write_bytes(b"GGUF" + b"\2" * 64)
    key = mtp_settings.model_key(model)
    assert live_check.break_even_for(settings, str(model)) is None
    for created, be in (("2026-11-01T00:00:00+00:00", 0.9), ("2026-12-01T00:00:00+00:00", 0.3)):
        store.save(
            settings,
            Baseline(
                key=f"{key}__cpu__{created[:10]}",
                model_key=key,
                n_predict=128,
                created=created,
                break_even_acceptance=be,
            ),
        )
    store.save(
        settings,
        Baseline(
            key="other__cpu__nogpu",
            model_key="other",
            n_predict=128,
            created="2026-12-02T00:00:00+00:00",
            break_even_acceptance=0.99,
        ),
    )
    assert live_check.break_even_for(settings, str(model)) == 0.3  # the newest of this model's
