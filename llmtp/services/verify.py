"""`llmtp verify`: prove MTP is on and faster, step by step, on the current build.

Server launches are injected (`Launcher`), so the steps run against fakes in tests; the real launcher
(`real_launcher` below) wraps the serve helper's `launched()` and the HTTP client.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from llmtp.core import verify as core
from llmtp.core.baseline import Baseline, BaselineComparison, baseline_key, compare, regression_reason
from llmtp.core.capabilities import Capabilities
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.tune import break_even_acceptance
from llmtp.core.verify import Case, Marker, Markers, Method, Sample, VerifyReport
from llmtp.errors import ServeError


class ServerHandle(Protocol):
    """A ready llama-server, as verify and tune use it."""

    def slots(self) -> list[dict]: ...

    def metrics(self) -> str | None: ...  # Prometheus text; None without --metrics

    def complete(self, prompt: str, *, n_predict: int, temperature: float, seed: int) -> dict: ...  # timings

    def log_text(self) -> str: ...


Launcher = Callable[[LaunchSpec], AbstractContextManager[ServerHandle]]
Progress = Callable[[str], None]


@dataclass
class Target:
    """What is verified: one model on one build. Built by `gather_target` or by tests."""

    model_path: Path
    model_key: str
    info: ModelInfo | None
    caps: Capabilities
    build_id: str | None = None
    profile: str | None = None
    sidecar: Path | None = None
    sidecar_error: str | None = None  # None: loads (or no sidecar)
    machine_gpus: int = 0
    bandwidth_gbps: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def gpu_devices(self) -> list[str] | None:
        if self.caps.devices is None:
            return None
        return [d.id for d in self.caps.devices if d.backend.upper() not in {"CPU", "BLAS"}]

    @property
    def gpu_name(self) -> str | None:
        devs = [d for d in self.caps.devices or [] if d.backend.upper() not in {"CPU", "BLAS"}]
        return devs[0].name if devs else None


def model_marker(target: Target) -> Marker:
    info = target.info
    if target.sidecar is not None:
        if target.sidecar_error:
            return Marker(ok=False, detail=f"MTP sidecar {target.sidecar.name} does not load: {target.sidecar_error}")
        return Marker(ok=True, detail=f"MTP sidecar {target.sidecar.name} loads")
    if info is None:
        return Marker(ok=None, detail="model metadata unreadable")
    if info.has_mtp_heads:
        return Marker(ok=True, detail=f"nextn_predict_layers = {info.nextn_predict_layers}")
    why = "heads stripped from this file" if info.mtp_arch else f"architecture {info.arch} has no MTP graph"
    return Marker(ok=False, detail=f"nextn_predict_layers = 0: {why}")


def measure_case(handle: ServerHandle, case: Case, method: Method, on_progress: Progress | None = None,
                 label: str = "") -> tuple[list[Sample], dict[str, float]]:
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
        timings = handle.complete(prompt, n_predict=method.n_predict, temperature=case.temperature,
                                  seed=method.seed)
        samples.append(core.sample_from_timings(timings))
    after = core.parse_spec_metrics(handle.metrics())
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    return samples, delta


def cases_of(method: Method) -> list[Case]:
    return [Case(prompt=p, temperature=t) for t in method.temperatures for p in method.prompts]


def measure_plain(cases, method: Method, launcher: Launcher, base_spec: LaunchSpec,
                  on_progress: Progress | None = None) -> dict[str, list[Sample]]:
    """The plain arm: every case on one server launched without any speculation."""
    with launcher(base_spec.model_copy(update={"mtp": MtpSettings(enabled=False)})) as handle:
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
    sequential: core.Sequential | None = None


def _probe(handle: ServerHandle, case: Case, method: Method) -> tuple[list[bool], Sample, Marker]:
    """Fail fast: the slots and one short completion show whether drafts happen at all."""
    speculative = [bool(s.get("speculative")) for s in handle.slots()]
    probe = core.sample_from_timings(handle.complete(
        core.PROMPTS[case.prompt], n_predict=min(method.n_predict, 32), temperature=0.0, seed=method.seed))
    return speculative, probe, core.runtime_marker(speculative, [probe])


@contextmanager
def _plain_arm(launcher: Launcher, spec: LaunchSpec):
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


def _measure_matrix(cases: list[Case], method: Method, launcher: Launcher, mtp_spec: LaunchSpec,
                    plain_spec: LaunchSpec, on_progress: Progress | None) -> Measured:
    """The full matrix: every case on the MTP server, then every case on a plain one."""
    with launcher(mtp_spec) as handle:
        speculative, probe, runtime = _probe(handle, cases[0], method)
        got = Measured(runtime=runtime, speculative=speculative, probe=probe)
        if runtime.ok:
            for case in cases:
                got.mtp[case.key], got.counters[case.key] = measure_case(handle, case, method, on_progress, "mtp")
        got.log = handle.log_text()
    if runtime.ok:
        with _plain_arm(launcher, plain_spec) as handle:
            got.plain = {case.key: measure_case(handle, case, method, on_progress, "plain")[0] for case in cases}
    return got


WARMUP_TOKENS = 32


def _harmonic(speeds: list[float]) -> float | None:
    positive = [x for x in speeds if x and x > 0]
    return statistics.harmonic_mean(positive) if positive else None


def _measure_sequential(cases: list[Case], method: Method, launcher: Launcher, mtp_spec: LaunchSpec,
                        plain_spec: LaunchSpec, *, exclusive: bool, clock: Callable[[], float],
                        on_progress: Progress | None) -> Measured:
    """Alternate plain and MTP runs case by case until the speedup's interval clears 1.0 or the budget
    is spent: every request counts (probe, warm-ups, runs), and no pair starts that would overrun it.

    On a CPU build both servers stay up side by side: the weights are mmapped, so the page cache holds
    them once, and an idle server costs nothing. A GPU build copies the weights into device memory per
    process, so there (`exclusive`) one server runs at a time and each round is an MTP block then a plain
    block over the same cases, relaunching between blocks.
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
        sample = core.sample_from_timings(handle.complete(core.PROMPTS[case.prompt], n_predict=n_predict,
                                                          temperature=case.temperature, seed=method.seed))
        spent += clock() - t0
        return sample

    def warm(handle: ServerHandle, count: int) -> float | None:
        """Short warm-ups, counted in the budget: they page the weights in and show the arm's speed."""
        nonlocal spent
        t0 = clock()
        tps = None
        for _ in range(count):
            tps = core.sample_from_timings(handle.complete(
                core.PROMPTS[cases[0].prompt], n_predict=min(method.n_predict, WARMUP_TOKENS), temperature=0.0,
                seed=method.seed)).tokens_per_s
        spent += clock() - t0
        return tps

    def add_counters(handle: ServerHandle, start: dict[str, float]) -> None:
        after = core.parse_spec_metrics(handle.metrics())
        for k, v in after.items():
            totals[k] = totals.get(k, 0.0) + v - start.get(k, 0.0)

    def check(pair_cost: float) -> core.Stop | None:
        return core.sequential_stop(ratios, 1.0, min_pairs=method.runs, spent_s=spent, budget_s=method.budget_s,
                                    next_cost_s=pair_cost)

    def pair(case: Case, m: Sample, p: Sample) -> None:
        assert got is not None
        got.mtp.setdefault(case.key, []).append(m)
        got.plain.setdefault(case.key, []).append(p)
        ratios.append(m.tokens_per_s / p.tokens_per_s if p.tokens_per_s else 0.0)
        if on_progress:
            iv = core.speedup_interval(ratios)
            span = f" ({iv.low:.2f}-{iv.high:.2f})" if iv and iv.low is not None else ""
            on_progress(f"pair {len(ratios)}: speedup {iv.speedup if iv else 0:.2f}x{span}, {spent:.0f} s of "
                        f"{method.budget_s:g} s")

    with ExitStack() as stack:
        mtp_h = stack.enter_context(launcher(mtp_spec))
        t0 = clock()
        speculative, probe, runtime = _probe(mtp_h, cases[0], method)
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
                with _plain_arm(launcher, plain_spec) as ph:
                    warm(ph, method.warmups)
                    block_p = [timed(ph, c) for c in cases]
                for c, m, p in zip(cases, block_m, block_p):
                    pair(c, m, p)
                stopped = check(spent - round_start)
        else:
            plain_h = stack.enter_context(_plain_arm(launcher, plain_spec))
            # the probe was the MTP server's first 32-token request: it is that arm's first warm-up
            mtp_tps = warm(mtp_h, method.warmups - 1) or probe.tokens_per_s
            plain_tps = warm(plain_h, method.warmups)
            mtp_seen = [x for x in (mtp_tps,) if x]
            plain_seen = [x for x in (plain_tps,) if x]
            n_predict = core.run_tokens(method.n_predict, method.budget_s - spent, method.runs, mtp_tps, plain_tps)
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
                n_predict = core.run_tokens(n_predict, method.budget_s - spent, max(method.runs - i, 2),
                                            _harmonic(mtp_seen), _harmonic(plain_seen))
            add_counters(mtp_h, before)
            got.log = mtp_h.log_text()
    got.counters = {"all": totals}
    got.sequential = core.Sequential(pairs=len(ratios), n_predict=first_n, n_predict_last=n_predict, stopped=stopped,
                                     generation_s=round(spent, 1),
                                     budget_s=method.budget_s, interval=core.speedup_interval(ratios))
    return got


