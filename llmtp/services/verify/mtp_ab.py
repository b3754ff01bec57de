"""`llmtp verify`: prove MTP is on and faster, step by step: the A/B of a launch plan's MTP arm against
the same plan with MTP off.

Server launches are injected (`Launcher`), so the steps run against fakes in tests; the real launcher
and the wiring from a request to the report live in services/verify/ab_plan.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from llmtp.core import verify as core
from llmtp.core.baseline import (
    Baseline,
    BaselineComparison,
    baseline_key,
    compare,
    last_ab_key,
    regression_reason,
)
from llmtp.core.capabilities import Capabilities
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import MtpSettings
from llmtp.core.launch_plan import LaunchPlan, argv_without_address
from llmtp.core.verify import Marker, Markers, Method, VerifyReport
from llmtp.core.weights_marker import weights_marker
from llmtp.errors import ServeError
from llmtp.services.verify.arms import Launcher, Progress, cases_of, measure_matrix, measure_sequential


@dataclass
class Target:
    """What is verified: one model on one build. Built by verify_plan.target_for, verify_live or tests."""

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


@dataclass
class VerifyOptions:
    """How a verify run compares and reports: the stored baseline, its tolerance, progress, the clock."""

    baseline_load: Callable[[str], Baseline | None] = lambda k: None
    baseline_save: Callable[[Baseline], object] = lambda b: None
    tolerance: float = 0.10
    update_baseline: bool = False
    on_progress: Progress | None = None
    clock: Callable[[], float] = time.monotonic


def mtp_arm(base: LaunchPlan, sidecar: Path | None = None) -> LaunchPlan:
    """The MTP arm: the plan itself when it serves with MTP; a plan that would not (--no-mtp, or `llmtp
    tune` found nothing faster) is measured with draft-mtp at the upstream defaults."""
    if base.mtp.enabled:
        return base
    return base.with_mtp(MtpSettings(enabled=True, draft_model=str(sidecar) if sidecar else None))


def verify(
    target: Target, method: Method, launcher: Launcher, *, base: LaunchPlan, options: VerifyOptions | None = None
) -> VerifyReport:
    """The A/B: the MTP arm is `base` (with MTP on, see mtp_arm), the plain arm the same plan with MTP off."""
    opts = options or VerifyOptions()
    mtp_plan = mtp_arm(base, target.sidecar)
    plain_plan = mtp_plan.plain()
    mtp, clock, on_progress = mtp_plan.mtp, opts.clock, opts.on_progress
    caps = target.caps
    build = core.build_marker(caps.mtp_dialect, caps.spec_types)
    gpu = core.gpu_marker(target.profile, target.gpu_devices, target.machine_gpus)
    model = model_marker(target)
    skipped = Marker(ok=None, detail="not run: an earlier step failed")
    report_args = dict(
        model=str(target.model_path),
        model_key=target.model_key,
        build_id=target.build_id,
        profile=target.profile,
        gpu=target.gpu_name,
        method=method,
        mtp=mtp.model_dump(mode="json"),
        arms={name: list(p.argv) for name, p in (("mtp", mtp_plan), ("plain", plain_plan)) if p.argv},
    )
    build_has_gpu = None if target.gpu_devices is None else bool(target.gpu_devices)
    warnings = core.warnings_for(
        temperatures=method.temperatures,
        parallel=mtp_plan.spec.parallel or 1,
        mtp_enabled=True,
        kv_buffers=None,
        build_has_gpu=build_has_gpu,
        machine_gpus=target.machine_gpus,
    )

    def finish(markers: Markers, **extra) -> VerifyReport:
        verdict = core.decide(markers, extra.get("speedup"), regression_reason(extra.pop("_cmp", None)))
        return VerifyReport(**report_args, markers=markers, warnings=warnings, verdict=verdict, **extra)

    if build.ok is False or model.ok is False or gpu.ok is False:
        return finish(Markers(build=build, gpu=gpu, model=model, runtime=skipped))
    # a GPU build, or a plan that offloads layers to a local GPU (over RPC, -ngl sends them to the workers)
    expect_gpu = target.profile in GPU_PROFILES or (_offloads(base.spec.n_gpu_layers) and not base.spec.rpc)

    cases = cases_of(method)
    try:
        if method.sequential:
            got = measure_sequential(
                cases,
                method,
                launcher,
                mtp_plan,
                plain_plan,
                exclusive=bool(target.gpu_devices) or bool(base.spec.rpc),
                clock=clock,
                on_progress=on_progress,
            )
        else:
            got = measure_matrix(cases, method, launcher, mtp_plan, plain_plan, on_progress)
    except ServeError as exc:
        if getattr(exc, "plain_arm", False):
            raise
        runtime = Marker(ok=False, detail=f"server with MTP failed to start: {exc.message}")
        return finish(Markers(build=build, gpu=gpu, model=model, runtime=runtime))
    warnings += core.warnings_for(
        temperatures=[],
        parallel=1,
        mtp_enabled=False,
        kv_buffers=core.parse_kv_buffers(got.log),
        build_has_gpu=build_has_gpu,
        machine_gpus=0,
    )
    if expect_gpu or gpu.ok is True:  # evidence from the load log: where the weights really are
        gpu = weights_marker(got.log, expect_gpu=expect_gpu, listed=target.gpu_devices)
    if not got.runtime.ok or gpu.ok is False:
        return finish(Markers(build=build, gpu=gpu, model=model, runtime=got.runtime))
    mtp_samples, plain_samples, counters = got.mtp, got.plain, got.counters
    all_mtp = [s for v in mtp_samples.values() for s in v]
    runtime = core.runtime_marker(got.speculative, [got.probe, *all_mtp])
    cases = [c for c in cases if mtp_samples.get(c.key) and plain_samples.get(c.key)]

    reports = [
        core.analyze_case(c, plain_samples[c.key], mtp_samples[c.key], counters.get(c.key), n_max=mtp.n_max)
        for c in cases
    ]
    total = {k: sum(c.get(k, 0.0) for c in counters.values()) for k in ("accepted_tokens", "drafts", "draft_tokens")}
    mtp_tps = core.geomean([r.mtp.median if r.mtp else None for r in reports])
    plain_tps = core.geomean([r.plain.median if r.plain else None for r in reports])
    speedup = core.geomean([r.speedup for r in reports])
    low = [r.speedup_low for r in reports if r.speedup_low is not None]
    seq = got.sequential
    if seq is not None:  # the paired estimate decides: it is what the interval was computed on
        speedup = seq.interval.speedup if seq.interval else None
        if seq.stopped == "budget":
            warnings.append(
                f"the {seq.budget_s:g} s budget ran out before the speedup's interval cleared "
                f"1.00x ({seq.pairs} pairs): measure again with a larger --budget or --thorough"
            )
    elif speedup is not None and speedup > 1.0 and low and min(low) < 1.0:
        warnings.append("the speedup is within the run-to-run spread: measure again with --thorough")
    noisy = [r.case.key for r in reports for st in (r.plain, r.mtp) if st and st.min and st.max / st.min > 1.5]
    if noisy:
        warnings.append(
            f"runs varied by more than 1.5x ({', '.join(dict.fromkeys(noisy))}): the machine was busy; "
            "measure again when it is idle"
        )
    bytes_per_token = target.info.file_size_bytes if target.info and not target.info.expert_count else None

    key = baseline_key(target.model_key, target.profile, target.gpu_name)
    stored = opts.baseline_load(key)
    mtp_medians = {r.case.key: r.mtp.median for r in reports if r.mtp}
    n_predict = seq.n_predict if seq and seq.n_predict else method.n_predict
    cmp: BaselineComparison | None = compare(stored, mtp_medians, n_predict, opts.tolerance) if stored else None
    acc = core.acceptance(all_mtp)
    per_step = total["draft_tokens"] / total["drafts"] if total["drafts"] and total["draft_tokens"] else None
    break_even = core.break_even_acceptance(speedup, acc, per_step or float(mtp.n_max))
    markers = Markers(build=build, gpu=gpu, model=model, runtime=runtime)
    report = finish(
        markers,
        cases=reports,
        speedup=speedup,
        mtp_tokens_per_s=mtp_tps,
        plain_tokens_per_s=plain_tps,
        acceptance=acc,
        break_even_acceptance=break_even,
        mean_accepted_length=core.mean_accepted_length(total["accepted_tokens"], total["drafts"]),
        roofline_plain_pct=core.roofline_pct(plain_tps, bytes_per_token, target.bandwidth_gbps),
        roofline_mtp_pct=core.roofline_pct(mtp_tps, bytes_per_token, target.bandwidth_gbps),
        baseline=cmp.model_dump(mode="json") if cmp else None,
        sequential=seq,
        _cmp=cmp,
    )
    measured = Baseline(
        key=key,
        model_key=target.model_key,
        profile=target.profile,
        gpu=target.gpu_name,
        build_id=target.build_id,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        n_predict=n_predict,
        mtp_tokens_per_s=mtp_medians,
        plain_tokens_per_s={r.case.key: r.plain.median for r in reports if r.plain},
        speedup=speedup,
        break_even_acceptance=break_even,
        argv=argv_without_address(mtp_plan.argv or ()),
        verdict=int(report.verdict.code),
    )
    if speedup is not None:  # whatever the verdict: the live check (verify --port) judges against this A/B
        opts.baseline_save(measured.model_copy(update={"key": last_ab_key(key)}))
    if report.verdict.code == core.VerdictCode.PASS and (stored is None or opts.update_baseline):
        opts.baseline_save(measured)
        report.warnings.append("baseline stored" if stored is None else "baseline replaced")
    return report


GPU_PROFILES = ("cuda", "rocm", "vulkan", "metal")


def _offloads(n_gpu_layers) -> bool:  # noqa: ANN001 - int | "auto" | "all" | None
    """Whether the plan asks llama-server to put layers on a GPU (then the weights must be there)."""
    return n_gpu_layers in ("all", "auto") or (isinstance(n_gpu_layers, int) and n_gpu_layers > 0)
