"""The verify steps against fake server launches: order, fail-fast, baseline store and regression."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from llmtp.core.capabilities import Capabilities
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.launch_plan import plan_of_spec
from llmtp.core.verify import Method, VerdictCode
from llmtp.errors import ServeError
from llmtp.services.verify import baselines as store
from llmtp.services.verify.mtp_ab import Target, VerifyOptions, verify

MTP_CAPS = Capabilities(enums={"--spec-type": ["none", "draft-mtp", "ngram-mod"]}, devices=[])
METHOD = Method(n_predict=16, warmups=1, runs=3)


class FakeHandle:
    def __init__(self, tps: float, speculative: bool, draft: tuple[int, int] | None):
        self.tps, self.speculative, self.draft = tps, speculative, draft
        self.calls = 0
        self.acc = 0

    def slots(self):
        return [{"id": 0, "speculative": self.speculative}]

    def metrics(self):
        return (
            f"llamacpp:spec_decode_num_accepted_tokens_total {self.acc}\n"
            f"llamacpp:spec_decode_num_drafts_total {self.calls * 4}\n"
        )

    def complete(self, prompt, *, n_predict, temperature, seed):
        self.calls += 1
        t = {
            "prompt_n": 30,
            "prompt_per_second": 300.0 if self.draft is None else 270.0,
            "predicted_n": n_predict,
            "predicted_per_second": self.tps + self.calls % 3,
        }
        if self.draft:
            t["draft_n"], t["draft_n_accepted"] = self.draft
            self.acc += self.draft[1]
        return t

    def log_text(self):
        return "llama_kv_cache:        CPU KV buffer size =    12.00 MiB\n"


def fake_launcher(plain_tps=10.0, mtp_tps=20.0, speculative=True, draft=(16, 16), fail_mtp=False):
    specs = []

    @contextmanager
    def launch(spec: LaunchSpec):
        specs.append(spec)
        if spec.mtp.enabled and fail_mtp:
            raise ServeError("llama-server exited with code 1 while loading")
        if spec.mtp.enabled:
            yield FakeHandle(mtp_tps, speculative, draft)
        else:
            yield FakeHandle(plain_tps, False, None)

    launch.specs = specs
    return launch


def target(tmp_path, heads=1, caps=MTP_CAPS):
    info = ModelInfo(arch="qwen35", nextn_predict_layers=heads, mtp_arch=True, file_size_bytes=1000)
    return Target(
        model_path=tmp_path / "m.gguf", model_key="m-1000-abc", info=info, caps=caps, build_id="b1", profile="cpu"
    )


SPEC = LaunchSpec(model="m.gguf", port=0, mtp=MtpSettings(enabled=True))


def _help_caps() -> Capabilities:
    from pathlib import Path

    from llmtp.core.probe import parse_help

    flags, enums = parse_help((Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt").read_text())
    return Capabilities(flags=flags, enums=enums, devices=[])


HELP_CAPS = _help_caps()
BASE = plan_of_spec(SPEC, HELP_CAPS)  # the launch plan verify measures: its MTP arm, and it with MTP off


def run(tmp_path, launcher, t=None, **kw):
    from llmtp.settings import load_settings

    settings = load_settings().settings
    return verify(
        t or target(tmp_path),
        METHOD,
        launcher,
        base=BASE,
        options=VerifyOptions(
            baseline_load=lambda k: store.load(settings, k), baseline_save=lambda b: store.save(settings, b), **kw
        ),
    ), settings


def test_pass_stores_baseline_then_regression_flags_a_drop(tmp_path):
    launch = fake_launcher()
    report, settings = run(tmp_path, launch)
    assert report.verdict.code == VerdictCode.PASS
    assert report.acceptance == 1.0
    assert report.speedup == pytest.approx(21 / 11)
    assert [c.case.key for c in report.cases] == ["code@0", "prose@0", "code@0.7", "prose@0.7"]
    assert report.cases[0].prompt_cost == pytest.approx(0.1)
    assert report.mean_accepted_length == pytest.approx(1 + 16 / 4)
    assert "baseline stored" in report.warnings
    # MTP launch first (fail fast), both with one slot; the plain arm has MTP off.
    assert [s.mtp.enabled for s in launch.specs] == [True, False]
    assert all(s.spec.parallel in (None, 1) for s in launch.specs)
    assert store.load(settings, "m-1000-abc__cpu__nogpu").mtp_tokens_per_s["code@0"] == 21.0

    again, _ = run(tmp_path, fake_launcher(mtp_tps=18.0, plain_tps=9.0))
    assert again.verdict.code == VerdictCode.PASS and again.baseline["regression"] is False
    slow, _ = run(tmp_path, fake_launcher(mtp_tps=15.0, plain_tps=9.0))
    assert slow.verdict.code == VerdictCode.REGRESSION
    assert slow.verdict.reason.startswith("MTP tok/s -")
    # The baseline is the first passing run's: a regression never replaces it.
    assert store.load(settings, "m-1000-abc__cpu__nogpu").mtp_tokens_per_s["code@0"] == 21.0


def test_slower_than_plain(tmp_path):
    report, settings = run(tmp_path, fake_launcher(plain_tps=20.0, mtp_tps=8.0, draft=(48, 0)))
    assert report.verdict.code == VerdictCode.MTP_SLOWER
    assert report.acceptance == 0.0
    assert store.load(settings, "m-1000-abc__cpu__nogpu") is None


def test_no_heads_launches_nothing(tmp_path):
    launch = fake_launcher()
    report, _ = run(tmp_path, launch, target(tmp_path, heads=0))
    assert report.verdict.code == VerdictCode.NO_MTP_HEADS
    assert report.verdict.reason == "nextn_predict_layers = 0: heads stripped from this file"
    assert launch.specs == []


def test_build_without_mtp(tmp_path):
    caps = Capabilities(enums={"--spec-type": ["none", "draft-simple"]})
    report, _ = run(tmp_path, fake_launcher(), target(tmp_path, caps=caps))
    assert report.verdict.code == VerdictCode.MTP_NOT_IN_BUILD


@pytest.mark.parametrize(
    "kw,detail",
    [
        ({"speculative": False}, "/slots shows no speculative slot"),
        ({"draft": None}, "slot is speculative but no completion drafted a token (draft_n absent)"),
        ({"fail_mtp": True}, "server with MTP failed to start: llama-server exited with code 1 while loading"),
    ],
)
def test_inactive_at_runtime_stops_after_the_probe(tmp_path, kw, detail):
    launch = fake_launcher(**kw)
    report, _ = run(tmp_path, launch)
    assert report.verdict.code == VerdictCode.MTP_INACTIVE
    assert report.markers.runtime.detail == detail
    assert [s.mtp.enabled for s in launch.specs] == [True]  # no plain arm measured for nothing


def test_update_baseline_replaces(tmp_path):
    run(tmp_path, fake_launcher())
    report, settings = run(tmp_path, fake_launcher(mtp_tps=40.0), update_baseline=True)
    assert "baseline replaced" in report.warnings
    assert store.load(settings, "m-1000-abc__cpu__nogpu").mtp_tokens_per_s["code@0"] == 41.0


def test_cli_human_and_json_share_the_report_and_exit_with_the_verdict(tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from llmtp.cli.main import app
    from llmtp.services.verify import ab_plan as svc

    seen = {}

    def fake_run_verify(settings, model, method, **kw):
        seen["method"] = method
        return verify(target(tmp_path), method, fake_launcher(plain_tps=20.0, mtp_tps=8.0, draft=(48, 0)), base=BASE)

    monkeypatch.setattr(svc, "run_verify", fake_run_verify)
    human = CliRunner().invoke(app, ["verify", "m.gguf", "--runs", "2", "--warmups", "0", "--n-predict", "8"])
    assert human.exit_code == 13
    assert "MTP slower than plain (exit 13): MTP decodes at 0.4" in human.output
    assert "  runtime  ok   /slots speculative" in human.output
    assert (seen["method"].runs, seen["method"].warmups, seen["method"].n_predict) == (2, 0, 8)
    js = CliRunner().invoke(app, ["verify", "m.gguf", "--quick", "--json"])
    assert js.exit_code == 13 and json.loads(js.stdout)["verdict"]["code"] == 13
    assert seen["method"].n_predict == 128
    bad = CliRunner().invoke(app, ["verify", "--quick", "--thorough"])
    assert bad.exit_code != 0


def test_console_entry_point_exits_with_the_verdict(tmp_path, monkeypatch):
    from llmtp.cli.main import run
    from llmtp.services.verify import ab_plan as svc

    monkeypatch.setattr(
        svc,
        "run_verify",
        lambda settings, model, method, **kw: verify(target(tmp_path, heads=0), method, fake_launcher(), base=BASE),
    )
    with pytest.raises(SystemExit) as exc:
        run(["verify", "m.gguf", "--json"])
    assert exc.value.code == 11


def test_busy_machine_warning(tmp_path):
    class Noisy(FakeHandle):
        def complete(self, prompt, **kw):
            t = super().complete(prompt, **kw)
            t["predicted_per_second"] *= 3 if self.calls % 2 else 1
            return t

    @contextmanager
    def launch(spec):
        yield Noisy(20.0, True, (16, 16)) if spec.mtp.enabled else FakeHandle(10.0, False, None)

    report, _ = run(tmp_path, launch)
    assert any(w.startswith("runs varied by more than 1.5x (code@0") for w in report.warnings)


class Clock:
    """Each completion takes `step` seconds of fake time."""

    def __init__(self, step=1.0):
        self.t, self.step = 0.0, step

    def __call__(self):
        self.t += self.step
        return self.t


SEQ = Method.preset("default").model_copy(update={"n_predict": 16})


def ordered_launcher(events, plain_tps=10.0, mtp_tps=20.0, draft=(16, 16)):
    """Like fake_launcher, but records launches, completions and closes in one list, in order."""

    class H(FakeHandle):
        def __init__(self, name, *a):
            super().__init__(*a)
            self.name = name

        def complete(self, prompt, **kw):
            events.append(f"{self.name} run")
            return super().complete(prompt, **kw)

    @contextmanager
    def launch(spec):
        name = "mtp" if spec.mtp.enabled else "plain"
        events.append(f"{name} up")
        try:
            yield H(name, mtp_tps, True, draft) if spec.mtp.enabled else H(name, plain_tps, False, None)
        finally:
            events.append(f"{name} down")

    return launch


def test_sequential_alternates_arms_and_stops_once_the_interval_is_clear(tmp_path):
    events = []
    report = verify(target(tmp_path), SEQ, ordered_launcher(events), base=BASE, options=VerifyOptions(clock=Clock()))
    assert report.verdict.code == VerdictCode.PASS
    seq = report.sequential
    assert seq.stopped == "above" and 3 <= seq.pairs <= 4 and seq.interval.low > 1.0
    assert report.speedup == pytest.approx(seq.interval.speedup)
    # CPU build: both servers up at once; after the probe (MTP's warm-up) and plain's warm-up, runs alternate.
    assert events[:4] == ["mtp up", "mtp run", "plain up", "plain run"]
    runs = [e for e in events[4:] if e.endswith("run")]
    assert runs[:6] == ["mtp run", "plain run", "plain run", "mtp run", "mtp run", "plain run"]
    assert sorted(events[-2:]) == ["mtp down", "plain down"]
    assert report.acceptance == 1.0 and report.cases[0].case.key == "code@0"


def test_sequential_slower_arm_exits_13_and_budget_bounds_an_undecided_check(tmp_path):
    report = verify(
        target(tmp_path),
        SEQ,
        ordered_launcher([], plain_tps=20.0, mtp_tps=8.0, draft=(16, 1)),
        base=BASE,
        options=VerifyOptions(clock=Clock()),
    )
    assert report.verdict.code == VerdictCode.MTP_SLOWER and report.sequential.stopped == "below"

    class Coin(FakeHandle):  # MTP wins and loses by turns: no interval ever clears 1.0
        def complete(self, prompt, **kw):
            t = super().complete(prompt, **kw)
            t["predicted_per_second"] = 13.0 if self.calls % 2 else 7.0
            return t

    @contextmanager
    def launch(spec):
        yield Coin(10.0, True, (16, 8)) if spec.mtp.enabled else FakeHandle(10.0, False, None)

    clock = Clock(step=2.0)
    report = verify(
        target(tmp_path),
        SEQ.model_copy(update={"budget_s": 20.0}),
        launch,
        base=BASE,
        options=VerifyOptions(clock=clock),
    )
    seq = report.sequential
    # probe 2 s + one warm-up per server 4 s + 4 s per pair: a fourth pair would end at 22 s, past the budget
    assert seq.stopped == "budget" and seq.generation_s == 18.0 and seq.pairs == 3
    assert any(w.startswith("the 20 s budget ran out before the speedup's interval cleared") for w in report.warnings)


def test_sequential_on_a_gpu_build_runs_one_server_at_a_time(tmp_path):
    from llmtp.core.capabilities import Device

    caps = MTP_CAPS.model_copy(update={"devices": [Device(id="CUDA0", backend="CUDA", name="RTX")]})
    events = []
    report = verify(
        target(tmp_path, caps=caps), SEQ, ordered_launcher(events), base=BASE, options=VerifyOptions(clock=Clock())
    )
    assert report.verdict.code == VerdictCode.PASS
    up = 0
    for e in events:  # never two servers at once
        up += {"up": 1, "down": -1}.get(e.split()[1], 0)
        assert up <= 1
    assert events.count("mtp up") == report.sequential.pairs // 4 + (report.sequential.pairs % 4 > 0)
    assert report.sequential.pairs % 4 == 0  # whole rounds: every case on both arms


def test_sequential_over_rpc_workers_runs_one_server_at_a_time(tmp_path):
    """A ggml-rpc-server serves one client at a time: a second llama-server on the same workers would wait
    forever (the plain arm never became ready over RPC while the MTP server held the workers)."""
    events = []
    spec = SPEC.model_copy(update={"rpc": ["127.0.0.1:50052"]})
    report = verify(
        target(tmp_path),
        SEQ,
        ordered_launcher(events),
        base=plan_of_spec(spec, HELP_CAPS),
        options=VerifyOptions(clock=Clock()),
    )
    assert report.verdict.code == VerdictCode.PASS
    up = 0
    for e in events:
        up += {"up": 1, "down": -1}.get(e.split()[1], 0)
        assert up <= 1


def test_a_plain_server_that_fails_to_start_is_an_error_not_an_inactive_mtp(tmp_path):
    @contextmanager
    def launch(spec):
        if not spec.mtp.enabled:
            raise ServeError("llama-server exited with code 1 while loading")
        yield FakeHandle(20.0, True, (16, 16))

    with pytest.raises(ServeError):
        verify(target(tmp_path), SEQ, launch, base=BASE, options=VerifyOptions(clock=Clock()))
    with pytest.raises(ServeError):
        verify(target(tmp_path), METHOD, launch, base=BASE)


def test_cli_budget_goes_to_the_method_and_not_with_thorough(tmp_path, monkeypatch, capsys):
    from typer.testing import CliRunner

    from llmtp.cli.main import app
    from llmtp.services.verify import ab_plan as svc

    seen = {}

    def fake_run_verify(settings, model, method, **kw):
        seen["method"] = method
        return verify(target(tmp_path), method, fake_launcher(), base=BASE, options=VerifyOptions(clock=Clock()))

    monkeypatch.setattr(svc, "run_verify", fake_run_verify)
    ok = CliRunner().invoke(app, ["verify", "m.gguf", "--budget", "30"])
    assert ok.exit_code == 0, ok.output
    assert seen["method"].sequential and seen["method"].budget_s == 30.0
    assert "alternating plain and MTP runs, " in ok.output
    assert "99% interval" in ok.output and "stopped early" in ok.output
    from llmtp.cli.main import run as entry

    with pytest.raises(SystemExit) as exc:
        entry(["verify", "m.gguf", "--thorough", "--budget", "30"])
    assert exc.value.code == 2
    assert "--budget applies to the default sequential check" in " ".join(capsys.readouterr().err.split())
    CliRunner().invoke(app, ["verify", "m.gguf", "--thorough"])
    assert seen["method"].sequential is False and seen["method"].n_predict == 2000


def test_sequential_runs_are_shortened_so_a_slow_arm_still_makes_pairs(tmp_path):
    seen = []

    class Slow(FakeHandle):
        def complete(self, prompt, *, n_predict, **kw):
            seen.append(n_predict)
            return super().complete(prompt, n_predict=n_predict, **kw)

    @contextmanager
    def launch(spec):
        yield Slow(2.0, True, (16, 0)) if spec.mtp.enabled else Slow(20.0, False, None)

    method = SEQ.model_copy(update={"n_predict": 128, "budget_s": 20.0})
    report = verify(target(tmp_path), method, launch, base=BASE, options=VerifyOptions(clock=Clock(step=0.1)))
    # warm-ups at 4 and 21 tok/s: a 128-token pair would cost 38 s of a 20 s budget; 3 pairs fit 22
    # tokens per run, raised to the 32-token floor
    assert report.sequential.n_predict == 32 and set(seen[3:]) == {32}
    assert report.verdict.code == VerdictCode.MTP_SLOWER


def test_sequential_refits_the_run_length_to_the_mean_time_per_token_seen(tmp_path):
    seen = []

    class PromptSpeed(FakeHandle):  # MTP drafts badly on prose: 2 tok/s there, 40 on code
        def complete(self, prompt, *, n_predict, **kw):
            t = super().complete(prompt, n_predict=n_predict, **kw)
            if self.draft:
                t["predicted_per_second"] = 40.0 if "python" in prompt else 2.0
                seen.append(n_predict)
            return t

    @contextmanager
    def launch(spec):
        yield PromptSpeed(20.0, True, (16, 1)) if spec.mtp.enabled else FakeHandle(20.0, False, None)

    method = SEQ.model_copy(update={"n_predict": 128, "budget_s": 60.0})
    report = verify(target(tmp_path), method, launch, base=BASE, options=VerifyOptions(clock=Clock(step=0.1)))
    seq = report.sequential
    assert seq.n_predict == 128 and seq.n_predict_last < 128  # after the 2 tok/s prose pair: shorter runs
    assert seen[0] == 32 and seen[1] == 128 and seen[2] == 128 and min(seen[3:]) < 128  # probe, code, prose


def test_a_pass_stores_the_break_even_acceptance_for_the_live_check(tmp_path):
    # acceptance 1.0; the fake's /metrics has no draft_tokens counter, so n-max 3 stands in for the drafted
    # tokens per step: a step costs c = (1 + 3) / speedup plain tokens, and a* = (c - 1) / 3
    report, settings = run(tmp_path, fake_launcher())
    assert report.break_even_acceptance == pytest.approx((4 / report.speedup - 1) / 3)
    assert store.load(settings, "m-1000-abc__cpu__nogpu").break_even_acceptance == report.break_even_acceptance
