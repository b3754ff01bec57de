"""Pure verify logic: parsers on captured output, statistics, speedup, markers, warnings, verdict."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtp.core import baseline as bl
from llmtp.core import sequential as sq
from llmtp.core import verify as v
from llmtp.core.verify import Case, Marker, Markers, Sample, VerdictCode

FIX = Path(__file__).parent / "fixtures" / "llama" / "b11434-cpu"


def s(tps, pps=100.0, dn=None, da=None):
    return Sample(tokens_per_s=tps, predicted_n=128, prompt_n=30, prompt_per_s=pps, draft_n=dn, draft_n_accepted=da)


def test_summarize_median_and_spread():
    st = v.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (st.n, st.median, st.min, st.max, st.q1, st.q3) == (5, 3.0, 1.0, 5.0, 2.0, 4.0)
    assert v.summarize([]) is None
    one = v.summarize([7.0])
    assert (one.median, one.q1, one.q3) == (7.0, 7.0, 7.0)


def test_sample_from_real_timings_without_drafts():
    # A plain completion has no draft_* keys at all.
    t = {
        "cache_n": 0,
        "prompt_n": 31,
        "prompt_ms": 41.2,
        "prompt_per_token_ms": 1.33,
        "prompt_per_second": 752.4,
        "predicted_n": 128,
        "predicted_ms": 610.5,
        "predicted_per_token_ms": 4.77,
        "predicted_per_second": 209.6,
    }
    got = v.sample_from_timings(t)
    assert got.tokens_per_s == 209.6 and got.draft_n is None and got.draft_n_accepted is None
    assert v.acceptance([got]) is None


def test_acceptance_only_when_both_present():
    assert v.acceptance([s(1, dn=10, da=5), s(1, dn=30, da=15), s(1)]) == 0.5
    assert v.acceptance([s(1, dn=10, da=None)]) is None
    assert v.acceptance([s(1, dn=0, da=0)]) is None


def test_mean_accepted_length_like_the_slot_log():
    assert v.mean_accepted_length(120.0, 40.0) == 4.0
    assert v.mean_accepted_length(None, 40.0) is None
    assert v.mean_accepted_length(3.0, 0.0) is None


def test_parse_spec_metrics_on_captured_metrics():
    got = v.parse_spec_metrics((FIX / "metrics.txt").read_text())
    assert got == {"draft_tokens": 0.0, "accepted_tokens": 0.0, "drafts": 0.0}
    assert v.parse_spec_metrics(None) == {}


def test_parse_kv_buffers():
    log = (
        "0.00.101.000 I llama_kv_cache:        CPU KV buffer size =    64.00 MiB\n"
        "0.00.101.000 I llama_kv_cache:      CUDA0 KV buffer size =  1024.00 MiB\n"
    )
    assert v.parse_kv_buffers(log) == {"CPU": 64.0, "CUDA0": 1024.0}


def test_roofline():
    assert v.roofline_pct(50.0, 10**10, 1000.0) == pytest.approx(50.0)
    assert v.roofline_pct(50.0, None, 1000.0) is None
    assert v.roofline_pct(50.0, 10**10, None) is None


def test_analyze_case_speedup_with_spread_and_prompt_cost():
    plain = [s(10, pps=200), s(11, pps=200), s(12, pps=200)]
    mtp = [s(20, pps=150, dn=100, da=80), s(22, pps=150, dn=100, da=80), s(24, pps=150, dn=100, da=80)]
    r = v.analyze_case(Case(prompt="code", temperature=0.0), plain, mtp, {"accepted_tokens": 240, "drafts": 80})
    assert r.speedup == 2.0
    assert r.speedup_low == pytest.approx(20 / 12) and r.speedup_high == pytest.approx(2.4)
    assert r.acceptance == 0.8 and r.mean_accepted_length == 4.0
    assert r.prompt_cost == pytest.approx(0.25)


def _markers(build=True, model=True, runtime=True):
    return Markers(
        build=Marker(ok=build, detail="b"),
        gpu=Marker(ok=None, detail="g"),
        model=Marker(ok=model, detail="m"),
        runtime=Marker(ok=runtime, detail="r"),
    )


@pytest.mark.parametrize(
    "markers,speedup,regression,code",
    [
        (_markers(), 1.8, None, VerdictCode.PASS),
        (_markers(build=False), 1.8, None, VerdictCode.MTP_NOT_IN_BUILD),
        (_markers(model=False), None, None, VerdictCode.NO_MTP_HEADS),
        (_markers(runtime=False), None, None, VerdictCode.MTP_INACTIVE),
        (_markers(runtime=None), None, None, VerdictCode.MTP_INACTIVE),
        (_markers(), 0.43, None, VerdictCode.MTP_SLOWER),
        (_markers(), 1.0, None, VerdictCode.MTP_SLOWER),
        (_markers(), 1.8, "dropped", VerdictCode.REGRESSION),
    ],
)
def test_verdict(markers, speedup, regression, code):
    verdict = v.decide(markers, speedup, regression)
    assert verdict.code == code
    assert verdict.title == v.VERDICT_TITLES[code]


def test_exit_codes_are_distinct_and_clear_of_the_error_hierarchy():
    codes = [int(c) for c in VerdictCode]
    assert len(set(codes)) == len(codes) and codes[0] == 0
    assert all(c >= 10 for c in codes[1:])


def test_runtime_marker_needs_both_pieces_of_evidence():
    assert v.runtime_marker([True], [s(1, dn=10, da=10)]).ok is True
    assert v.runtime_marker([True], [s(1)]).ok is False  # speculative slot, no drafts
    assert v.runtime_marker([False], [s(1, dn=10, da=10)]).ok is False
    assert v.runtime_marker(None, [s(1, dn=10, da=10)]).ok is False


def test_build_and_gpu_markers():
    assert v.build_marker("upstream", ["none", "draft-mtp"]).ok is True
    assert v.build_marker("branch", []).ok is True
    m = v.build_marker(None, ["none", "draft-simple"])
    assert m.ok is False and m.detail == "--help offers no draft-mtp (none, draft-simple)"
    assert v.gpu_marker("cuda", [], 1).ok is False
    assert v.gpu_marker("cuda", ["CUDA0"], 1).ok is True
    assert v.gpu_marker("cpu", [], 0).ok is True
    assert v.gpu_marker("cpu", None, 0).ok is None


def test_warnings():
    w = v.warnings_for(
        temperatures=[0.0, 1.0],
        parallel=4,
        mtp_enabled=True,
        kv_buffers={"CPU": 512.0, "CUDA0": 100.0},
        build_has_gpu=True,
        machine_gpus=1,
    )
    assert w == [
        "temperature 1 > 0.8: MTP acceptance collapses at high temperature",
        "parallel slots 4 with MTP: slower in aggregate past 2 concurrent client(s); "
        "use -np 2, or `--clients N` to plan slots and MTP for N users",
        "KV cache spills to system RAM (512 MiB in CPU): lower the context or quantize the KV cache",
    ]
    assert (
        v.warnings_for(
            temperatures=[0.7],
            parallel=1,
            mtp_enabled=True,
            kv_buffers={"CPU": 64.0},
            build_has_gpu=False,
            machine_gpus=0,
        )
        == []
    )
    cpu_on_gpu = v.warnings_for(
        temperatures=[], parallel=1, mtp_enabled=True, kv_buffers=None, build_has_gpu=False, machine_gpus=1
    )
    assert cpu_on_gpu == [
        "this build has no GPU support but the machine has a GPU: rebuild with `llmtp build` for the GPU profile"
    ]


def test_method_presets():
    assert v.Method.preset("thorough").model_dump(include={"n_predict", "warmups", "runs"}) == {
        "n_predict": 2000,
        "warmups": 5,
        "runs": 10,
    }
    d = v.Method.preset("default")
    assert (d.sequential, d.budget_s, d.n_predict, d.warmups, d.runs, d.temperatures) == (
        True,
        60.0,
        128,
        1,
        3,
        [0.0, 0.7],
    )
    assert not v.Method.preset("thorough").sequential and not v.Method.preset("quick").sequential


def test_speedup_interval_on_paired_ratios():
    iv = sq.speedup_interval([1.5, 1.5, 1.5])
    assert iv.pairs == 3 and iv.speedup == pytest.approx(1.5) and iv.low == pytest.approx(1.5)
    one = sq.speedup_interval([2.0])
    assert one.speedup == pytest.approx(2.0) and one.low is None and one.high is None
    assert sq.speedup_interval([]) is None
    wide = sq.speedup_interval([0.8, 1.6, 1.1])
    assert wide.low < 1.0 < wide.high  # 3 pairs this spread cannot tell


def test_sequential_stops_as_soon_as_the_interval_clears_the_threshold():
    def stop(ratios, spent=1.0, budget=60.0, min_pairs=3):
        return sq.sequential_stop(ratios, 1.0, min_pairs=min_pairs, spent_s=spent, budget_s=budget)

    assert stop([1.50, 1.52]) is None  # clear, but fewer pairs than asked for
    assert stop([1.50, 1.52, 1.49]) == "above"
    assert stop([0.61, 0.60, 0.62]) == "below"
    assert stop([0.9, 1.2, 1.05]) is None  # straddles 1.0: measure on
    assert stop([0.9, 1.2, 1.05], spent=60.0) == "budget"
    assert stop([1.5], min_pairs=1) is None  # one pair has no spread: never decided by it
    # the next pair would overrun the budget: stop now, even before min_pairs (the wall time stays bounded)
    assert sq.sequential_stop([0.9, 1.2], 1.0, min_pairs=3, spent_s=50, budget_s=60, next_cost_s=12) == "budget"
    assert sq.sequential_stop([0.9, 1.2], 1.0, min_pairs=3, spent_s=50, budget_s=60, next_cost_s=8) is None
    assert sq.sequential_stop([], 1.0, min_pairs=3, spent_s=70, budget_s=60) is None  # no pair yet: measure one


def test_sequential_decides_for_synthetic_arms_in_few_pairs():
    # Noisy samples (+-10% per run) of a 1.5x speedup and of a 0.6x slowdown: a handful of pairs decides.
    import random

    rng = random.Random(7)
    for true, want in ((1.5, "above"), (0.6, "below")):
        ratios: list[float] = []
        while (got := sq.sequential_stop(ratios, 1.0, min_pairs=3, spent_s=len(ratios), budget_s=60)) is None:
            ratios.append(true * rng.uniform(0.9, 1.1) / rng.uniform(0.9, 1.1))
        assert got == want and len(ratios) <= 6


def test_sequential_rarely_decides_when_there_is_no_effect():
    # 200 streams of 20 pairs with a true speedup of 1.0: looking after every pair must not turn noise
    # into a verdict often (the per-look 99% level keeps the overall error near the nominal 5%).
    import random

    rng = random.Random(11)
    wrong = 0
    for _ in range(200):
        ratios = [rng.uniform(0.9, 1.1) / rng.uniform(0.9, 1.1) for _ in range(20)]
        wrong += any(
            sq.sequential_stop(ratios[:n], 1.0, min_pairs=3, spent_s=0, budget_s=60) is not None for n in range(3, 21)
        )
    assert wrong <= 20


def _baseline(**mtp):
    return bl.Baseline(key="k", model_key="m", build_id="old", n_predict=512, mtp_tokens_per_s=mtp)


def test_baseline_compare_within_and_beyond_tolerance():
    base = _baseline(**{"code@0": 100.0, "prose@0": 100.0})
    ok = bl.compare(base, {"code@0": 95.0, "prose@0": 92.0}, 512)
    assert not ok.regression and bl.regression_reason(ok) is None
    bad = bl.compare(base, {"code@0": 80.0, "prose@0": 85.0}, 512)
    assert bad.regression and bad.change == pytest.approx((0.8 * 0.85) ** 0.5 - 1)
    assert bl.regression_reason(bad) == "MTP tok/s -17.5% against the baseline of build old (tolerance 10%)"
    strict = bl.compare(base, {"code@0": 95.0, "prose@0": 95.0}, 512, tolerance=0.02)
    assert strict.regression


def test_baseline_compare_notes_method_change_and_no_common_cases():
    base = _baseline(**{"code@0": 100.0})
    cmp = bl.compare(base, {"prose@0": 10.0}, 128)
    assert not cmp.regression and cmp.change is None
    assert cmp.note == "baseline measured 512 tokens per run, this run 128"


def test_baseline_key_is_a_safe_file_name():
    assert (
        bl.baseline_key("Qwen 3.6-27B-123-abc", "cuda", "NVIDIA GeForce RTX 4090")
        == "Qwen_3.6-27B-123-abc__cuda__NVIDIA_GeForce_RTX_4090"
    )
    assert bl.baseline_key("m", None, None) == "m__unknown__nogpu"


def test_run_tokens_fit_the_minimum_pairs_into_the_budget():
    # 100 and 50 tok/s: a token pair costs 0.03 s; 3 pairs in 45 s fit 500 tokens, so the asked 128 stand
    assert sq.run_tokens(128, 45.0, 3, 100.0, 50.0) == 128
    # rejected drafts on a busy CPU: 1 tok/s MTP, 10 plain: 1.1 s per token pair, 3 pairs in 45 s -> 13,
    # floored at 32
    assert sq.run_tokens(128, 45.0, 3, 1.0, 10.0) == 32
    assert sq.run_tokens(128, 45.0, 3, 4.0, 20.0) == 50
    assert sq.run_tokens(128, 45.0, 3, None, 20.0) == 128  # speed unknown: as asked
    assert sq.run_tokens(16, 45.0, 3, 1.0, 1.0) == 16  # never more than asked, even under the floor
