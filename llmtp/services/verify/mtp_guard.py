"""The MTP guard while serving, mechanism: feed finished requests to core.guard, and when it says switch,
wait until no slot is processing, then have the supervisor relaunch llama-server with the safer setting.

Why a relaunch: the pinned llama-server (b11434) fixes its speculative settings at launch; the per-request
`speculative.*` fields of /completion are compiled out (`#if 0` in tools/server/server-schema.cpp) and no
endpoint changes the defaults, and llmtp does not sit between clients and the server. A relaunch with the
model in the page cache costs a few seconds (docs/performance.md), and the guard switches at most a few
times per serve. A request in flight is never cut: the switch waits for idle slots (SIGTERM would end it).
What the guard did and why goes to the supervisor log and to `mtp-guard-PORT.json`, which status shows.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel

from llmtp.adapters.files import LogFollower, read_json_cache, write_json_atomic
from llmtp.core import guard as core
from llmtp.core.metrics import requests
from llmtp.core.supervisor import State
from llmtp.errors import LlmtpError
from llmtp.services.stores import mtp_settings
from llmtp.services.verify.live_check import break_even_for

log = logging.getLogger("llmtp.serve")

IDLE_WAIT_S = 1.5  # per health tick, how long a due switch polls /slots for a gap between requests
IDLE_POLL_S = 0.05


class GuardRecord(BaseModel):
    """What `llmtp status` shows: the guard of one serve (file per port under the state dir)."""

    llmtp_pid: int
    port: int
    enabled: bool
    serving: str  # label of the MTP setting served now
    ladder: list[str]
    switches: list[core.Switch]
    last: core.Evidence | None = None
    waiting: str | None = None  # a due switch waiting for idle slots
    note: str | None = None


def record_path(state_dir: Path, port: int) -> Path:
    return Path(state_dir) / f"mtp-guard-{port}.json"


def read_record(state_dir: Path, port: int) -> GuardRecord | None:
    return read_json_cache(record_path(state_dir, port), GuardRecord)


def annotate_guard(state_dir: Path, entries: list[dict]) -> list[dict]:
    """`mtp_guard` on each `status_report` entry: what this serve's guard did, from its record (a record
    left by an earlier llmtp on the same port is not this serve's)."""
    for e in entries:
        guard = read_record(state_dir, e["port"]) if e.get("state") != "failed" else None
        e["mtp_guard"] = (
            guard.model_dump(mode="json") if guard is not None and guard.llmtp_pid == e.get("llmtp_pid") else None
        )
    return entries


def stored_ladder(settings, model_path: str):
    """(ladder, break-even) tune stored for this model file; ([], verify's break-even) otherwise."""
    try:
        record = mtp_settings.load_record(settings, mtp_settings.model_key(Path(model_path)))
    except (OSError, LlmtpError):
        record = None
    return (record.ladder if record is not None else []), break_even_for(settings, model_path)


def _idle(client) -> bool | None:
    """True when no slot is processing; None when /slots cannot say (then no switch)."""
    try:
        slots = client.slots()
    except Exception:  # noqa: BLE001 - any failure means "cannot tell", never "idle"
        return None
    if not isinstance(slots, list) or not slots:
        return None
    return not any(s.get("is_processing") for s in slots)


def _num(x: float | None) -> str:
    return "unknown" if x is None else f"{x:.2f}"


@dataclass(frozen=True)
class GuardDeps:
    """The guard's thresholds, clock and sleep, and where it reads tune's ladder; tests replace any."""

    cfg: core.GuardConfig = field(default_factory=core.GuardConfig)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    ladder_source: Callable[[str], tuple] | None = None  # model path -> (ladder, break-even)


