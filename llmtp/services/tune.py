"""`llmtp tune`: a short measured sweep of the MTP settings; the fastest is stored for `serve`.

One server launch per configuration (draft settings are launch flags). A configuration that fails to
launch is recorded and skipped; plain decoding is always measured first as the reference.
"""

from __future__ import annotations

from collections.abc import Callable

from llmtp.core import tune as core
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.verify import Method, Sample, acceptance, summarize
from llmtp.errors import LlmtpError
from llmtp.services.verify import Launcher, Target, cases_of, measure_case, model_marker

TrialCallback = Callable[[core.Trial, int, int], None]  # trial, index (1-based), planned total


def tune_method(n_predict: int = 256, warmups: int = 1, runs: int = 3) -> Method:
    """Short on purpose: greedy decoding on both prompts; enough to rank, not a benchmark."""
    return Method(n_predict=n_predict, warmups=warmups, runs=runs, temperatures=[0.0])


def _measure(launcher: Launcher, spec: LaunchSpec, method: Method) -> tuple[list[Sample], str | None]:
    samples: list[Sample] = []
    try:
        with launcher(spec) as handle:
            for case in cases_of(method):
                got, _ = measure_case(handle, case, method)
                samples += got
    except LlmtpError as exc:  # one bad configuration must not end the sweep
        return [], exc.message
    return samples, None


def _trial(mtp: MtpSettings, samples: list[Sample], error: str | None) -> core.Trial:
    return core.Trial(mtp=mtp, label=core.label(mtp), tokens_per_s=summarize([s.tokens_per_s for s in samples]),
                      acceptance=acceptance(samples), error=error)


def tune(target: Target, launcher: Launcher, *, base_spec: LaunchSpec, method: Method | None = None,
         min_gain: float = core.DEFAULT_MIN_GAIN, on_trial: TrialCallback | None = None) -> core.TuneDecision:
    method = method or tune_method()
    off = MtpSettings(enabled=False)
    if target.caps.mtp_dialect is None:
        return core.TuneDecision(chosen=off, label="plain", plain_tokens_per_s=None, chosen_tokens_per_s=None,
                                 speedup=None, reason="this build offers no draft-mtp: MTP off")
    marker = model_marker(target)
    if marker.ok is False:
        return core.TuneDecision(chosen=off, label="plain", plain_tokens_per_s=None, chosen_tokens_per_s=None,
                                 speedup=None, reason=f"model has no MTP heads ({marker.detail}): MTP off")
    base_spec = base_spec.model_copy(update={"parallel": base_spec.parallel or 1})
    upstream = target.caps.mtp_dialect == "upstream"
    # Planned total for the progress bar: plain + n-max stage + p-min stage + stacked.
    total = 1 + len(core.N_MAX_RANGE) + (len(core.P_MIN_VALUES) + 1 if upstream else 0)
    done = 0

    def run(mtp: MtpSettings) -> core.Trial:
        nonlocal done
        samples, error = _measure(launcher, base_spec.model_copy(update={"mtp": mtp}), method)
        trial = _trial(mtp, samples, error)
        done += 1
        if on_trial:
            on_trial(trial, done, total)
        return trial

    plain = run(off)
    if plain.tokens_per_s is None:
        raise LlmtpError(f"plain decoding could not be measured: {plain.error}",
                         "Check the model with `llmtp serve` and its log.")
    base_mtp = MtpSettings(enabled=True, draft_model=str(target.sidecar) if target.sidecar else None)
    trials = [run(m) for m in core.stage_n_max(base_mtp)]
    if upstream:
        best = core.best_trial(trials)
        if best is not None:
            trials += [run(m) for m in core.stage_p_min(best.mtp)]
            best = core.best_trial(trials)
            trials += [run(m) for m in core.stage_stack(best.mtp, target.caps.spec_types)]  # type: ignore[union-attr]
    return core.decide(plain.tokens_per_s, [plain, *trials], min_gain)


def run_tune(settings, model_ref: str | None, method: Method | None = None, *,
             min_gain: float = core.DEFAULT_MIN_GAIN, threads: int | None = None, save: bool = True,
             on_trial: TrialCallback | None = None) -> tuple[core.TuneDecision, Target]:
    """Sweep on the current build and store the choice (or MTP off, with the reason) for `serve`."""
    from pathlib import Path

    from llmtp.services import model_settings
    from llmtp.services.verify import base_spec_for, gather_target, real_launcher

    target, build = gather_target(settings, model_ref)
    launcher = real_launcher(build.server, target.caps, Path(settings.state_dir) / "tune")
    decision = tune(target, launcher, base_spec=base_spec_for(target, settings, threads=threads), method=method,
                    min_gain=min_gain, on_trial=on_trial)
    if save:
        best = core.best_trial(decision.trials)  # the planner predicts MTP's gain from this acceptance
        model_settings.save(settings, target.model_key, decision.chosen, reason=decision.reason,
                            build_id=target.build_id, acceptance=best.acceptance if best else None)
    return decision, target