def verify(target: Target, method: Method, launcher: Launcher, *, base_spec: LaunchSpec,
           mtp: MtpSettings | None = None, baseline_load: Callable[[str], Baseline | None] = lambda k: None,
           baseline_save: Callable[[Baseline], object] = lambda b: None, tolerance: float = 0.10,
           update_baseline: bool = False, on_progress: Progress | None = None,
           clock: Callable[[], float] = time.monotonic) -> VerifyReport:
    mtp = (mtp or MtpSettings()).model_copy(update={"enabled": True})
    caps = target.caps
    # Verify measures the fast path: one slot, unless the caller asked for more (then it warns).
    base_spec = base_spec.model_copy(update={"parallel": base_spec.parallel or 1})
    build = core.build_marker(caps.mtp_dialect, caps.spec_types)
    gpu = core.gpu_marker(target.profile, target.gpu_devices, target.machine_gpus)
    model = model_marker(target)
    skipped = Marker(ok=None, detail="not run: an earlier step failed")
    report_args = dict(model=str(target.model_path), model_key=target.model_key, build_id=target.build_id,
                       profile=target.profile, gpu=target.gpu_name, method=method,
                       mtp=mtp.model_dump(mode="json"))
    build_has_gpu = None if target.gpu_devices is None else bool(target.gpu_devices)
    warnings = core.warnings_for(temperatures=method.temperatures, parallel=base_spec.parallel,
                                 mtp_enabled=True, kv_buffers=None, build_has_gpu=build_has_gpu,
                                 machine_gpus=target.machine_gpus)

    def finish(markers: Markers, **extra) -> VerifyReport:
        verdict = core.decide(markers, extra.get("speedup"), regression_reason(extra.pop("_cmp", None)))
        return VerifyReport(**report_args, markers=markers, warnings=warnings, verdict=verdict, **extra)

    if build.ok is False or model.ok is False:
        return finish(Markers(build=build, gpu=gpu, model=model, runtime=skipped))

    cases = cases_of(method)
    mtp_spec = base_spec.model_copy(update={"mtp": mtp})
    plain_spec = base_spec.model_copy(update={"mtp": MtpSettings(enabled=False)})
    try:
        if method.sequential:
            got = _measure_sequential(cases, method, launcher, mtp_spec, plain_spec,
                                      exclusive=bool(target.gpu_devices), clock=clock, on_progress=on_progress)
        else:
            got = _measure_matrix(cases, method, launcher, mtp_spec, plain_spec, on_progress)
    except ServeError as exc:
        if getattr(exc, "plain_arm", False):
            raise
        runtime = Marker(ok=False, detail=f"server with MTP failed to start: {exc.message}")
        return finish(Markers(build=build, gpu=gpu, model=model, runtime=runtime))
    warnings += core.warnings_for(temperatures=[], parallel=1, mtp_enabled=False,
                                  kv_buffers=core.parse_kv_buffers(got.log), build_has_gpu=build_has_gpu,
                                  machine_gpus=0)
    if not got.runtime.ok:
        return finish(Markers(build=build, gpu=gpu, model=model, runtime=got.runtime))
    mtp_samples, plain_samples, counters = got.mtp, got.plain, got.counters
    all_mtp = [s for v in mtp_samples.values() for s in v]
    runtime = core.runtime_marker(got.speculative, [got.probe, *all_mtp])
    cases = [c for c in cases if mtp_samples.get(c.key) and plain_samples.get(c.key)]

    reports = [core.analyze_case(c, plain_samples[c.key], mtp_samples[c.key], counters.get(c.key))
               for c in cases]
    total = {k: sum(c.get(k, 0.0) for c in counters.values()) for k in ("accepted_tokens", "drafts", "draft_tokens")}
    mtp_tps = core.geomean([r.mtp.median if r.mtp else None for r in reports])
    plain_tps = core.geomean([r.plain.median if r.plain else None for r in reports])
    speedup = core.geomean([r.speedup for r in reports])
    low = [r.speedup_low for r in reports if r.speedup_low is not None]
    seq = got.sequential
    if seq is not None:  # the paired estimate decides: it is what the interval was computed on
        speedup = seq.interval.speedup if seq.interval else None
        if seq.stopped == "budget":
            warnings.append(f"the {seq.budget_s:g} s budget ran out before the speedup's interval cleared "
                            f"1.00x ({seq.pairs} pairs): measure again with a larger --budget or --thorough")
    elif speedup is not None and speedup > 1.0 and low and min(low) < 1.0:
        warnings.append("the speedup is within the run-to-run spread: measure again with --thorough")
    noisy = [r.case.key for r in reports for st in (r.plain, r.mtp) if st and st.min and st.max / st.min > 1.5]
    if noisy:
        warnings.append(f"runs varied by more than 1.5x ({', '.join(dict.fromkeys(noisy))}): the machine was busy; "
                        "measure again when it is idle")
    bytes_per_token = target.info.file_size_bytes if target.info and not target.info.expert_count else None

    key = baseline_key(target.model_key, target.profile, target.gpu_name)
    stored = baseline_load(key)
    mtp_medians = {r.case.key: r.mtp.median for r in reports if r.mtp}
    n_predict = seq.n_predict if seq and seq.n_predict else method.n_predict
    cmp: BaselineComparison | None = compare(stored, mtp_medians, n_predict, tolerance) if stored else None
    acc = core.acceptance(all_mtp)
    per_step = total["draft_tokens"] / total["drafts"] if total["drafts"] and total["draft_tokens"] else None
    break_even = break_even_acceptance(speedup, acc, per_step or float(mtp.n_max))
    markers = Markers(build=build, gpu=gpu, model=model, runtime=runtime)
    report = finish(
        markers, cases=reports, speedup=speedup, mtp_tokens_per_s=mtp_tps, plain_tokens_per_s=plain_tps,
        acceptance=acc, break_even_acceptance=break_even,
        mean_accepted_length=core.mean_accepted_length(total["accepted_tokens"], total["drafts"]),
        roofline_plain_pct=core.roofline_pct(plain_tps, bytes_per_token, target.bandwidth_gbps),
        roofline_mtp_pct=core.roofline_pct(mtp_tps, bytes_per_token, target.bandwidth_gbps),
        baseline=cmp.model_dump(mode="json") if cmp else None, sequential=seq, _cmp=cmp)
    if report.verdict.code == core.VerdictCode.PASS and (stored is None or update_baseline):
        baseline_save(Baseline(
            key=key, model_key=target.model_key, profile=target.profile, gpu=target.gpu_name,
            build_id=target.build_id, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            n_predict=n_predict, mtp_tokens_per_s=mtp_medians,
            plain_tokens_per_s={r.case.key: r.plain.median for r in reports if r.plain}, speedup=speedup,
            break_even_acceptance=break_even))
        report.warnings.append("baseline stored" if stored is None else "baseline replaced")
    return report


