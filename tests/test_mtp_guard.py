"""The serve guard: the pure decision (window, threshold, hysteresis, next safer setting) and its
mechanism against a fake supervisor (idle slots, relaunch, status and log)."""

from __future__ import annotations

import pytest

from llmtp.core import guard
from llmtp.core.launch import MtpSettings
from llmtp.core.metrics import LastRequest
from llmtp.core.tune_decision import SettingBreakEven

STACKED = MtpSettings(enabled=True, n_max=1, p_min=0.0, extra_types=["ngram-mod"])
SINGLE = MtpSettings(enabled=True, n_max=1, p_min=0.0)
LADDER = [
    SettingBreakEven(mtp=STACKED, label="n-max 1, p-min 0 + ngram-mod", break_even_acceptance=0.28),
    SettingBreakEven(mtp=SINGLE, label="n-max 1, p-min 0", break_even_acceptance=0.30),
]
CFG = guard.GuardConfig()


def reqs(accepted: list[int], drafted: int = 20) -> list[LastRequest]:
    return [
        LastRequest(task=i, tokens=64, tokens_per_second=50.0, drafted=drafted, accepted=a)
        for i, a in enumerate(accepted)
    ]


def test_evidence_needs_enough_requests_then_judges_the_upper_bound():
    assert guard.evidence(reqs([1] * 5), 0.28, CFG).verdict == "unknown"  # 5 requests: too few
    assert guard.evidence(reqs([1] * 6, drafted=5), 0.28, CFG).verdict == "unknown"  # 30 drafted: too few
    ev = guard.evidence(reqs([4, 5, 3, 5, 4, 4]), 0.28, CFG)  # 0.21 steadily: losing
    assert ev.verdict == "losing" and ev.acceptance == pytest.approx(0.2083, abs=1e-4) and ev.upper < 0.28
    # the same mean, spread wide: the bound reaches the break-even, so it is noise, not a verdict
    ev = guard.evidence(reqs([0, 10, 0, 10, 0, 5]), 0.28, CFG)
    assert ev.acceptance == pytest.approx(0.2083, abs=1e-4) and ev.verdict == "paying" and ev.upper > 0.28
    assert guard.evidence(reqs([10] * 6), 0.28, CFG).verdict == "paying"
    assert guard.evidence(reqs([1] * 6), None, CFG).verdict == "unknown"  # no break-even: never a guess
    assert guard.evidence(reqs([1] * 6, drafted=0), 0.28, CFG).verdict == "unknown"  # nothing drafted


def test_steps_down_the_ladder_one_setting_at_a_time_with_a_fresh_window_each_time():
    state = guard.start(LADDER)
    state = guard.observe(state, reqs([1] * 5), CFG)
    state, action = guard.decide(state, CFG)
    assert action is None  # 5 requests: not yet
    state = guard.observe(state, reqs([1]), CFG)
    state, action = guard.decide(state, CFG)
    assert action.direction == "down" and action.to == SINGLE
    assert action.why.startswith("n-max 1, p-min 0 + ngram-mod is losing: acceptance 0.05")
    state = guard.switched(state, action, "t1", CFG)
    assert state.served == SINGLE and state.window == [] and state.switches[-1].to_label == "n-max 1, p-min 0"
    state, action = guard.decide(state, CFG)
    assert action is None  # the old window is gone: the new setting is judged on its own requests
    state = guard.observe(state, reqs([2] * 6), CFG)
    state, action = guard.decide(state, CFG)
    assert action.to == MtpSettings(enabled=False) and action.to_label == "plain"
    state = guard.switched(state, action, "t2", CFG)
    assert state.served == MtpSettings(enabled=False)
    state = guard.observe(state, reqs([0] * 50, drafted=0), CFG)
    assert guard.decide(state, CFG)[1] is None  # off: nothing to judge, no retry before the wait


def test_a_setting_that_pays_is_kept_and_the_window_is_bounded():
    state = guard.start(LADDER)
    for _ in range(10):
        state = guard.observe(state, reqs([12] * 4), CFG)
        state, action = guard.decide(state, CFG)
        assert action is None
    assert len(state.window) == CFG.window and state.since_switch == 40 and state.last.verdict == "paying"


def test_retry_waits_and_the_wait_doubles_when_the_retried_setting_loses_again():
    cfg = guard.GuardConfig(retry_after=50)
    state = guard.start(LADDER[:1], cfg)
    state = guard.observe(state, reqs([0] * 6), cfg)
    state, down = guard.decide(state, cfg)
    state = guard.switched(state, down, "t1", cfg)
    assert state.served == MtpSettings(enabled=False)
    state = guard.observe(state, reqs([0] * 49, drafted=0), cfg)
    assert guard.decide(state, cfg)[1] is None  # 49 < 50
    state = guard.observe(state, reqs([0], drafted=0), cfg)
    state, up = guard.decide(state, cfg)
    assert up.direction == "up" and up.to == STACKED and "50 requests on plain" in up.why
    state = guard.switched(state, up, "t2", cfg)
    state = guard.observe(state, reqs([0] * 6), cfg)
    state, down = guard.decide(state, cfg)
    state = guard.switched(state, down, "t3", cfg)
    assert state.retry_after == 100  # lost again: twice the wait before the next try
    assert [s.to_label for s in state.switches] == ["plain", "n-max 1, p-min 0 + ngram-mod", "plain"]
    assert guard.decide(guard.observe(state, reqs([0] * 99, drafted=0), cfg), cfg)[1] is None
    never = guard.GuardConfig(retry_after=0)
    off = guard.switched(guard.start(LADDER[:1], never), down, "t", never)
    assert guard.decide(guard.observe(off, reqs([0] * 10000, drafted=0), never), never)[1] is None


