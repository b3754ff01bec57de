"""`llmtp verify`: prove MTP is on and faster, step by step, on the current build.

Server launches are injected (`Launcher`), so the steps run against fakes in tests; the real launcher
(`real_launcher` below) wraps the serve helper's `launched()` and the HTTP client.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from llmtp.adapters import files
from llmtp.core import verify as core
from llmtp.core.baseline import Baseline, BaselineComparison, baseline_key, compare, regression_reason
from llmtp.core.capabilities import Capabilities
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.tune import break_even_acceptance
from llmtp.core.verify import Marker, Markers, Method, VerifyReport
from llmtp.errors import ServeError
from llmtp.services.verify_arms import Launcher, Progress, cases_of, measure_matrix, measure_plain, measure_sequential


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
            got = measure_sequential(cases, method, launcher, mtp_spec, plain_spec,
                                      exclusive=bool(target.gpu_devices) or bool(base_spec.rpc), clock=clock,
                                      on_progress=on_progress)
        else:
            got = measure_matrix(cases, method, launcher, mtp_spec, plain_spec, on_progress)
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
        files.remove(log_path)
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
    from llmtp.services.models import resolve_model

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
               build=None, on_progress: Progress | None = None, rpc: str | None = None) -> VerifyReport:
    """`rpc`: HOST:PORT,... workers every launch (plain and MTP) spreads the model over, RPC devices first."""
    from llmtp.services import baseline as store
    from llmtp.services import model_settings

    target, build = gather_target(settings, model_ref, build=build)
    base = base_spec_for(target, settings, parallel=parallel, threads=threads)
    if rpc:
        from llmtp.core.rpc import parse_endpoints
        from llmtp.services.rpc import require_workers, split_launch

        endpoints = parse_endpoints(rpc)
        require_workers(endpoints)
        split_launch(settings, build.server, base, endpoints)
    tuned = model_settings.load(settings, target.model_key)
    mtp = tuned if tuned is not None and tuned.enabled else MtpSettings(
        draft_model=str(target.sidecar) if target.sidecar else None)
    launcher = real_launcher(build.server, target.caps, Path(settings.state_dir) / "verify")
    return verify(target, method, launcher, base_spec=base, mtp=mtp, baseline_load=lambda k: store.load(settings, k),
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