# -- the real launcher: the serve service's launched() plus the HTTP client --------------------------

class _LiveHandle:
    def __init__(self, proc, client):
        self._proc, self._client = proc, client

    def slots(self) -> list[dict]:
        return self._client.slots()

    def metrics(self) -> str | None:
        from llmtp.errors import NetworkError

        try:
            return self._client.metrics_text()
        except NetworkError:  # 501 without --metrics
            return None

    def complete(self, prompt: str, *, n_predict: int, temperature: float, seed: int) -> dict:
        # cache_prompt is off (LlamaClient's default) so every run pays the prompt: PP cost is measurable.
        return self._client.completion(prompt, n_predict=n_predict, temperature=temperature, seed=seed,
                                       timeout=600)["timings"]

    def log_text(self) -> str:
        return self._proc.log_tail()


def real_launcher(server: Path, caps: Capabilities, log_dir: Path, *, ready_timeout: float = 300) -> Launcher:
    """Launch on a free port each time; logs land in `log_dir` (verify-mtp.log, verify-plain.log)."""
    from contextlib import contextmanager

    from llmtp.adapters.ports import free_port
    from llmtp.services.serve import launched

    @contextmanager
    def launch(spec: LaunchSpec):
        spec = spec.model_copy(update={"port": free_port(spec.host)})
        name = "mtp" if spec.mtp.enabled else "plain"
        log_path = Path(log_dir) / f"verify-{name}.log"
        log_path.unlink(missing_ok=True)
        with launched(server, caps, spec, log_path=log_path, ready_timeout=ready_timeout) as proc:
            with proc.client(timeout=600) as client:
                yield _LiveHandle(proc, client)

    return launch