def test_ladder_from_the_stored_record_or_built_from_what_is_served():
    assert guard.ladder_for(STACKED, LADDER, 0.5) == LADDER  # tune's ladder, its own break-evens
    with_sidecar = STACKED.model_copy(update={"draft_model": "/m/mtp.gguf"})
    assert guard.ladder_for(with_sidecar, LADDER, None)[1].mtp.draft_model == "/m/mtp.gguf"
    other = MtpSettings(enabled=True, n_max=3, extra_types=["ngram-mod"])  # served something tune did not store
    built = guard.ladder_for(other, LADDER, 0.4)
    assert [(r.label, r.break_even_acceptance) for r in built] == [
        ("n-max 3, p-min 0 + ngram-mod", 0.4),
        ("n-max 3, p-min 0", None),
    ]
    assert guard.ladder_for(MtpSettings(enabled=False), LADDER, 0.4) == []


# -- the mechanism against a fake supervisor -------------------------------------------------------------


def _timing(task: int, drafted: int, accepted: int) -> str:
    from tests.test_live_check import timing

    return timing(task, 64, 500.0, drafted, accepted)


def test_the_guard_waits_for_idle_slots_then_relaunches_with_the_safer_setting(tmp_path, caplog):
    import logging
    import threading
    import time

    from llmtp.core.launch import LaunchSpec
    from llmtp.services.serve.supervisor import Supervisor, SupervisorConfig
    from llmtp.services.verify import mtp_guard
    from tests.test_supervisor_fake import FAST, FakeClient, FakeProc

    log_path = tmp_path / "server.log"
    log_path.write_text("")
    busy = {"n": 3}  # /slots says "processing" three times: a request in flight is never cut

    class SlotsClient(FakeClient):
        def slots(self):
            busy["n"] -= 1
            return [{"id": 0, "is_processing": busy["n"] >= 0}]

    class Proc(FakeProc):
        def client(self, timeout=10):
            return SlotsClient(self)

    procs = []

    def launch(spec):
        procs.append(Proc(spec))
        return procs[-1]

    hook = mtp_guard.guard_hook(
        None,
        "m.gguf",
        log_path,
        state_dir=tmp_path,
        port=1,
        enabled=True,
        deps=mtp_guard.GuardDeps(cfg=guard.GuardConfig(), ladder_source=lambda m: (LADDER, None), sleep=lambda s: None),
    )
    sup = Supervisor(
        LaunchSpec(model="m.gguf", port=1, mtp=STACKED), launch, config=SupervisorConfig(**FAST), on_tick=hook
    )
    t = threading.Thread(target=sup.run, daemon=True)
    caplog.set_level(logging.INFO, logger="llmtp.serve")
    t.start()
    with log_path.open("a") as f:
        f.write("".join(_timing(i, 20, 1) for i in range(8)))  # acceptance 0.05 < 0.28, steadily
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(procs) < 2:
        time.sleep(0.01)
    assert len(procs) == 2, "no switch"
    log_path.write_text("")  # the launcher rotates the log: the new server's starts empty
    sup.request_stop()
    t.join(5)
    assert procs[0].stopped and procs[1].spec.mtp == SINGLE  # ngram-mod dropped first, MTP kept
    assert busy["n"] < 0 and sup.restarts == 0 and sup.switches == 1  # waited for idle; no crash counted
    rec = mtp_guard.read_record(tmp_path, 1)
    assert rec.serving == "n-max 1, p-min 0" and rec.switches[0].from_label == "n-max 1, p-min 0 + ngram-mod"
    assert "is losing: acceptance 0.05" in rec.switches[0].why
    line = mtp_guard.guard_line(rec.model_dump(mode="json"))
    assert line.startswith("MTP guard: serving n-max 1, p-min 0; 1 switch(es), last at ")
    assert any(
        "MTP guard: stepping down from n-max 1, p-min 0 + ngram-mod to n-max 1, p-min 0" in r.message
        for r in caplog.records
    )
    assert any("switch -> restarting: MTP guard" in r.message for r in caplog.records)


def test_a_pinned_setting_is_never_switched_and_says_so(tmp_path):
    from types import SimpleNamespace

    from llmtp.core.launch import LaunchSpec
    from llmtp.services.verify import mtp_guard

    log_path = tmp_path / "server.log"
    log_path.write_text("".join(_timing(i, 20, 0) for i in range(10)))
    calls = []
    sup = SimpleNamespace(spec=LaunchSpec(model="m", port=2, mtp=STACKED), relaunch=lambda *a: calls.append(a))
    hook = mtp_guard.guard_hook(
        None,
        "m",
        log_path,
        state_dir=tmp_path,
        port=2,
        enabled=False,
        deps=mtp_guard.GuardDeps(ladder_source=lambda m: (LADDER, None)),
    )
    for _ in range(3):
        hook(sup)
    assert calls == []
    rec = mtp_guard.read_record(tmp_path, 2)
    assert rec.enabled is False and mtp_guard.guard_line(rec.model_dump(mode="json")).startswith(
        "MTP guard off: pinned"
    )


def test_serve_cli_passes_the_guard_setting(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmtp.cli.main import app

    out = CliRunner().invoke(app, ["serve", "--help"])
    assert "--no-mtp-guard" in out.output
    monkeypatch.setenv("LLMTP_MTP_GUARD", "false")
    from llmtp.settings import load_settings

    assert load_settings().settings.mtp_guard is False
