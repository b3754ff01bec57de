"""`llmtp upgrade`: build a new ref beside the current build, verify it, switch only on a pass.

The build, the verify runs, the switch and the service restart are injected: the order is the
contract (never switch before a pass, never restart before the switch), and tests check it with fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from llmtp.adapters.runner import SubprocessRunner
from llmtp.core.baseline import baseline_key
from llmtp.core.launch_plan import LaunchRequest
from llmtp.core.verify import VerdictCode, VerifyReport
from llmtp.errors import LlmtpError, UsageError
from llmtp.services.verify import baselines as store
from llmtp.services.verify.ab_plan import model_ref_or_default, run_verify, target_for, verify_plan
from llmtp.services.verify.mtp_ab import VerifyOptions

Outcome = Literal["switched", "kept", "build_failed", "unchanged"]


class UpgradeResult(BaseModel):
    outcome: Outcome
    old_build: str | None
    new_build: str | None
    reason: str
    old_report: VerifyReport | None = None  # only when no baseline existed and the old build was measured
    new_report: VerifyReport | None = None
    restarted: bool = False
    error_exit_code: int | None = None  # the build error's code, for the CLI

    @property
    def exit_code(self) -> int:
        if self.outcome == "build_failed":
            return self.error_exit_code or 1
        if self.outcome == "kept" and self.new_report is not None:
            return int(self.new_report.verdict.code)
        return 0


def upgrade(
    *,
    current: Any | None,
    build_new: Callable[[], Any],
    verify_build: Callable[[Any], VerifyReport],
    has_baseline: Callable[[Any], bool],
    switch: Callable[[str], object],
    restart: Callable[[], bool] | None = None,
) -> UpgradeResult:
    """current/build_new return InstalledBuild-like objects (with .id)."""
    old_id = current.id if current is not None else None
    try:
        new = build_new()
    except LlmtpError as exc:
        return UpgradeResult(
            outcome="build_failed",
            old_build=old_id,
            new_build=None,
            error_exit_code=exc.exit_code,
            reason=f"the new build failed, {old_id or 'nothing'} stays current: {exc.render()}",
        )
    if new.id == old_id:
        return UpgradeResult(
            outcome="unchanged",
            old_build=old_id,
            new_build=new.id,
            reason=f"{new.id} is already current (identical inputs)",
        )
    old_report = None
    if current is not None and not has_baseline(current):
        # Without a baseline the comparison would be against nothing: measure the old build first
        # (its passing run becomes the baseline).
        old_report = verify_build(current)
    new_report = verify_build(new)
    if new_report.verdict.code != VerdictCode.PASS:
        return UpgradeResult(
            outcome="kept",
            old_build=old_id,
            new_build=new.id,
            old_report=old_report,
            new_report=new_report,
            reason=(
                f"{new.id} did not pass verify ({new_report.verdict.title}: "
                f"{new_report.verdict.reason}); {old_id or 'nothing'} stays current"
            ),
        )
    switch(new.id)
    restarted = bool(restart()) if restart is not None else False
    return UpgradeResult(
        outcome="switched",
        old_build=old_id,
        new_build=new.id,
        old_report=old_report,
        new_report=new_report,
        restarted=restarted,
        reason=f"{new.id} passed verify and is now current"
        + ("; the service was restarted on it" if restarted else ""),
    )


def run_upgrade(
    settings,
    request,
    model_ref: str | None,
    method,
    *,
    runner=None,
    restart: Callable[[], bool] | None = None,
    on_build_progress=None,
    verify_options=None,
) -> UpgradeResult:
    """Wire the real build service, verify (services/verify/ab_plan.py: the plan serve runs, on each build) and
    switch. `request.make_current` is forced off. `verify_options`: services.verify.mtp_ab.VerifyOptions."""
    from llmtp.services.build import installed, pipeline

    if runner is None:
        runner = SubprocessRunner()
    current = installed.current_build(settings)
    if current is None:
        raise UsageError("There is no current build to upgrade from", "Run `llmtp build` first.")
    request = request.model_copy(update={"make_current": False})

    launch = LaunchRequest(model=model_ref_or_default(settings, model_ref))  # the plan serve runs, per build

    def has_baseline(build) -> bool:
        target = target_for(settings, verify_plan(settings, launch, build), build)
        return store.load(settings, baseline_key(target.model_key, target.profile, target.gpu_name)) is not None

    return upgrade(
        current=current,
        build_new=lambda: pipeline.build(settings, request, runner, on_build_progress),
        verify_build=lambda b: run_verify(
            settings, launch, method, build=b, served="keep", options=verify_options or VerifyOptions()
        ),
        has_baseline=has_baseline,
        switch=lambda bid: installed.use_build(settings, bid),
        restart=restart,
    )