# -- wiring: what the CLI calls ---------------------------------------------------------------------

VERIFY_CTX = 8192  # prompts plus 2,000 generated tokens fit; the model's trained context could OOM


def resolve_model_path(ref: str | None, settings) -> tuple[Path, Path | None]:
    """(model path, MTP sidecar). A path is used as is; other refs go through the models service."""
    from llmtp.errors import UsageError

    ref = ref or settings.default_model
    if ref is None:
        raise UsageError("No model named and no default model set",
                         "Pass a GGUF path or alias, or set default_model in config.toml (`llmtp config show` "
                         "names the file) or LLMTP_DEFAULT_MODEL.")
    path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve(), None
    try:
        from llmtp.services.models import resolve_model
    except ImportError as exc:
        raise UsageError(f"No such model file: {ref}", "Pass the path of a .gguf file.") from exc
    resolved = resolve_model(ref, settings)
    if resolved.path is None:
        raise UsageError(f"Model {ref} is not downloaded yet", f"Fetch it first with `llmtp models pull {ref}`.")
    return Path(resolved.path), resolved.sidecar_path


def gather_target(settings, model_ref: str | None, *, build=None) -> tuple[Target, object]:
    """The current build (or `build`) and the model, read from disk. Returns (target, build)."""
    from llmtp.adapters.gguf_file import read_model_info
    from llmtp.errors import LlmtpError, UsageError
    from llmtp.services.builds import current_build
    from llmtp.services.model_settings import model_key

    build = build or current_build(settings)
    if build is None:
        raise UsageError("No current llama.cpp build", "Build one with `llmtp build`.")
    path, sidecar = resolve_model_path(model_ref, settings)
    info = read_model_info(path)
    sidecar_error = None
    if sidecar is not None:
        try:
            read_model_info(sidecar)
        except LlmtpError as exc:
            sidecar_error = exc.message
    gpus, bandwidth = _machine_gpus()
    target = Target(model_path=path, model_key=model_key(path), info=info, caps=build.manifest.capabilities,
                    build_id=build.id, profile=build.manifest.profile, sidecar=Path(sidecar) if sidecar else None,
                    sidecar_error=sidecar_error, machine_gpus=gpus, bandwidth_gbps=bandwidth)
    return target, build


