"""The supervisor's state machine, load-time budget and out-of-memory fallback, as pure values.

The driving loop (llmtp/services/serve/supervisor.py:Supervisor) feeds events in; this module says which state
follows and refuses transitions that make no sense, so every path through serve is enumerable.
"""

from __future__ import annotations

from enum import Enum

from llmtp.core.launch import LaunchSpec


class State(str, Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    READY = "ready"
    UNHEALTHY = "unhealthy"
    RESTARTING = "restarting"
    FAILED = "failed"


class Event(str, Enum):
    START = "start"  # launch llama-server
    READY = "ready"  # /health answered 200
    HEALTH_FAIL = "health_fail"  # /health failed once while ready (may be a blip)
    HEALTH_OK = "health_ok"  # /health recovered
    CRASH = "crash"  # exited, hung at load, or wedged: the policy allows a restart
    GIVE_UP = "give_up"  # the policy says stop trying (or a failure no restart can fix)
    STOP = "stop"  # the user (Ctrl-C, SIGTERM, `llmtp stop`) asked to stop
    SWITCH = "switch"  # a planned relaunch with other settings (the MTP guard), while no request runs


S, E = State, Event
TRANSITIONS: dict[State, dict[Event, State]] = {
    # Only a start leaves stopped; stop is idempotent.
    S.STOPPED: {E.START: S.STARTING, E.STOP: S.STOPPED},
    # Loading: 503s are normal; an exit or a load past the budget is a crash.
    S.STARTING: {E.READY: S.READY, E.CRASH: S.RESTARTING, E.GIVE_UP: S.FAILED, E.STOP: S.STOPPED},
    # Serving: one failed /health is not yet a restart (a long prompt can stall it); an exit is.
    S.READY: {
        E.HEALTH_FAIL: S.UNHEALTHY,
        E.HEALTH_OK: S.READY,
        E.CRASH: S.RESTARTING,
        E.GIVE_UP: S.FAILED,
        E.STOP: S.STOPPED,
        E.SWITCH: S.RESTARTING,
    },
    # Unhealthy: recovers, or after repeated failures / a stuck generation counts as a crash.
    S.UNHEALTHY: {
        E.HEALTH_OK: S.READY,
        E.HEALTH_FAIL: S.UNHEALTHY,
        E.CRASH: S.RESTARTING,
        E.GIVE_UP: S.FAILED,
        E.STOP: S.STOPPED,
    },
    # Waiting out the backoff; the next launch is a start.
    S.RESTARTING: {E.START: S.STARTING, E.GIVE_UP: S.FAILED, E.STOP: S.STOPPED},
    # Terminal until a person starts it again.
    S.FAILED: {E.START: S.STARTING, E.STOP: S.FAILED},
}


class TransitionError(ValueError):
    pass


def next_state(state: State, event: Event) -> State:
    try:
        return TRANSITIONS[state][event]
    except KeyError:
        raise TransitionError(f"event {event.value} is not valid in state {state.value}") from None


def load_budget_s(
    model_bytes: int | None, *, base_s: float = 60.0, per_gib_s: float = 20.0, max_s: float = 1800.0
) -> float:
    """How long loading may take before it counts as a hang: a floor plus time per GiB read
    (20 s/GiB is a slow 50 MB/s disk); unknown size gets the cap's fifth, never a guess of the file."""
    if model_bytes is None:
        return min(max_s, 300.0)
    return min(max_s, base_s + per_gib_s * model_bytes / 2**30)


def shrink_for_oom(spec: LaunchSpec, attempt: int) -> LaunchSpec | None:
    """Fallback re-plan after an out-of-memory at load: fewer GPU layers first, then half the
    context (not below 4096). None when there is nothing left to shrink."""
    ngl = spec.n_gpu_layers
    if isinstance(ngl, int) and ngl > 0:
        return spec.model_copy(update={"n_gpu_layers": max(0, ngl * 3 // 4 if ngl > 3 else ngl - 1)})
    if spec.ctx_size is not None and spec.ctx_size > 4096:
        return spec.model_copy(update={"ctx_size": max(4096, spec.ctx_size // 2)})
    return None
