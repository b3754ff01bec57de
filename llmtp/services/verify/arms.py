"""How verify's arms are measured: the server handle it needs, warm-ups and runs per case, the
MTP probe, the full matrix and the sequential (paired, budgeted) check. Pure decisions live in
core.verify and core.sequential; servers come from the injected Launcher."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from llmtp.core import sequential as seq
from llmtp.core import verify as core
from llmtp.core.launch_plan import LaunchPlan
from llmtp.core.verify import Case, Marker, Method, Sample
from llmtp.errors import ServeError


class ServerHandle(Protocol):
    """A ready llama-server, as verify and tune use it."""

    def slots(self) -> list[dict]: ...

    def metrics(self) -> str | None: ...  # Prometheus text; None without --metrics

    def complete(self, prompt: str, *, n_predict: int, temperature: float, seed: int) -> dict: ...  # timings

    def log_text(self) -> str: ...


Launcher = Callable[[LaunchPlan], AbstractContextManager[ServerHandle]]  # launches one arm (a plan)
Progress = Callable[[str], None]


def measure_case(
    handle: ServerHandle, case: Case, method: Method, on_progress: Progress | None = None, label: str = ""
) -> tuple[list[Sample], dict[str, float]]:
    """Warm-ups (discarded), then `runs` samples; also the speculative counters over the measured runs."""
    prompt = core.PROMPTS[case.prompt]
    for i in range(method.warmups):
        if on_progress:
            on_progress(f"{label} {case.key} warm-up {i + 1}/{method.warmups}")
        handle.complete(prompt, n_predict=method.n_predict, temperature=case.temperature, seed=method.seed)
    before = core.parse_spec_metrics(handle.metrics())
    samples = []
    for i in range(method.runs):
        if on_progress:
            on_progress(f"{label} {case.key} run {i + 1}/{method.runs}")
        timings = handle.complete(prompt, n_predict=method.n_predict, temperature=case.temperature, seed=method.seed)
        samples.append(core.sample_from_timings(timings))
    after = core.parse_spec_metrics(handle.metrics())
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    return samples, delta


def cases_of(method: Method) -> list[Case]:
    return [Case(prompt=p, temperature=t) for t in method.temperatures for p in method.prompts]


def measure_plain(
    cases, method: Method, launcher: Launcher, base: LaunchPlan, on_progress: Progress | None = None
) -> dict[str, list[Sample]]:
    """The plain arm: every case on one server of the plan launched without any speculation."""
    with launcher(base.plain()) as handle:
        return {case.key: measure_case(handle, case, method, on_progress, "plain")[0] for case in cases}


@dataclass
class Measured:
    """What the MTP and plain arms gave, whichever way they were run."""

    runtime: Marker
    speculative: list[bool]
    probe: Sample | None
    log: str = ""
    mtp: dict[str, list[Sample]] = field(default_factory=dict)
    plain: dict[str, list[Sample]] = field(default_factory=dict)
    counters: dict[str, dict[str, float]] = field(default_factory=dict)  # case key -> spec counters
    sequential: seq.Sequential | None = None


def mtp_probe(handle: ServerHandle, case: Case, method: Method) -> tuple[list[bool], Sample, Marker]:
    """Fail fast: the slots and one short completion show whether drafts happen at all."""
    speculative = [bool(s.get("speculative")) for s in handle.slots()]
    probe = core.sample_from_timings(
        handle.complete(
            core.PROMPTS[case.prompt], n_predict=min(method.n_predict, 32), temperature=0.0, seed=method.seed
        )
    )
    return speculative, probe, core.runtime_marker(speculative, [probe])


@contextmanager
def plain_arm(launcher: Launcher, spec: LaunchPlan):
    """The plain server; its launch failure is not the MTP runtime's failure, so it is marked to pass on."""
    try:
        cm = launcher(spec)
        handle = cm.__enter__()
    except ServeError as exc:
        exc.plain_arm = True  # type: ignore[attr-defined]
        raise
    try:
        yield handle
    except BaseException as exc:
        if not cm.__exit__(type(exc), exc, exc.__traceback__):
            raise
    else:
        cm.__exit__(None, None, None)