def _machine_gpus() -> tuple[int, float | None]:
    """GPUs on this machine and the first one's stated bandwidth; detection failures mean 'none known'."""
    try:
        from llmtp.services.detect import detect_hardware

        hw = detect_hardware()
    except Exception:  # detection is advisory here: verify still measures without it
        return 0, None
    return len(hw.gpus), (hw.gpus[0].memory_bandwidth_gbps if hw.gpus else None)


def base_spec_for(target: Target, settings, mtp: MtpSettings | None = None, *,
                  parallel: int | None = None, threads: int | None = None) -> LaunchSpec:
    ctx = min(VERIFY_CTX, target.info.context_length or VERIFY_CTX) if target.info else VERIFY_CTX
    return LaunchSpec(model=str(target.model_path), host="127.0.0.1", port=0, ctx_size=ctx, parallel=parallel,
                      threads=threads, metrics=True, mtp=mtp or MtpSettings())


def run_verify(settings, model_ref: str | None, method: Method, *, tolerance: float = 0.10,
               update_baseline: bool = False, parallel: int | None = None, threads: int | None = None,
               build=None, on_progress: Progress | None = None) -> VerifyReport:
    from llmtp.services import baseline as store
    from llmtp.services import model_settings

    target, build = gather_target(settings, model_ref, build=build)
    tuned = model_settings.load(settings, target.model_key)
    mtp = tuned if tuned is not None and tuned.enabled else MtpSettings(
        draft_model=str(target.sidecar) if target.sidecar else None)
    launcher = real_launcher(build.server, target.caps, Path(settings.state_dir) / "verify")
    return verify(target, method, launcher, base_spec=base_spec_for(target, settings, parallel=parallel,
                                                                     threads=threads),
                  mtp=mtp, baseline_load=lambda k: store.load(settings, k),
                  baseline_save=lambda b: store.save(settings, b), tolerance=tolerance,
                  update_baseline=update_baseline, on_progress=on_progress)


def plain_tokens_per_s(settings, model_ref: str, method: Method, *, build=None) -> float | None:
    """Plain decode speed alone (geometric mean of the cases' medians), for a model verify stops
    early on (no MTP heads, or a build without MTP): its speed is still worth knowing."""
    target, build = gather_target(settings, model_ref, build=build)
    launcher = real_launcher(build.server, target.caps, Path(settings.state_dir) / "verify")
    samples = measure_plain(cases_of(method), method, launcher, base_spec_for(target, settings, parallel=1))
    return core.geomean([stats.median if (stats := core.summarize([s.tokens_per_s for s in v])) else None
                         for v in samples.values()])
