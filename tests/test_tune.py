"""Tune: the staged sweep, the decision (including turning MTP off), and per-model settings storage."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from llmtp.core import tune as core
from llmtp.core.capabilities import Capabilities
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.launch_plan import plan_of_spec
from llmtp.core.verify import Method, summarize
from llmtp.errors import ServeError
from llmtp.services import model_settings
from llmtp.services.tune import tune
from llmtp.services.verify import Target

CAPS = Capabilities(enums={"--spec-type": ["none", "draft-mtp", "ngram-mod"]})


def _help_caps() -> Capabilities:
    from pathlib import Path

    from llmtp.core.probe import parse_help

    flags, enums = parse_help((Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt").read_text())
    return Capabilities(flags=flags, enums=enums, devices=[])


# the plan tune measures: each trial is it with other draft settings
BASE = plan_of_spec(LaunchSpec(model="m", port=0, mtp=MtpSettings(enabled=True)), _help_caps())
METHOD = Method(n_predict=8, warmups=0, runs=2, temperatures=[0.0])


SELECT = ["chat", "code", "math", "summary"]
HELD = ["prose", "tool-call", "german", "long-log"]


def trial(n_max, tps, p_min=0.0, enabled=True, acceptance=0.5, extra=(), prompts=SELECT, plain=None, per=None):
    """A trial at `tps` on every prompt (or `per` prompt -> tok/s), its speedup against `plain`."""
    mtp = MtpSettings(enabled=enabled, n_max=n_max, p_min=p_min, extra_types=list(extra))
    speeds = per or {p: tps for p in prompts}
    t = core.Trial(mtp=mtp, label=core.label(mtp), tokens_per_s=summarize(list(speeds.values())),
                   per_prompt={p: summarize([v]) for p, v in speeds.items()}, acceptance=acceptance)
    if plain is not None:
        t.speedup = core.speedup_against(t, plain)
    return t


PLAIN = trial(3, 100.0, enabled=False, acceptance=None)
PLAIN_HELD = trial(3, 100.0, enabled=False, acceptance=None, prompts=HELD)


def test_shipped_suite_has_both_halves_and_every_kind():
    from llmtp.services.tune import load_suite

    suite = load_suite()
    assert [p.name for p in suite.half("select")] == SELECT
    assert [p.name for p in suite.half("heldout")] == HELD
    assert {p.kind for p in suite.prompt} >= {"chat", "prose", "code", "json", "math", "summarisation",
                                             "non-english", "long-context"}
    long = next(p for p in suite.prompt if p.kind == "long-context").render()
    assert long.count("worker-") == 70 and "job 69 finished in" in long
    assert 2500 < len(long) < 3600  # long, yet fits the test bed's 4096-token context (byte-level vocab)


def test_suite_validation_says_what_is_wrong():
    one = {"name": "a", "kind": "chat", "half": "select", "text": "x"}
    with pytest.raises(core.SuiteError, match="at least 8"):
        core.parse_suite({"prompt": [one]})
    with pytest.raises(core.SuiteError, match="repeat"):
        core.parse_suite({"prompt": [one, one]})
    eight = [dict(one, name=str(i)) for i in range(8)]
    with pytest.raises(core.SuiteError, match="no prompt in the heldout half"):
        core.parse_suite({"prompt": eight})


def test_stages():
    assert [m.n_max for m in core.stage_n_max(MtpSettings())] == [1, 2, 3, 4, 5, 6]
    assert all(m.enabled and m.p_min == 0.0 for m in core.stage_n_max(MtpSettings()))
    assert [m.p_min for m in core.stage_p_min(MtpSettings(enabled=True, n_max=4))] == [0.5, 0.75]
    stacked = core.stage_stack(MtpSettings(enabled=True, n_max=4), ["draft-mtp", "ngram-mod"])
    assert [m.extra_types for m in stacked] == [["ngram-mod"]]
    assert core.stage_stack(MtpSettings(enabled=True), ["draft-mtp"]) == []


def test_labels():
    assert core.label(MtpSettings()) == "plain"
    assert core.label(MtpSettings(enabled=True, n_max=2, p_min=0.75, extra_types=["ngram-mod"])) == \
        "n-max 2, p-min 0.75 + ngram-mod"


def test_decide_keeps_the_selection_winner_by_its_held_out_figure():
    sel = [trial(3, 120.0, plain=PLAIN), trial(6, 142.0, plain=PLAIN), trial(2, 110.0, plain=PLAIN)]
    held = trial(6, 0, prompts=HELD, plain=PLAIN_HELD,
                 per={"prose": 125.0, "tool-call": 131.0, "german": 128.0, "long-log": 140.0})
    d = core.decide(PLAIN_HELD, [PLAIN, *sel], [held])
    assert d.chosen.n_max == 6 and d.chosen.enabled
    assert d.speedup == pytest.approx(1.295)  # the held-out median, not the 1.42x it was chosen on
    assert d.selection_speedup == pytest.approx(1.42)
    assert d.heldout[0].spread.min == pytest.approx(1.25) and d.heldout[0].spread.max == pytest.approx(1.40)
    assert d.reason == "n-max 6, p-min 0: held-out median 1.29x plain (1.25-1.40x over 4 prompts)"


def test_decide_turns_mtp_off_when_nothing_beats_plain_on_the_selection():
    d = core.decide(None, [PLAIN, trial(1, 60.0, plain=PLAIN), trial(2, 102.0, plain=PLAIN)], [])
    assert d.chosen.enabled is False
    assert d.reason == ("nothing beats plain decoding: best MTP (n-max 2, p-min 0, acceptance 0.50) runs at 1.02x "
                        "plain on the selection prompts, under the 1.03x needed; MTP off for this model")
    assert core.decide(None, [PLAIN], []).chosen.enabled is False


def test_a_winner_that_loses_one_held_out_prompt_beyond_the_noise_band_is_not_kept():
    sel = [trial(3, 150.0, plain=PLAIN)]
    held = trial(3, 0, prompts=HELD, plain=PLAIN_HELD,
                 per={"prose": 140.0, "tool-call": 150.0, "german": 145.0, "long-log": 90.0})
    d = core.decide(PLAIN_HELD, [PLAIN, *sel], [held])
    assert d.chosen.enabled is False
    assert "long-log runs at 0.90x plain, slower than the 5% noise band allows" in d.reason
    held.per_prompt["long-log"] = summarize([96.0])  # within the band: kept
    assert core.decide(PLAIN_HELD, [PLAIN, *sel], [held]).chosen.enabled is True
    flat = trial(3, 101.0, prompts=HELD, plain=PLAIN_HELD)  # wins the selection, flat on held-out
    d = core.decide(PLAIN_HELD, [PLAIN, *sel], [flat])
    assert d.chosen.enabled is False and "held-out median 1.01x plain, under the 1.03x needed" in d.reason
    assert d.speedup == pytest.approx(1.01)


def test_ngram_mod_must_win_on_held_out_prompts_too():
    # The case: stacked ngram-mod wins big where the output copies the prompt, not elsewhere.
    single = trial(1, 120.0, plain=PLAIN)
    stacked = trial(1, 0, extra=["ngram-mod"], plain=PLAIN,
                    per={"chat": 110.0, "code": 118.0, "math": 112.0, "summary": 400.0})
    assert [f.label for f in core.finalists([single, stacked])] == ["n-max 1, p-min 0 + ngram-mod",
                                                                     "n-max 1, p-min 0"]
    held_stacked = trial(1, 0, extra=["ngram-mod"], prompts=HELD, plain=PLAIN_HELD,
                         per={"prose": 104.0, "tool-call": 118.0, "german": 106.0, "long-log": 150.0})
    held_single = trial(1, 0, prompts=HELD, plain=PLAIN_HELD,
                        per={"prose": 118.0, "tool-call": 119.0, "german": 117.0, "long-log": 121.0})
    d = core.decide(PLAIN_HELD, [PLAIN, single, stacked], [held_stacked, held_single])
    assert d.chosen.extra_types == [] and d.chosen.n_max == 1
    assert d.reason.endswith("; n-max 1, p-min 0 + ngram-mod won the selection but not the held-out prompts")
    held_stacked.per_prompt["prose"] = summarize([125.0])
    held_stacked.per_prompt["german"] = summarize([124.0])
    assert core.decide(PLAIN_HELD, [PLAIN, single, stacked], [held_stacked, held_single]).chosen.extra_types \
        == ["ngram-mod"]


def test_a_trial_that_never_drafted_is_not_mtp():
    # p-min 0.75 on a model whose drafts are unsure: no draft at all, plain speed plus noise.
    d = core.decide(None, [PLAIN, trial(3, 60.0, plain=PLAIN), trial(3, 106.0, p_min=0.75, acceptance=None,
                                                                      plain=PLAIN)], [])
    assert d.chosen.enabled is False


def test_break_even_acceptance():
    # speedup 1.5 at acceptance 0.8 with 3 drafted per step: a step costs (1 + 2.4) / 1.5 = 2.27 tokens,
    # so plain speed is matched at (2.27 - 1) / 3 = 0.42.
    assert core.break_even_acceptance(1.5, 0.8, 3.0) == pytest.approx(0.4222, abs=1e-4)
    assert core.break_even_acceptance(1.0, 0.5, 2.0) == pytest.approx(0.5)  # measured at break-even
    assert core.break_even_acceptance(0.3, 0.1, 3.0) > 1.0  # no acceptance can pay for it
    assert core.break_even_acceptance(None, 0.5, 3.0) is None and core.break_even_acceptance(1.2, None, 3) is None


def fake_launcher(speed, fail=lambda mtp: False):
    """speed(mtp, prompt) -> tok/s; records the specs launched and the prompts each ran."""
    specs = []

    class H:
        def __init__(self, mtp):
            self.mtp = mtp

        def slots(self):
            return [{"speculative": True}]

        def metrics(self):
            return None

        def complete(self, prompt, *, n_predict, temperature, seed):
            specs[-1][1].append(prompt)
            return {"predicted_per_second": speed(self.mtp, prompt), "predicted_n": n_predict, "draft_n": 4,
                    "draft_n_accepted": 2}

        def log_text(self):
            return ""

    @contextmanager
    def launch(spec):
        specs.append((spec, []))
        if fail(spec.mtp):
            raise ServeError("boom")
        yield H(spec.mtp)

    launch.specs = specs
    return launch


def target(tmp_path, heads=1, caps=CAPS):
    return Target(model_path=tmp_path / "m.gguf", model_key="m", caps=caps,
                  info=ModelInfo(arch="qwen35", nextn_predict_layers=heads, mtp_arch=True))


def speed(mtp: MtpSettings, prompt: str = "") -> float:
    if not mtp.enabled:
        return 100.0
    tps = 100.0 + 10 * mtp.n_max - (30 if (mtp.p_min or 0) >= 0.75 else 0)
    return tps + (5 if mtp.extra_types else 0)


def test_sweep_stages_then_held_out_and_choice(tmp_path):
    launch = fake_launcher(speed, fail=lambda m: m.n_max == 5 and m.enabled)
    seen = []
    d = tune(target(tmp_path), launch, base=BASE, method=METHOD,
             on_trial=lambda t, i, n: seen.append((i, n, t.label, t.error)))
    assert d.chosen == MtpSettings(enabled=True, n_max=6, p_min=0.0, extra_types=["ngram-mod"])
    assert d.speedup == pytest.approx(1.65)
    assert [x[2] for x in seen] == ["plain"] + [f"n-max {n}, p-min 0" for n in range(1, 7)] + [
        "n-max 6, p-min 0.5", "n-max 6, p-min 0.75", "n-max 6, p-min 0 + ngram-mod",
        "plain", "n-max 6, p-min 0 + ngram-mod", "n-max 6, p-min 0", "plain"]
    assert seen[5][3] == "boom"  # a failed launch is recorded and skipped
    assert seen[-1][:2] == (14, 14)
    assert all(s.spec.parallel in (None, 1) for s, _ in launch.specs)
    from llmtp.services.tune import load_suite

    suite = load_suite()
    select = {p.render() for p in suite.half("select")}
    held = {p.render() for p in suite.half("heldout")}
    # the stages never see a held-out prompt; the held-out runs never see a selection prompt
    assert all(set(prompts) <= select for _, prompts in launch.specs[:10])
    assert all(set(prompts) <= held for _, prompts in launch.specs[10:])
    assert [h.label for h in d.heldout] == ["n-max 6, p-min 0 + ngram-mod", "n-max 6, p-min 0"]


def test_held_out_plain_is_measured_before_and_after_so_a_drifting_machine_moves_both_sides(tmp_path):
    # The machine slows down steadily through the held-out runs: each launch 5% slower than the last.
    # MTP n-max 6 is really 1.10x plain at any one moment. Measured against plain run once before it,
    # it would look like ~1.05x (the drift eats half the gain); against plain before and after, 1.10x.
    launches = []

    def drifting(mtp, prompt):
        slow = 0.95 ** max(0, len(launches) - 11)  # 10 selection launches, then plain, finalist, plain
        return (110.0 if mtp.enabled and mtp.n_max == 6 and not mtp.extra_types else
                100.0 if not mtp.enabled else 50.0) * slow

    inner = fake_launcher(drifting)

    @contextmanager
    def launch(spec):
        launches.append(spec)
        with inner(spec) as h:
            yield h

    d = tune(target(tmp_path), launch, base=BASE, method=METHOD)
    assert d.chosen.n_max == 6 and d.chosen.enabled
    # plain before at 1.0, the finalist at 0.95, plain after at 0.9025: the finalist is judged against
    # their mean, 0.95125: 1.10x as at any one moment (against plain before alone, 1.045x)
    assert d.speedup == pytest.approx(1.10 * 0.95 / ((1 + 0.95 ** 2) / 2), rel=1e-6)
    assert "plain decoding moved -10% between the start and end of the held-out runs" in d.reason


def test_bracket_takes_the_mean_of_both_plain_runs_and_reports_the_drift():
    before = PLAIN_HELD
    after = PLAIN_HELD.model_copy(update={"per_prompt": {k: summarize([v.median * 1.02]) for k, v in
                                                         PLAIN_HELD.per_prompt.items()},
                                          "tokens_per_s": summarize([PLAIN_HELD.tokens_per_s.median * 1.02])})
    merged, drift = core.bracket(before, after)
    assert drift == pytest.approx(1.02)
    assert all(merged.per_prompt[k].median == pytest.approx(v.median * 1.01) for k, v in before.per_prompt.items())
    assert core.drift_note(drift, 0.05) == ""  # within the noise band: no warning
    failed = PLAIN_HELD.model_copy(update={"per_prompt": {}, "tokens_per_s": None, "error": "boom"})
    assert core.bracket(before, failed) == (before, None) and core.bracket(failed, after) == (after, None)


def test_a_setting_that_wins_only_on_copying_prompts_is_turned_off(tmp_path):
    from llmtp.services.tune import load_suite

    copying = {p.render() for p in load_suite().prompt if p.name in ("summary", "long-log")}

    def ngram_only_copies(mtp, prompt):  # the random-heads model: MTP loses, ngram-mod copies well
        if not mtp.enabled:
            return 100.0
        base = 60.0 if not mtp.extra_types else 70.0
        return base * (6 if mtp.extra_types and prompt in copying else 1)

    d = tune(target(tmp_path), fake_launcher(ngram_only_copies), base=BASE,
             method=METHOD)
    assert d.chosen.enabled is False
    assert d.selection_speedup > 1.03 and d.speedup < 1.0
    assert d.reason.startswith("no setting holds up on the held-out prompts")


def test_no_heads_or_no_mtp_build_measures_nothing(tmp_path):
    launch = fake_launcher(speed)
    d = tune(target(tmp_path, heads=0), launch, base=BASE, method=METHOD)
    assert d.chosen.enabled is False and d.reason.startswith("model has no MTP heads")
    d = tune(target(tmp_path, caps=Capabilities()), launch, base=BASE, method=METHOD)
    assert d.reason == "this build offers no draft-mtp: MTP off"
    assert launch.specs == []


def test_branch_dialect_sweeps_n_max_only(tmp_path):
    caps = Capabilities(flags=["--mtp", "--mtp-draft-tokens"])
    launch = fake_launcher(speed)
    d = tune(target(tmp_path, caps=caps), launch, base=BASE, method=METHOD)
    assert len(launch.specs) == 7 + 3 and d.chosen.n_max == 6  # held-out: plain, best, plain


def test_stored_record_carries_the_held_out_figures(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from llmtp.services import tune as svc
    from llmtp.settings import load_settings

    s = load_settings().settings
    from llmtp.core.launch_plan import LaunchRequest

    monkeypatch.setattr("llmtp.services.verify_plan.verify_plan", lambda settings, request, build=None: BASE)
    monkeypatch.setattr("llmtp.services.verify_plan.target_for", lambda settings, plan, build=None: target(tmp_path))
    monkeypatch.setattr("llmtp.services.verify_plan.real_launcher", lambda *a, **k: fake_launcher(speed))
    decision, _ = svc.run_tune(s, LaunchRequest(model="m"), METHOD)
    rec = model_settings.load_record(s, "m")
    assert rec.speedup == pytest.approx(decision.speedup) == pytest.approx(1.65)
    assert rec.acceptance == pytest.approx(0.5) and rec.break_even_acceptance is not None


def test_model_settings_roundtrip(tmp_path):
    from llmtp.settings import load_settings

    s = load_settings().settings
    assert model_settings.load(s, "k") is None
    model_settings.save(s, "k", MtpSettings(enabled=False), reason="slower")
    assert model_settings.load(s, "k") == MtpSettings(enabled=False)
    assert model_settings.load_record(s, "k").reason == "slower"
    assert (s.data_dir / "model-settings" / "k.json").is_file()


def test_model_key_names_content_not_path(tmp_path):
    a = tmp_path / "Model Q4.gguf"
    a.write_bytes(b"GGUF" + b"\0" * 100)
    b = tmp_path / "other" / "Model Q4.gguf"
    b.parent.mkdir()
    b.write_bytes(b"GGUF" + b"\0" * 100)
    assert model_settings.model_key(a) == model_settings.model_key(b)
    assert model_settings.model_key(a).startswith("Model_Q4-104-")
    b.write_bytes(b"GGUF" + b"\1" * 100)
    assert model_settings.model_key(a) != model_settings.model_key(b)


def test_cli_prints_the_held_out_figure_and_its_spread(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmtp.cli.main import app
    from llmtp.services import tune as svc

    def fake_run_tune(settings, model, method, **kw):
        assert kw["noise_band"] == 0.1 and kw["min_gain"] == 0.03
        return tune(target(tmp_path), fake_launcher(speed), base=BASE,
                    method=METHOD), target(tmp_path)

    monkeypatch.setattr(svc, "run_tune", fake_run_tune)
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["tune", "m.gguf", "--noise-band", "0.1"])
    assert out.exit_code == 0, out.output
    assert "held-out prompts (speedup against plain)" in out.output
    assert "n-max 6, p-min 0 + ngram-mod: held-out median 1.65x plain (1.65-1.65x over 4 prompts)" in out.output
    assert "held-out speedup 1.65x plain, break-even acceptance" in out.output