def measure_matrix(
    cases: list[Case],
    method: Method,
    launcher: Launcher,
    mtp_spec: LaunchPlan,
    plain_spec: LaunchPlan,
    on_progress: Progress | None,
) -> Measured:
    """The full matrix: every case on the MTP server, then every case on a plain one."""
    with launcher(mtp_spec) as handle:
        speculative, probe, runtime = mtp_probe(handle, cases[0], method)
        got = Measured(runtime=runtime, speculative=speculative, probe=probe)
        if runtime.ok:
            for case in cases:
                got.mtp[case.key], got.counters[case.key] = measure_case(handle, case, method, on_progress, "mtp")
        got.log = handle.log_text()
    if runtime.ok:
        with plain_arm(launcher, plain_spec) as handle:
            got.plain = {case.key: measure_case(handle, case, method, on_progress, "plain")[0] for case in cases}
    return got


WARMUP_TOKENS = 32


def _harmonic(speeds: list[float]) -> float | None:
    positive = [x for x in speeds if x and x > 0]
    return statistics.harmonic_mean(positive) if positive else None


def measure_sequential(
    cases: list[Case],
    method: Method,
    launcher: Launcher,
    mtp_spec: LaunchPlan,
    plain_spec: LaunchPlan,
    *,
    exclusive: bool,
    clock: Callable[[], float],
    on_progress: Progress | None,
) -> Measured:
    """Alternate plain and MTP runs case by case until the speedup's interval clears 1.0 or the budget
    is spent: every request counts (probe, warm-ups, runs), and no pair starts that would overrun it.

    On a CPU build both servers stay up side by side: the weights are mmapped, so the page cache holds
    them once, and an idle server costs nothing. A GPU build copies the weights into device memory per
    process, so there (`exclusive`) one server runs at a time and each round is an MTP block then a plain
    block over the same cases, relaunching between blocks. A launch on RPC workers is exclusive too: a
    ggml-rpc-server serves one client at a time, so a second server would wait on it forever.
    """
    got: Measured | None = None
    ratios: list[float] = []
    spent = 0.0
    stopped: core.Stop | None = None
    totals: dict[str, float] = {}

    n_predict = first_n = method.n_predict

    def timed(handle: ServerHandle, case: Case) -> Sample:
        nonlocal spent
        t0 = clock()
        sample = core.sample_from_timings(
            handle.complete(
                core.PROMPTS[case.prompt], n_predict=n_predict, temperature=case.temperature, seed=method.seed
            )
        )
        spent += clock() - t0
        return sample

    def warm(handle: ServerHandle, count: int) -> float | None:
        """Short warm-ups, counted in the budget: they page the weights in and show the arm's speed."""
        nonlocal spent
        t0 = clock()
        tps = None
        for _ in range(count):
            tps = core.sample_from_timings(
                handle.complete(
                    core.PROMPTS[cases[0].prompt],
                    n_predict=min(method.n_predict, WARMUP_TOKENS),
                    temperature=0.0,
                    seed=method.seed,
                )
            ).tokens_per_s
        spent += clock() - t0
        return tps

    def add_counters(handle: ServerHandle, start: dict[str, float]) -> None:
        after = core.parse_spec_metrics(handle.metrics())
        for k, v in after.items():
            totals[k] = totals.get(k, 0.0) + v - start.get(k, 0.0)

    def check(pair_cost: float) -> core.Stop | None:
        return seq.sequential_stop(
            ratios, 1.0, min_pairs=method.runs, spent_s=spent, budget_s=method.budget_s, next_cost_s=pair_cost
        )

    def pair(case: Case, m: Sample, p: Sample) -> None:
        assert got is not None
        got.mtp.setdefault(case.key, []).append(m)
        got.plain.setdefault(case.key, []).append(p)
        ratios.append(m.tokens_per_s / p.tokens_per_s if p.tokens_per_s else 0.0)
        if on_progress:
            iv = seq.speedup_interval(ratios)
            span = f" ({iv.low:.2f}-{iv.high:.2f})" if iv and iv.low is not None else ""
            on_progress(
                f"pair {len(ratios)}: speedup {iv.speedup if iv else 0:.2f}x{span}, {spent:.0f} s of "
                f"{method.budget_s:g} s"
            )

    with ExitStack() as stack:
        mtp_h = stack.enter_context(launcher(mtp_spec))
        t0 = clock()
        speculative, probe, runtime = mtp_probe(mtp_h, cases[0], method)
        spent += clock() - t0
        got = Measured(runtime=runtime, speculative=speculative, probe=probe)
        if not runtime.ok:
            got.log = mtp_h.log_text()
            return got
        if exclusive:
            h: ServerHandle | None = mtp_h
            while stopped is None:
                round_start = spent
                with ExitStack() as arm:
                    if h is None:  # later rounds: relaunch, the plain block needed the memory
                        h = arm.enter_context(launcher(mtp_spec))
                    else:
                        arm.enter_context(stack.pop_all())  # the probe's server ends with this block
                    warm(h, method.warmups)
                    start = core.parse_spec_metrics(h.metrics())
                    block_m = [timed(h, c) for c in cases]
                    add_counters(h, start)
                    got.log = h.log_text()
                h = None
                with plain_arm(launcher, plain_spec) as ph:
                    warm(ph, method.warmups)
                    block_p = [timed(ph, c) for c in cases]
                for c, m, p in zip(cases, block_m, block_p):
                    pair(c, m, p)
                stopped = check(spent - round_start)
        else:
            plain_h = stack.enter_context(plain_arm(launcher, plain_spec))
            # the probe was the MTP server's first 32-token request: it is that arm's first warm-up
            mtp_tps = warm(mtp_h, method.warmups - 1) or probe.tokens_per_s
            plain_tps = warm(plain_h, method.warmups)
            mtp_seen = [x for x in (mtp_tps,) if x]
            plain_seen = [x for x in (plain_tps,) if x]
            n_predict = seq.run_tokens(method.n_predict, method.budget_s - spent, method.runs, mtp_tps, plain_tps)
            first_n = n_predict
            before = core.parse_spec_metrics(mtp_h.metrics())
            i = 0
            measuring_since = spent
            while stopped is None:
                case = cases[i % len(cases)]
                if (i + i // len(cases)) % 2 == 0:  # alternate which arm goes first, per case too
                    m = timed(mtp_h, case)
                    p = timed(plain_h, case)
                else:
                    p = timed(plain_h, case)
                    m = timed(mtp_h, case)
                pair(case, m, p)
                i += 1
                stopped = check((spent - measuring_since) / i)
                # prompts differ in speed (rejected drafts cost more on some): refit to the mean time per token
                # seen (the harmonic mean speed), not to the slowest run, which on a busy machine is a spike
                mtp_seen.append(m.tokens_per_s)
                plain_seen.append(p.tokens_per_s)
                n_predict = seq.run_tokens(
                    n_predict,
                    method.budget_s - spent,
                    max(method.runs - i, 2),
                    _harmonic(mtp_seen),
                    _harmonic(plain_seen),
                )
            add_counters(mtp_h, before)
            got.log = mtp_h.log_text()
    got.counters = {"all": totals}
    got.sequential = seq.Sequential(
        pairs=len(ratios),
        n_predict=first_n,
        n_predict_last=n_predict,
        stopped=stopped,
        generation_s=round(spent, 1),
        budget_s=method.budget_s,
        interval=seq.speedup_interval(ratios),
    )
    return got