def guard_hook(
    settings,
    model_path: str,
    log_path: Path,
    *,
    state_dir: Path,
    port: int,
    enabled: bool,
    then: Callable[[object], None] | None = None,
    deps: GuardDeps | None = None,
) -> Callable[[object], None]:
    """The supervisor's on_tick: run `then` (the live check), then the guard. `enabled` False: the served
    setting is pinned (--no-mtp-guard); status still says so."""
    deps = deps or GuardDeps()
    cfg, clock, sleep = deps.cfg, deps.clock, deps.sleep
    source = deps.ladder_source or (lambda m: stored_ladder(settings, m))
    box: dict = {"state": None, "follower": LogFollower(log_path), "since": None}

    def write(sup, state: core.GuardState | None, waiting: str | None = None, note: str | None = None) -> None:
        rec = GuardRecord(
            llmtp_pid=os.getpid(),
            port=port,
            enabled=enabled,
            serving=state.served_label if state else core.label(sup.spec.mtp),
            ladder=[r.label for r in state.ladder] if state else [],
            switches=state.switches if state else [],
            last=state.last if state else None,
            waiting=waiting,
            note=note,
        )
        try:
            write_json_atomic(record_path(state_dir, port), rec.model_dump(mode="json"))
        except OSError as exc:
            log.debug("MTP guard record not written: %s", exc)

    def first(sup) -> core.GuardState | None:
        if not enabled:
            write(sup, None, note="pinned (--no-mtp-guard or mtp_guard = false): the served setting never changes")
            return None
        stored, break_even = source(model_path)
        ladder = core.ladder_for(sup.spec.mtp, stored, break_even)
        if not ladder:
            write(sup, None, note="MTP is off: nothing to guard")
            return None
        state = core.start(ladder, cfg)
        write(sup, state)
        steps = [f"{r.label} (break-even {_num(r.break_even_acceptance)})" for r in ladder]
        log.info("MTP guard on: %s -> plain", " -> ".join(steps))
        return state

    def tick(sup) -> None:
        if box["state"] is None:
            if "done" in box:
                return
            box["done"] = True
            box["state"] = first(sup)
            if box["state"] is None:
                return
        state: core.GuardState = box["state"]
        state = core.observe(state, requests(box["follower"].read()), cfg)
        state, action = core.decide(state, cfg)
        box["state"] = state
        if action is None:
            if box["since"] is not None:
                box["since"] = None
                write(sup, state)
            return
        if sup.state is not State.READY or sup.proc is None:
            return
        if box["since"] is None:
            box["since"] = clock()
            log.info("MTP guard: switch to %s due (%s); waiting for idle slots", action.to_label, action.why)
            write(sup, state, waiting=f"switch to {action.to_label} due; waiting for idle slots")
        with sup.proc.client(timeout=2.0) as client:
            deadline = clock() + IDLE_WAIT_S
            while _idle(client) is not True:
                if clock() >= deadline:
                    return  # busy: try again on the next tick, the request in flight runs to its end
                sleep(IDLE_POLL_S)
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        box["state"] = core.switched(state, action, at, cfg)
        box["follower"] = LogFollower(log_path)  # the next server appends to this log (or a rotated one):
        box["follower"].read()  # its requests, not the old server's, are the new setting's evidence
        box["since"] = None
        verb = "stepping down" if action.direction == "down" else "trying again"
        log.warning("MTP guard: %s from %s to %s: %s", verb, state.served_label, action.to_label, action.why)
        write(sup, box["state"])
        sup.relaunch(
            sup.spec.model_copy(update={"mtp": action.to}),
            f"MTP guard: {state.served_label} -> {action.to_label}: {action.why}",
        )

    def on_tick(sup) -> None:
        if then is not None:
            then(sup)
        try:
            tick(sup)
        except Exception as exc:  # noqa: BLE001 - the guard must never stop the supervision loop
            log.warning("MTP guard skipped a check: %s", exc)

    return on_tick


def guard_line(rec: dict) -> str:
    """`llmtp status`'s line for one serve's guard (from GuardRecord as JSON)."""
    if not rec["enabled"]:
        return f"MTP guard off: {rec['note']}"
    if not rec["ladder"]:
        return f"MTP guard: {rec['note'] or 'nothing to guard'}"
    text = f"MTP guard: serving {rec['serving']}"
    if rec["switches"]:
        s = rec["switches"][-1]
        text += (
            f"; {len(rec['switches'])} switch(es), last at {s['at']}: {s['from_label']} -> {s['to_label']} ({s['why']})"
        )
    elif rec.get("last"):
        text += f"; {rec['last']['detail']}"
    if rec.get("waiting"):
        text += f"; {rec['waiting']}"
    return text
