"""Upgrade ordering with fakes: build beside, verify, switch only on a pass, restart only after the switch."""

from __future__ import annotations

from dataclasses import dataclass

from llmtp.core.verify import Marker, Markers, Method, Verdict, VerdictCode, VerifyReport
from llmtp.errors import BuildError
from llmtp.services.build.upgrade import upgrade


@dataclass
class B:
    id: str


def report(code: VerdictCode) -> VerifyReport:
    m = Marker(ok=True, detail="")
    return VerifyReport(
        model="m",
        method=Method(),
        markers=Markers(build=m, gpu=m, model=m, runtime=m),
        verdict=Verdict(code=code, title=code.name, reason="why"),
    )


def run(code=VerdictCode.PASS, baseline=True, fail_build=False, new_id="new"):
    log = []

    def build_new():
        log.append("build")
        if fail_build:
            raise BuildError("CMake configure failed for profile cpu", "Fix it.")
        return B(new_id)

    def verify_build(b):
        log.append(f"verify {b.id}")
        return report(code if b.id == "new" else VerdictCode.PASS)

    result = upgrade(
        current=B("old"),
        build_new=build_new,
        verify_build=verify_build,
        has_baseline=lambda b: baseline,
        switch=lambda bid: log.append(f"switch {bid}"),
        restart=lambda: log.append("restart") or True,
    )
    return result, log


def test_pass_switches_then_restarts():
    result, log = run()
    assert log == ["build", "verify new", "switch new", "restart"]
    assert result.outcome == "switched" and result.restarted and result.exit_code == 0
    assert result.reason == "new passed verify and is now current; the service was restarted on it"


def test_regression_keeps_the_old_build_and_its_service():
    result, log = run(code=VerdictCode.REGRESSION)
    assert log == ["build", "verify new"]
    assert result.outcome == "kept" and result.exit_code == 14
    assert result.reason == "new did not pass verify (REGRESSION: why); old stays current"


def test_broken_build_keeps_old():
    result, log = run(fail_build=True)
    assert log == ["build"]
    assert result.outcome == "build_failed" and result.exit_code == BuildError.exit_code
    assert result.reason.startswith("the new build failed, old stays current: CMake configure failed")


def test_without_baseline_the_old_build_is_measured_first():
    result, log = run(baseline=False)
    assert log == ["build", "verify old", "verify new", "switch new", "restart"]
    assert result.old_report is not None


def test_identical_build_changes_nothing():
    result, log = run(new_id="old")
    assert log == ["build"] and result.outcome == "unchanged"
