"""The supervisor's pure parts: transitions, load budget, OOM shrink."""

from __future__ import annotations

import pytest

from llmtp.core.launch import LaunchSpec
from llmtp.core.supervisor import Event, State, TransitionError, load_budget_s, next_state, shrink_for_oom


@pytest.mark.parametrize(
    "path, end",
    [
        ([Event.START, Event.READY], State.READY),
        ([Event.START, Event.READY, Event.HEALTH_FAIL, Event.HEALTH_OK], State.READY),
        ([Event.START, Event.READY, Event.HEALTH_FAIL, Event.CRASH, Event.START, Event.READY], State.READY),
        ([Event.START, Event.CRASH, Event.START, Event.CRASH, Event.GIVE_UP], State.FAILED),
        ([Event.START, Event.READY, Event.STOP], State.STOPPED),
    ],
)
def test_paths(path, end):
    state = State.STOPPED
    for event in path:
        state = next_state(state, event)
    assert state is end


@pytest.mark.parametrize(
    "state, event", [(State.STOPPED, Event.READY), (State.FAILED, Event.CRASH), (State.RESTARTING, Event.READY)]
)
def test_invalid(state, event):
    with pytest.raises(TransitionError, match=f"event {event.value} is not valid in state {state.value}"):
        next_state(state, event)


def test_every_state_can_be_stopped():
    assert all(
        Event.STOP in table for table in __import__("llmtp.core.supervisor", fromlist=["x"]).TRANSITIONS.values()
    )


@pytest.mark.parametrize("size, budget", [(None, 300.0), (0, 60.0), (2**30 * 15, 360.0), (2**40, 1800.0)])
def test_load_budget(size, budget):
    assert load_budget_s(size) == budget


def test_shrink_for_oom():
    spec = LaunchSpec(model="m", port=1, n_gpu_layers=40, ctx_size=32768)
    steps = []
    s = spec
    while (s := shrink_for_oom(s, 0)) is not None and len(steps) < 40:
        steps.append((s.n_gpu_layers, s.ctx_size))
    assert steps[:3] == [(30, 32768), (22, 32768), (16, 32768)]
    assert steps[-3:] == [(0, 16384), (0, 8192), (0, 4096)]
    assert shrink_for_oom(LaunchSpec(model="m", port=1, n_gpu_layers="auto"), 0) is None
