"""`llmtp verify --port`, pure part: the verdict on a running server from its markers, the acceptance its
drafts reached against the stored break-even, and its decode speed against the stored baseline.

Acceptance decides faster-or-slower here (as in core/live.py: the acceptance a draft needs to pay for
itself was measured by the A/B or `llmtp tune`); the speed comparison only catches a regression.
"""

from __future__ import annotations

from llmtp.core.baseline import BaselineComparison, regression_reason
from llmtp.core.verify import VERDICT_TITLES, Markers, Verdict, VerdictCode


def live_verdict(
    markers: Markers, acceptance: float | None, break_even: float | None, cmp: BaselineComparison | None
) -> Verdict | None:
    """The first failing step decides, with the A/B's exit codes. None: the markers pass but nothing
    measured says whether MTP pays here (no stored break-even): the caller says how to measure it."""

    def v(code: VerdictCode, reason: str) -> Verdict:
        return Verdict(code=code, title=VERDICT_TITLES[code], reason=reason)

    if markers.build.ok is False:
        return v(VerdictCode.MTP_NOT_IN_BUILD, markers.build.detail)
    if markers.model.ok is False:
        return v(VerdictCode.NO_MTP_HEADS, markers.model.detail)
    if markers.runtime.ok is not True:
        return v(VerdictCode.MTP_INACTIVE, markers.runtime.detail)
    if acceptance is None:
        return v(VerdictCode.MTP_INACTIVE, "the server drafted no token for the check's requests")
    if break_even is None:
        return None
    if acceptance <= break_even:
        return v(
            VerdictCode.MTP_SLOWER,
            f"drafts accepted at {acceptance:.2f}, at or below the break-even "
            f"{break_even:.2f} measured for this model: MTP costs more than it saves",
        )
    regression = regression_reason(cmp)
    if regression:
        return v(VerdictCode.REGRESSION, regression)
    return v(
        VerdictCode.PASS,
        f"drafts accepted at {acceptance:.2f}, above the break-even {break_even:.2f} measured for this model",
    )
