"""The pure restart policy: backoff growth and cap, the crash window, giving up, stable runs."""

from __future__ import annotations

import pytest

from llmtp.core.restart import RestartHistory, RestartPolicy, backoff, record_crash

P = RestartPolicy(
    max_crashes=3, window_s=60, backoff_initial_s=0.5, backoff_factor=2, backoff_max_s=3, stable_after_s=30
)


@pytest.mark.parametrize("n, delay", [(0, 0.0), (1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (10, 3.0)])
def test_backoff(n, delay):
    assert backoff(P, n) == delay


def test_gives_up_after_max_crashes_in_window():
    h = RestartHistory()
    actions = []
    for now in (0.0, 1.0, 2.5, 5.0):
        h, d = record_crash(P, h, now, uptime_s=None)
        actions.append((d.action, d.delay_s, d.crashes_in_window))
    assert actions == [("restart", 0.5, 1), ("restart", 1.0, 2), ("restart", 2.0, 3), ("give_up", 0.0, 4)]
    assert d.reason == "4 crashes within 60 s (limit 3)"


def test_old_crashes_leave_the_window():
    h = RestartHistory()
    for now in (0.0, 10.0, 20.0):
        h, d = record_crash(P, h, now, uptime_s=1.0)
    h, d = record_crash(P, h, 100.0, uptime_s=1.0)
    assert d.action == "restart" and d.crashes_in_window == 1
    assert d.delay_s == 3.0  # short runs keep the backoff growing even outside the window


def test_a_stable_run_resets_the_backoff():
    h = RestartHistory()
    for now in (0.0, 1.0, 2.0):
        h, _ = record_crash(P, h, now, uptime_s=None)
    h, d = record_crash(P, h, 200.0, uptime_s=150.0)
    assert (d.action, d.delay_s, h.consecutive) == ("restart", 0.5, 1)


def test_zero_restarts_allowed():
    _, d = record_crash(RestartPolicy(max_crashes=0), RestartHistory(), 0.0, None)
    assert d.action == "give_up"
