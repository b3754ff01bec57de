"""Tune: the staged sweep, the decision (including turning MTP off), and per-model settings storage."""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from llmtp.core import tune as core
from llmtp.core import tune_decision as verdict
from llmtp.core.capabilities import Capabilities
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.launch_plan import plan_of_spec
from llmtp.core.verify import Method, summarize
from llmtp.errors import ServeError
from llmtp.services.stores import mtp_settings
from llmtp.services.verify.mtp_ab import Target
from llmtp.services.verify.tune import tune

CAPS = Capabilities(enums={"--spec-type": ["none", "draft-mtp", "ngram-mod"]})


def _help_caps() -> Capabilities:
    from pathlib import Path

    from llmtp.core.probe import parse_help

    flags, enums = parse_help((Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt").read_text())
    return Capabilities(flags=flags, enums=enums, devices=[])


# the plan tune measures: each trial is it with other draft settings
BASE = plan_of_spec(LaunchSpec(model="m", port=0, mtp=MtpSettings(enabled=True)), _help_caps())
METHOD = Method(n_predict=8, warmups=0, runs=2, temperatures=[0.0])


from llmtp.services.verify.tune import load_suite  # noqa: E402

SUITE = load_suite()
FAM = SUITE.families()
SELECT = [p.name for p in SUITE.half("select")]
HELD = [p.name for p in SUITE.half("heldout")]
RULE = core.Rule()


def trial(
    n_max,
    tps,
    p_min=0.0,
    enabled=True,
    acceptance=0.5,
    extra=(),
    prompts=SELECT,
    plain=None,
    per=None,
    by_family=None,
    rule=RULE,
):
    """A trial at `tps` on every prompt (or `per` prompt -> tok/s, or `by_family` family -> tok/s), its
    per-family speedups against `plain`."""
    mtp = MtpSettings(enabled=enabled, n_max=n_max, p_min=p_min, extra_types=list(extra))
    speeds = per or {p: (by_family or {}).get(FAM[p], tps) for p in prompts}
    t = core.Trial(
        mtp=mtp,
        label=core.label(mtp),
        tokens_per_s=summarize(list(speeds.values())),
        per_prompt={p: summarize([v]) for p, v in speeds.items()},
        acceptance=acceptance,
        drafts={p: (int(acceptance * 100), 100) for p in speeds} if acceptance is not None else {},
    )
    if plain is not None:
        core.compare(t, plain, FAM, rule)
    return t


PLAIN = trial(3, 100.0, enabled=False, acceptance=None)
PLAIN_HELD = trial(3, 100.0, enabled=False, acceptance=None, prompts=HELD)


def test_shipped_suite_has_every_family_in_both_halves_with_several_prompts():
    assert SUITE.family_names() == list(core.FAMILIES)
    for family in core.FAMILIES:
        for half in ("select", "heldout"):
            assert len([p for p in SUITE.half(half) if p.family == family]) >= 2, (family, half)
    kinds = {(p.family, p.kind) for p in SUITE.prompt}
    assert {
        ("copy-heavy", "tool-call"),
        ("copy-heavy", "log"),
        ("copy-heavy", "code-edit"),
        ("open-ended", "short-question"),
        ("open-ended", "story"),
        ("open-ended", "chat"),
        ("long-context", "summary"),
    } <= kinds
    long = next(p for p in SUITE.prompt if p.name == "long-log").render()
    assert long.count("worker-") == 70 and "job 69 finished in" in long
    # long, yet every prompt fits the test bed's 4096-token context (byte-level vocab)
    assert all(len(p.render()) < 3600 for p in SUITE.prompt) and len(long) > 2500


def test_suite_validation_says_what_is_wrong():
    one = {"name": "a", "family": "chat", "half": "select", "text": "x"}
    with pytest.raises(core.SuiteError, match="at least 4"):
        core.parse_suite({"prompt": [one]})
    with pytest.raises(core.SuiteError, match="repeat"):
        core.parse_suite({"prompt": [one, one]})
    four = [dict(one, name=str(i)) for i in range(4)]
    with pytest.raises(core.SuiteError, match="family 'chat' has no prompt in the heldout half"):
        core.parse_suite({"prompt": four})
    # without `half`, prompts take turns within their family
    mixed = [{"name": f"{f}{i}", "family": f, "text": "x"} for f in ("a", "b") for i in range(2)]
    suite = core.parse_suite({"prompt": mixed})
    assert [(p.name, p.half) for p in suite.prompt] == [
        ("a0", "select"),
        ("a1", "heldout"),
        ("b0", "select"),
        ("b1", "heldout"),
    ]


def test_the_rule_rejects_a_setting_that_loses_one_family_unless_the_user_names_their_work():
    # The case: 2x where the answer copies the prompt, 0.7x on open-ended work.
    figures = {"copy-heavy": 2.0, "open-ended": 0.7, "long-context": 1.1, "non-english": 1.0}
    ok, why = core.holds(figures, core.Rule(), list(core.FAMILIES))
    assert not ok and why.startswith("loses on open-ended: 0.70x plain, beyond the 5% noise band")
    ok, why = core.holds(figures, core.Rule(workload="copy-heavy"), list(core.FAMILIES))
    assert ok and why.startswith("copy-heavy (your workload) at 2.00x plain")
    ok, why = core.holds(figures, core.Rule(workload="open-ended"), list(core.FAMILIES))
    assert not ok and "under the 1.03x needed" in why
    # within the noise band on every family and ahead overall: kept
    assert core.holds(
        {"copy-heavy": 1.3, "open-ended": 0.96, "long-context": 1.1, "non-english": 1.0},
        core.Rule(),
        list(core.FAMILIES),
    )[0]
    # a family the held-out half never measured is no pass
    ok, why = core.holds({"copy-heavy": 1.3}, core.Rule(), ["copy-heavy", "open-ended"])
    assert not ok and why == "not measured on open-ended prompts"
    assert core.score(figures, core.Rule(workload="copy-heavy")) == 2.0
    assert core.score({"a": 2.0, "b": 0.5}, core.Rule()) == pytest.approx(1.0)


def test_family_figures_are_geometric_means_of_their_prompts():
    figures = core.family_figures({"p1": 2.0, "p2": 0.5, "q": 1.2, "stray": 9.0}, {"p1": "a", "p2": "a", "q": "b"})
    assert figures == {"a": pytest.approx(1.0), "b": pytest.approx(1.2)}


def test_decide_with_families_rejects_by_default_and_keeps_for_the_named_workload():
    copy_fast = {"copy-heavy": 200.0, "open-ended": 70.0, "long-context": 100.0, "non-english": 100.0}
    sel = [trial(1, 0, extra=["ngram-mod"], by_family=copy_fast, plain=PLAIN)]
    held = trial(1, 0, extra=["ngram-mod"], prompts=HELD, by_family=copy_fast)
    d = verdict.decide(PLAIN_HELD, [PLAIN, *sel], [held], families=FAM)
    assert d.chosen.enabled is False and "loses on open-ended: 0.70x plain" in d.reason
    assert d.families["copy-heavy"] == pytest.approx(2.0) and d.families["open-ended"] == pytest.approx(0.7)
    rule = core.Rule(workload="copy-heavy")
    sel = [trial(1, 0, extra=["ngram-mod"], by_family=copy_fast, plain=PLAIN, rule=rule)]
    held = trial(1, 0, extra=["ngram-mod"], prompts=HELD, by_family=copy_fast)
    d = verdict.decide(PLAIN_HELD, [PLAIN, *sel], [held], rule, families=FAM)
    assert d.chosen.extra_types == ["ngram-mod"] and d.speedup == pytest.approx(2.0) and d.workload == "copy-heavy"
    assert d.reason.startswith("n-max 1, p-min 0 + ngram-mod: copy-heavy (your workload) at 2.00x plain")
    # break-even next to the measured acceptance, per family; the ladder steps to MTP alone
    assert set(d.family_break_even) == set(core.FAMILIES) and d.family_acceptance["open-ended"] == 0.5
    assert d.family_break_even["open-ended"] > d.family_acceptance["open-ended"]  # loses there
    assert d.family_break_even["copy-heavy"] < d.family_acceptance["copy-heavy"]
    assert d.break_even_acceptance == d.family_break_even["copy-heavy"]
    assert [r.label for r in d.ladder] == ["n-max 1, p-min 0 + ngram-mod", "n-max 1, p-min 0"]


def test_decide_keeps_the_selection_winner_by_its_held_out_figure():
    sel = [trial(3, 120.0, plain=PLAIN), trial(6, 142.0, plain=PLAIN), trial(2, 110.0, plain=PLAIN)]
    held = trial(
        6,
        0,
        prompts=HELD,
        by_family={"copy-heavy": 140.0, "open-ended": 125.0, "long-context": 131.0, "non-english": 128.0},
    )
    d = verdict.decide(PLAIN_HELD, [PLAIN, *sel], [held], families=FAM)
    assert d.chosen.n_max == 6 and d.chosen.enabled
    assert d.speedup == pytest.approx((1.40 * 1.25 * 1.31 * 1.28) ** 0.25)  # held-out, not the 1.42x chosen on
    assert d.selection_speedup == pytest.approx(1.42)
    assert d.heldout[0].spread.min == pytest.approx(1.25) and d.heldout[0].spread.max == pytest.approx(1.40)
    assert d.reason == (
        "n-max 6, p-min 0: 1.31x plain over the families (copy-heavy 1.40x, open-ended 1.25x, "
        "long-context 1.31x, non-english 1.28x)"
    )


def test_decide_turns_mtp_off_when_nothing_beats_plain_on_the_selection():
    d = verdict.decide(None, [PLAIN, trial(1, 60.0, plain=PLAIN), trial(2, 102.0, plain=PLAIN)], [], families=FAM)
    assert d.chosen.enabled is False
    assert d.reason == (
        "nothing beats plain decoding: best MTP (n-max 2, p-min 0, acceptance 0.50) runs at 1.02x "
        "plain over the selection families, under the 1.03x needed; MTP off for this model"
    )
    assert verdict.decide(None, [PLAIN], []).chosen.enabled is False


def test_a_winner_that_loses_one_held_out_family_beyond_the_noise_band_is_not_kept():
    sel = [trial(3, 150.0, plain=PLAIN)]
    by = {"copy-heavy": 140.0, "open-ended": 150.0, "long-context": 145.0, "non-english": 90.0}
    held = trial(3, 0, prompts=HELD, by_family=by)
    d = verdict.decide(PLAIN_HELD, [PLAIN, *sel], [held], families=FAM)
    assert d.chosen.enabled is False
    assert "loses on non-english: 0.90x plain, beyond the 5% noise band" in d.reason
    held = trial(3, 0, prompts=HELD, by_family=by | {"non-english": 96.0})  # within the band: kept
    assert verdict.decide(PLAIN_HELD, [PLAIN, *sel], [held], families=FAM).chosen.enabled is True
    flat = trial(3, 101.0, prompts=HELD)  # wins the selection, flat on held-out
    d = verdict.decide(PLAIN_HELD, [PLAIN, *sel], [flat], families=FAM)
    assert d.chosen.enabled is False and "1.01x plain over the families, under the 1.03x needed" in d.reason
    assert d.speedup == pytest.approx(1.01)


def test_ngram_mod_must_win_on_held_out_prompts_too():
    # stacked ngram-mod wins big where the output copies the prompt, a little elsewhere
    single = trial(1, 120.0, plain=PLAIN)
    stacked = trial(
        1,
        0,
        extra=["ngram-mod"],
        plain=PLAIN,
        by_family={"copy-heavy": 400.0, "open-ended": 110.0, "long-context": 118.0, "non-english": 112.0},
    )
    assert [f.label for f in core.finalists([single, stacked])] == ["n-max 1, p-min 0 + ngram-mod", "n-max 1, p-min 0"]
    held_stacked = trial(
        1,
        0,
        extra=["ngram-mod"],
        prompts=HELD,
        by_family={"copy-heavy": 150.0, "open-ended": 104.0, "long-context": 106.0, "non-english": 106.0},
    )
    held_single = trial(
        1,
        0,
        prompts=HELD,
        by_family={"copy-heavy": 121.0, "open-ended": 118.0, "long-context": 119.0, "non-english": 117.0},
    )
    d = verdict.decide(PLAIN_HELD, [PLAIN, single, stacked], [held_stacked, held_single], families=FAM)
    assert d.chosen.extra_types == [] and d.chosen.n_max == 1
    assert d.reason.endswith("; n-max 1, p-min 0 + ngram-mod won the selection but not the held-out prompts")
    held_stacked = trial(
        1,
        0,
        extra=["ngram-mod"],
        prompts=HELD,
        by_family={"copy-heavy": 150.0, "open-ended": 125.0, "long-context": 124.0, "non-english": 120.0},
    )
    assert verdict.decide(
        PLAIN_HELD, [PLAIN, single, stacked], [held_stacked, held_single], families=FAM
    ).chosen.extra_types == ["ngram-mod"]


def test_the_selection_prefers_a_setting_that_loses_no_family():
    # stacked: higher geometric mean, but loses open-ended on the selection half; single passes everywhere
    stacked = trial(
        1,
        0,
        extra=["ngram-mod"],
        plain=PLAIN,
        by_family={"copy-heavy": 400.0, "open-ended": 70.0, "long-context": 110.0, "non-english": 100.0},
    )
    single = trial(2, 110.0, plain=PLAIN)
    assert stacked.speedup > single.speedup
    assert core.best_trial([stacked, single]) is single
    assert core.best_trial([stacked, single], core.Rule(workload="copy-heavy")) is stacked


def test_a_trial_that_never_drafted_is_not_mtp():
    # p-min 0.75 on a model whose drafts are unsure: no draft at all, plain speed plus noise.
    d = verdict.decide(
        None, [PLAIN, trial(3, 60.0, plain=PLAIN), trial(3, 106.0, p_min=0.75, acceptance=None, plain=PLAIN)], []
    )
    assert d.chosen.enabled is False


def test_safer_steps_drop_the_ngram_drafts_then_mtp():
    stacked = MtpSettings(enabled=True, n_max=2, extra_types=["ngram-mod"])
    assert verdict.safer(stacked) == MtpSettings(enabled=True, n_max=2)
    assert verdict.safer(MtpSettings(enabled=True, n_max=2)) == MtpSettings(enabled=False)
    assert verdict.safer(MtpSettings(enabled=False)) is None


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
            return {
                "predicted_per_second": speed(self.mtp, prompt),
                "predicted_n": n_predict,
                "draft_n": 4,
                "draft_n_accepted": 2,
            }

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
    return Target(
        model_path=tmp_path / "m.gguf",
        model_key="m",
        caps=caps,
        info=ModelInfo(arch="qwen35", nextn_predict_layers=heads, mtp_arch=True),
    )


def speed(mtp: MtpSettings, prompt: str = "") -> float:
    if not mtp.enabled:
        return 100.0
    tps = 100.0 + 10 * mtp.n_max - (30 if (mtp.p_min or 0) >= 0.75 else 0)
    return tps + (5 if mtp.extra_types else 0)


def test_sweep_stages_then_held_out_and_choice(tmp_path):
    launch = fake_launcher(speed, fail=lambda m: m.n_max == 5 and m.enabled)
    seen = []
    d = tune(
        target(tmp_path),
        launch,
        base=BASE,
        method=METHOD,
        on_trial=lambda t, i, n: seen.append((i, n, t.label, t.error)),
    )
    assert d.chosen == MtpSettings(enabled=True, n_max=6, p_min=0.0, extra_types=["ngram-mod"])
    assert d.speedup == pytest.approx(1.65)
    assert [x[2] for x in seen] == ["plain"] + [f"n-max {n}, p-min 0" for n in range(1, 7)] + [
        "n-max 6, p-min 0.5",
        "n-max 6, p-min 0.75",
        "n-max 6, p-min 0 + ngram-mod",
        "plain",
        "n-max 6, p-min 0 + ngram-mod",
        "n-max 6, p-min 0",
        "plain",
    ]
    assert seen[5][3] == "boom"  # a failed launch is recorded and skipped
    assert seen[-1][:2] == (14, 14)
    assert all(s.spec.parallel in (None, 1) for s, _ in launch.specs)
    from llmtp.services.verify.tune import load_suite

    suite = load_suite()
    select = {p.render() for p in suite.half("select")}
    held = {p.render() for p in suite.half("heldout")}
    # the stages never see a held-out prompt; the held-out runs never see a selection prompt (the warm-up's
    # text is neither)
    from llmtp.services.verify.tune import WARMUP_TEXT

    ran = [(spec, [t for t in prompts if t != WARMUP_TEXT]) for spec, prompts in launch.specs]
    first_held = next(i for i, (_, prompts) in enumerate(ran) if set(prompts) & held)
    assert first_held > 0 and all(set(prompts) <= select for _, prompts in ran[:first_held])
    assert all(set(prompts) <= held for _, prompts in ran[first_held:])
    # ngram-mod remembers what the server generated: each of its runs is a launch of its own, every prompt
    # once in it; a trial without it runs every prompt METHOD.runs times in one launch
    ngram = [prompts for spec, prompts in ran if spec.mtp.extra_types and prompts]
    assert ngram and all(len(prompts) == len(set(prompts)) for prompts in ngram)
    assert len(ngram) == 2 * METHOD.runs  # the stage's trial and its held-out run
    plain = [prompts for spec, prompts in ran if not spec.mtp.enabled and prompts]
    assert all(len(prompts) == METHOD.runs * len(set(prompts)) for prompts in plain)
    assert [h.label for h in d.heldout] == ["n-max 6, p-min 0 + ngram-mod", "n-max 6, p-min 0"]


def test_held_out_plain_is_measured_before_and_after_so_a_drifting_machine_moves_both_sides(tmp_path):
    # The machine slows down steadily through the held-out runs: each launch 5% slower than the last.
    # MTP n-max 6 is really 1.10x plain at any one moment. Measured against plain run once before it,
    # it would look like ~1.05x (the drift eats half the gain); against plain before and after, 1.10x.
    launches = []

    def drifting(mtp, prompt):
        slow = 0.95 ** max(0, len(launches) - 11)  # 10 selection launches, then plain, finalist, plain
        return (
            110.0 if mtp.enabled and mtp.n_max == 6 and not mtp.extra_types else 100.0 if not mtp.enabled else 50.0
        ) * slow

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
    assert d.speedup == pytest.approx(1.10 * 0.95 / ((1 + 0.95**2) / 2), rel=1e-6)
    assert "plain decoding moved -10% between the start and end of the held-out runs" in d.reason


def test_bracket_takes_the_mean_of_both_plain_runs_and_reports_the_drift():
    before = PLAIN_HELD
    after = PLAIN_HELD.model_copy(
        update={
            "per_prompt": {k: summarize([v.median * 1.02]) for k, v in PLAIN_HELD.per_prompt.items()},
            "tokens_per_s": summarize([PLAIN_HELD.tokens_per_s.median * 1.02]),
        }
    )
    merged, drift = core.bracket(before, after)
    assert drift == pytest.approx(1.02)
    assert all(merged.per_prompt[k].median == pytest.approx(v.median * 1.01) for k, v in before.per_prompt.items())
    assert verdict.drift_note(drift, 0.05) == ""  # within the noise band: no warning
    failed = PLAIN_HELD.model_copy(update={"per_prompt": {}, "tokens_per_s": None, "error": "boom"})
    assert core.bracket(before, failed) == (before, None) and core.bracket(failed, after) == (after, None)


def test_a_setting_that_wins_only_on_copying_prompts_is_off_unless_the_work_is_copying(tmp_path):
    copying = {p.render() for p in SUITE.prompt if p.family == "copy-heavy"}

    def ngram_only_copies(mtp, prompt):  # the random-heads model: MTP loses, ngram-mod copies well
        if not mtp.enabled:
            return 100.0
        base = 60.0 if not mtp.extra_types else 70.0
        return base * (6 if mtp.extra_types and prompt in copying else 1)

    d = tune(target(tmp_path), fake_launcher(ngram_only_copies), base=BASE, method=METHOD)
    assert d.chosen.enabled is False
    assert d.reason.startswith(
        "no setting holds up on the selection prompts: the best (n-max 1, p-min 0 + "
        "ngram-mod) loses on open-ended: 0.70x plain"
    )
    launch = fake_launcher(ngram_only_copies)
    d = tune(target(tmp_path), launch, base=BASE, method=METHOD, rule=core.Rule(workload="copy-heavy"))
    assert d.chosen.extra_types == ["ngram-mod"] and d.speedup == pytest.approx(4.2)
    assert d.families["open-ended"] == pytest.approx(0.7)  # reported, not judged
    assert [r.label for r in d.ladder] == [d.label, d.label.split(" + ")[0]]


def test_workload_and_prompts_file_are_checked_before_anything_runs(tmp_path):
    from llmtp.core.families import Rule
    from llmtp.errors import UsageError
    from llmtp.services.verify.tune import check_rule, load_prompts_file

    with pytest.raises(UsageError, match="not a family of the prompt suite") as exc:
        check_rule(SUITE, Rule(workload="poetry"))
    assert "copy-heavy, open-ended, long-context, non-english" in exc.value.hint
    mine = tmp_path / "mine.toml"
    mine.write_text(
        "".join(
            f'[[prompt]]\nname = "{f}{i}"\nfamily = "{f}"\ntext = "x {i}"\n\n'
            for f in ("sql", "email")
            for i in range(2)
        ),
        encoding="utf-8",
    )
    suite = load_prompts_file(mine)
    assert suite.family_names() == ["sql", "email"] and len(suite.half("heldout")) == 2
    assert check_rule(suite, Rule(workload="sql")).workload == "sql"
    for text, match in [
        ("[[prompt]\n", "not valid TOML"),
        ('[[prompt]]\nname = "a"\n', "cannot be used"),
        ("", "cannot be used"),
    ]:
        mine.write_text(text, encoding="utf-8")
        with pytest.raises(UsageError, match=match):
            load_prompts_file(mine)
    with pytest.raises(UsageError, match="Cannot read the prompts file"):
        load_prompts_file(tmp_path / "absent.toml")


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

    from llmtp.services.verify import tune as svc
    from llmtp.settings import load_settings

    s = load_settings().settings
    from llmtp.core.launch_plan import LaunchRequest

    # patched where tune looks them up (it imports them from services.verify.ab_plan at module top)
    monkeypatch.setattr(svc, "verify_plan", lambda settings, request, build=None: BASE)
    monkeypatch.setattr(svc, "target_for", lambda settings, plan, build=None: target(tmp_path))
    monkeypatch.setattr(svc, "real_launcher", lambda *a, **k: fake_launcher(speed))
    decision, _ = svc.run_tune(s, LaunchRequest(model="m"), METHOD)
    rec = mtp_settings.load_record(s, "m")
    assert rec.speedup == pytest.approx(decision.speedup) == pytest.approx(1.65)
    assert rec.acceptance == pytest.approx(0.5) and rec.break_even_acceptance is not None


def test_model_settings_roundtrip(tmp_path):
    from llmtp.settings import load_settings

    s = load_settings().settings
    assert mtp_settings.load(s, "k") is None
    mtp_settings.save(s, "k", MtpSettings(enabled=False), reason="slower")
    assert mtp_settings.load(s, "k") == MtpSettings(enabled=False)
    assert mtp_settings.load_record(s, "k").reason == "slower"
    assert (s.data_dir / "model-settings" / "k.json").is_file()


def test_model_key_names_content_not_path(tmp_path):
    a = tmp_path / "Model Q4.gguf"
    a.write_bytes(b"GGUF" + b"\0" * 100)
    b = tmp_path / "other" / "Model Q4.gguf"
    b.parent.mkdir()
    b.write_bytes(b"GGUF" + b"\0" * 100)
    assert mtp_settings.model_key(a) == mtp_settings.model_key(b)
    assert mtp_settings.model_key(a).startswith("Model_Q4-104-")
    b.write_bytes(b"GGUF" + b"\1" * 100)
    assert mtp_settings.model_key(a) != mtp_settings.model_key(b)


def test_cli_prints_each_familys_figure_and_break_even(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from llmtp.cli.main import app
    from llmtp.services.verify import tune as svc

    def fake_run_tune(settings, model, method, **kw):
        assert kw["rule"].noise_band == 0.1 and kw["rule"].min_gain == 0.03
        return tune(target(tmp_path), fake_launcher(speed), base=BASE, method=METHOD), target(tmp_path)

    monkeypatch.setattr(svc, "run_tune", fake_run_tune)
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["tune", "m.gguf", "--noise-band", "0.1"])
    assert out.exit_code == 0, out.output
    assert "held-out prompts by family (speedup against plain; every family judged)" in out.output
    assert (
        "n-max 6, p-min 0 + ngram-mod: 1.65x plain over the families (copy-heavy 1.65x, open-ended 1.65x, "
        "long-context 1.65x, non-english 1.65x)"
    ) in out.output
    assert "acceptance against break-even, per family (held-out)" in out.output
    assert "0.50 / 0.24" in out.output  # measured acceptance / the break-even below which it loses
    assert "held-out speedup 1.65x plain, break-even acceptance" in out.output


def test_verify_reports_each_cases_break_even_next_to_its_acceptance():
    from llmtp.core.verify import Case, Sample, analyze_case

    plain = [Sample(tokens_per_s=100.0, predicted_n=64)]
    mtp = [Sample(tokens_per_s=80.0, predicted_n=64, draft_n=100, draft_n_accepted=20)]
    # speedup 0.8 at acceptance 0.2, 3 drafted per step: a step costs 2 tokens, break-even (2 - 1) / 3
    c = analyze_case(Case(prompt="prose", temperature=0.0), plain, mtp, {"draft_tokens": 300.0, "drafts": 100.0})
    assert c.family == "open-ended" and c.acceptance == 0.2
    assert c.break_even_acceptance == pytest.approx(1 / 3)
    c = analyze_case(Case(prompt="prose", temperature=0.0), plain, mtp, None, n_max=3)  # no /metrics
    assert c.break_even_acceptance == pytest.approx(1 / 3)
