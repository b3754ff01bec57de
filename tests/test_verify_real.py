"""Verify, tune and upgrade for real: the pinned CPU llama-server and the qwen35 test models.

Timings on the 2-core dev box (shared): tiny models take a few seconds per test; the bench-size agree
verify about 20 s and its tune sweep about 60 s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.cli.main import app
from llmtp.core.verify import Method, VerdictCode

pytestmark = pytest.mark.llama


def install_current(settings, bin_dir: Path) -> str:
    """Register the test bed's binary as this test's current build (linked, nothing compiled)."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.build.installed import adopt

    return adopt(settings, bin_dir, SubprocessRunner()).id


@pytest.fixture
def settings(llama_bin_dir):
    from llmtp.settings import load_settings

    s = load_settings().settings
    install_current(s, llama_bin_dir)
    return s


FAST = ["--runs", "2", "--warmups", "1", "--n-predict", "48", "--temperature", "0", "--json"]


def test_agree_bench_passes_with_full_acceptance_and_speedup(settings, bench_models):
    from llmtp.core.launch_plan import LaunchRequest
    from llmtp.services.verify.ab_plan import run_verify

    report = run_verify(
        settings,
        LaunchRequest(model=str(bench_models["agree"])),
        Method(n_predict=64, warmups=1, runs=3, temperatures=[0.0]),
    )
    assert report.verdict.code == VerdictCode.PASS, report.verdict
    assert report.acceptance == 1.0
    assert report.speedup > 1.3
    assert report.markers.runtime.ok and report.mean_accepted_length > 3.0
    assert "baseline stored" in report.warnings


def test_default_sequential_verify_on_bench_agree_stops_early_and_passes(settings, bench_models):
    from llmtp.core.launch_plan import LaunchRequest
    from llmtp.services.verify.ab_plan import run_verify

    method = Method.preset("default").model_copy(update={"budget_s": 45.0, "n_predict": 64})
    report = run_verify(settings, LaunchRequest(model=str(bench_models["agree"])), method)
    assert report.verdict.code == VerdictCode.PASS, (report.verdict, report.sequential)
    seq = report.sequential
    # on an idle machine the interval clears 1.0x within a few pairs; a crowded one may spend the budget
    assert seq.stopped in ("above", "budget") and seq.interval.speedup > 1.0, seq
    if seq.stopped == "above":
        assert seq.interval.low > 1.0 and seq.pairs >= 3
    assert report.acceptance == 1.0


def test_random_is_slower_than_plain_with_its_exit_code(settings, tiny_models):
    result = CliRunner().invoke(app, ["verify", str(tiny_models["random"]), *FAST])
    assert result.exit_code == 13, result.output
    data = json.loads(result.stdout)
    assert data["verdict"]["title"] == "MTP slower than plain"
    assert data["markers"]["runtime"]["ok"] is True  # MTP was on (drafts happened), it just lost
    assert data["acceptance"] < 0.2


def test_plain_model_has_no_heads(settings, tiny_models):
    result = CliRunner().invoke(app, ["verify", str(tiny_models["plain"]), *FAST])
    assert result.exit_code == 11, result.output
    data = json.loads(result.stdout)
    assert data["verdict"]["title"] == "model has no MTP heads"
    assert data["cases"] == []


def test_tune_disables_mtp_on_random(settings, tiny_models):
    from llmtp.services.stores import mtp_settings

    result = CliRunner().invoke(
        app, ["tune", str(tiny_models["random"]), "--runs", "1", "--warmups", "1", "--n-predict", "32", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    table = [(t["label"], t["tokens_per_s"] and t["tokens_per_s"]["median"], t["acceptance"]) for t in data["trials"]]
    assert data["chosen"]["enabled"] is False, table
    # lost on the selection half, or (a noisy selection win) caught on the held-out half
    assert data["reason"].startswith(("nothing beats plain decoding", "no setting holds up on the")), table
    for judged in data["heldout"]:
        assert judged["passed"] is False
    assert len(data["trials"]) == 10  # plain, n-max 1-6, p-min 0.5/0.75, ngram-mod stacked
    assert mtp_settings.load(settings, data["model_key"]) == mtp_settings.MtpSettings(enabled=False)


def test_tune_on_bench_agree_keeps_mtp_and_picks_the_fastest_trial(settings, bench_models):
    # Which n-max wins depends on the CPU (EPYC: 6; an AMX Xeon: 3, then ngram-mod stacked on it);
    # what must hold everywhere: MTP stays on, the choice is the fastest trial that drafted, and
    # every draft length 1-6 was measured.
    from llmtp.core.tune import finalists
    from llmtp.services.verify.tune import run_tune, tune_method

    method = tune_method(n_predict=64, warmups=1, runs=1)
    from llmtp.core.launch_plan import LaunchRequest

    decision, target = run_tune(settings, LaunchRequest(model=str(bench_models["agree"])), method)
    measured = [t for t in decision.trials if t.mtp.enabled and t.tokens_per_s is not None and t.acceptance]
    assert decision.chosen.enabled and decision.speedup > 1.3, decision.reason
    # chosen among the selection's finalists, and the figure kept is the held-out one over the families
    assert decision.chosen in [f.mtp for f in finalists(decision.trials)]
    kept = next(h for h in decision.heldout if h.mtp == decision.chosen)
    assert kept.passed and decision.speedup == kept.score and len(kept.speedups) == 10
    assert set(kept.families) == {"copy-heavy", "open-ended", "long-context", "non-english"}
    assert set(decision.family_break_even) == set(kept.families)  # every draft accepted: each under 1.0
    assert {t.mtp.n_max for t in measured} >= {1, 2, 3, 4, 5, 6}
    from llmtp.services.stores import mtp_settings

    assert mtp_settings.load(settings, target.model_key) == decision.chosen


def test_upgrade_to_a_broken_build_keeps_the_old_one(settings, tiny_models):
    import conftest

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services.build.installed import current_build
    from llmtp.services.build.request import BuildRequest
    from llmtp.services.build.upgrade import run_upgrade

    # the pinned source the test bed build unpacked (the `settings` fixture built or found that build)
    unpacked = sorted((conftest.testbed_cache_dir() / "llmtp-home" / "cache" / "sources").glob("pypi-*/*/llama.cpp"))
    src = (
        Path(os.environ["LLMTP_TEST_LLAMA_SRC"])
        if os.environ.get("LLMTP_TEST_LLAMA_SRC")
        else (unpacked[-1] if unpacked else None)
    )
    if src is None or not (src / "CMakeLists.txt").is_file():
        pytest.skip("no llama.cpp source tree to configure (LLMTP_TEST_LLAMA_SRC, or the test bed's unpacked sdist)")
    # A compiler that does not exist: CMake's configure fails within seconds, nothing compiles.
    request = BuildRequest(
        profile="cpu",
        source="path",
        path=src,
        cmake_args=["CMAKE_C_COMPILER=/nonexistent/cc", "CMAKE_CXX_COMPILER=/nonexistent/c++"],
    )
    before = current_build(settings).id
    result = run_upgrade(
        settings, request, str(tiny_models["agree"]), Method.preset("quick"), runner=SubprocessRunner()
    )
    assert result.outcome == "build_failed", result.reason
    assert result.exit_code != 0
    assert current_build(settings).id == before
    assert result.new_report is None  # nothing to verify, nothing switched
    assert "CMake configure failed" in result.reason
