"""Slots and MTP for N concurrent clients (`serve --clients N`): the crossover rule and the measurements it
comes from, kept here as data with their sources.

Speculative decoding speeds up one stream; with several streams decoding at once the target model already
batches their tokens, each slot's drafts add verify work to every step, and the gain shrinks until plain
decoding serves more tokens in aggregate. The rule: one slot per client, and MTP on while the number of
clients decoding at once is at most the crossover, the highest client count at which MTP's aggregate decode
speed was measured within TOLERANCE of plain or above (and at every smaller count measured). A count between
measured ones gets MTP only if it is at most the crossover, so the rule never extrapolates a gain.

b11434 itself runs draft-mtp with several slots (tools/server/server-context.cpp creates the speculative
state for n_parallel sequences, common/speculative.cpp keeps it per sequence): one slot with MTP was a
speed choice, not a limit, and stays the plan when no --clients is given. Pure: values in, values out.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

# MTP "still pays" while its aggregate is at least this far below plain: a tie in aggregate keeps the
# single-stream gain for the moments when only one client is decoding.
TOLERANCE = 0.05


@dataclass(frozen=True)
class Measurement:
    """MTP-on / MTP-off aggregate decode speed with `clients` clients decoding at once."""

    backend: str  # "gpu" or "cpu": where the model's layers ran
    clients: int
    ratio: float
    source: str  # short citation, shown in the plan's reason


_R9700 = "Tanguille/cluster#3261 (AMD R9700, llama-server), unsloth#8172 (Qwen3.x-27B: gone by --parallel 4)"

# Published: Tanguille/cluster#3261 (2026-06-14), medians under load, MTP on vs off: 1 client 36.5 vs 24.3
# tok/s, 2 concurrent 26.8 vs 26.9 aggregate, 4 concurrent 23.7 vs 28.2 aggregate. unsloth/unsloth#8172
# (2026-08-08) reports the same shape for Qwen3.x-27B on GPUs: the gain shrinks with slots, gone by 4.
MEASURED: tuple[Measurement, ...] = (
    Measurement("gpu", 1, 36.5 / 24.3, _R9700),
    Measurement("gpu", 2, 26.8 / 26.9, _R9700),
    Measurement("gpu", 4, 23.7 / 28.2, _R9700),
)


@dataclass(frozen=True)
class Crossover:
    clients: int  # the highest client count at which MTP still paid (1: only a single stream)
    source: str  # where the figures come from; "" when none were measured for the backend


def crossover(backend: str, table: tuple[Measurement, ...] = MEASURED) -> Crossover:
    """The crossover on `backend` from `table`; with no figures for it, 1 (one stream: the known fast path)."""
    rows = sorted((m for m in table if m.backend == backend), key=lambda m: m.clients)
    held = 1
    for m in rows:
        if m.ratio < 1.0 - TOLERANCE:
            break
        held = max(held, m.clients)
    return Crossover(held, "; ".join(dict.fromkeys(m.source for m in rows)))


class ClientsPlan(BaseModel):
    """What --clients decides: the slot count and whether MTP may stay on, each with its reason."""

    model_config = ConfigDict(frozen=True)

    clients: int
    parallel: int
    mtp: bool
    slots_reason: str
    mtp_reason: str


def plan_clients(
    clients: int, on_gpu: bool, parallel: int | None = None, table: tuple[Measurement, ...] = MEASURED
) -> ClientsPlan:
    """Slots and MTP for `clients` concurrent clients. An explicit `parallel` (--parallel) sets the slots;
    then at most that many clients decode at once, and MTP is judged on that number."""
    if clients < 1:
        raise ValueError("clients must be at least 1")
    backend = "gpu" if on_gpu else "cpu"
    slots = parallel if parallel is not None else clients
    decoding = min(clients, slots)
    cross = crossover(backend, table)
    measured = (
        f"measured crossover {cross.clients} on {backend.upper()}: {cross.source}"
        if cross.source
        else f"no concurrency figures for {backend.upper()} yet: one stream is the known fast path"
    )
    if parallel is not None:
        slots_reason = f"given with --parallel ({clients} client(s) share {slots} slot(s))"
    else:
        slots_reason = f"one slot per concurrent client (--clients {clients})"
    if decoding <= cross.clients:
        who = "one client" if decoding == 1 else f"{decoding} concurrent clients"
        reason = f"kept for {who} ({measured})"
        return ClientsPlan(clients=clients, parallel=slots, mtp=True, slots_reason=slots_reason, mtp_reason=reason)
    if cross.source:
        why = f"with {decoding} concurrent clients drafts cost more than they save ({measured})"
    else:
        why = f"{decoding} concurrent clients, and {measured}"
    return ClientsPlan(clients=clients, parallel=slots, mtp=False, slots_reason=slots_reason, mtp_reason=why)


def slots_warning(parallel: int | None, on_gpu: bool) -> str | None:
    """verify's word on a server's slots with MTP on (None: auto, 4 slots): past the crossover they cost; up to it
    they are what `--clients N` plans."""
    cross = crossover("gpu" if on_gpu else "cpu").clients
    if parallel is not None and 0 < parallel <= cross:
        return None
    slots = "auto (4)" if parallel is None or parallel < 0 else str(parallel)
    return (
        f"parallel slots {slots} with MTP: slower in aggregate past {cross} concurrent client(s); "
        f"use -np {cross}, or `--clients N` to plan slots and MTP for N users"
    )
