"""`llmtp tune`: a short measured sweep of the MTP settings; the fastest is stored for `serve`.

One server launch per configuration (draft settings are launch flags). A configuration that fails to
launch is recorded and skipped; plain decoding is always measured first as the reference. The stages
run on the suite's selection half; plain, the finalists and plain again then run on the held-out half
(the reference is the mean of the two plain runs), and the held-out figure decides and is stored.
"""

from __future__ import annotations

from collections.abc import Callable

from llmtp.adapters import shipped
from llmtp.core import tune as core
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.verify import Method, Sample, acceptance, parse_spec_metrics, sample_from_timings, summarize
from llmtp.errors import LlmtpError
from llmtp.services.verify import Target, model_marker
from llmtp.services.verify_arms import Launcher

TrialCallback = Callable[[core.Trial, int, int], None]  # trial, index (1-based), planned total


def load_suite() -> core.Suite:
    """The shipped prompt suite (llmtp/data/prompts.toml)."""
    import tomllib

    text = shipped.data_text("prompts.toml")
    return core.parse_suite(tomllib.loads(text))


def tune_method(n_predict: int = 128, warmups: int = 1, runs: int = 2) -> Method:
    """Short on purpose: greedy decoding, every prompt of a half; enough to rank, not a benchmark."""
    return Method(n_predict=n_predict, warmups=warmups, runs=runs, temperatures=[0.0])


def _measure(launcher: Launcher, spec: LaunchSpec, prompts: list[core.Prompt], method: Method) -> core.Trial:
    """One launch: warm-ups, then `runs` greedy completions of every prompt. A configuration that fails to
    launch or run is recorded (error) and skipped: one bad configuration must not end the sweep."""
    samples: dict[str, list[Sample]] = {}
    delta: dict[str, float] = {}
    error = None
    try:
        with launcher(spec) as handle:
            for _ in range(method.warmups):
                handle.complete(prompts[0].render(), n_predict=method.n_predict, temperature=0.0, seed=method.seed)
            before = parse_spec_metrics(handle.metrics())
            for prompt in prompts:
                text = prompt.render()
                for _ in range(method.runs):
                    samples.setdefault(prompt.name, []).append(sample_from_timings(handle.complete(
                        text, n_predict=method.n_predict, temperature=0.0, seed=method.seed)))
            after = parse_spec_metrics(handle.metrics())
            delta = {k: after[k] - before.get(k, 0.0) for k in after}
    except LlmtpError as exc:
        samples, error = {}, exc.message
    every = [s for v in samples.values() for s in v]
    per_step = delta["draft_tokens"] / delta["drafts"] if delta.get("drafts") and "draft_tokens" in delta else None
    return core.Trial(mtp=spec.mtp, label=core.label(spec.mtp), tokens_per_s=summarize([s.tokens_per_s for s in every]),
                      per_prompt={k: st for k, v in samples.items()
                                  if (st := summarize([s.tokens_per_s for s in v])) is not None},
                      acceptance=acceptance(every), draft_tokens_per_step=per_step, error=error)


def _off(reason: str) -> core.TuneDecision:
    return core.TuneDecision(chosen=MtpSettings(enabled=False), label="plain", plain_tokens_per_s=None,
                             chosen_tokens_per_s=None, speedup=None, reason=reason)


def tune(target: Target, launcher: Launcher, *, base_spec: LaunchSpec, method: Method | None = None,
         min_gain: float = core.DEFAULT_MIN_GAIN, noise_band: float = core.DEFAULT_NOISE_BAND,
         suite: core.Suite | None = None, on_trial: TrialCallback | None = None) -> core.TuneDecision:
    method = method or tune_method()
    suite = suite or load_suite()
    off = MtpSettings(enabled=False)
    if target.caps.mtp_dialect is None:
        return _off("this build offers no draft-mtp: MTP off")
    marker = model_marker(target)
    if marker.ok is False:
        return _off(f"model has no MTP heads ({marker.detail}): MTP off")
    base_spec = base_spec.model_copy(update={"parallel": base_spec.parallel or 1})
    upstream = target.caps.mtp_dialect == "upstream"
    select, heldout = suite.half("select"), suite.half("heldout")
    # Planned total for the progress bar: plain + n-max stage + p-min stage + stacked + held-out (plain, best, plain).
    total = 1 + len(core.N_MAX_RANGE) + (len(core.P_MIN_VALUES) + 1 if upstream else 0) + 3
    done = 0

    def run(mtp: MtpSettings, prompts: list[core.Prompt], plain: core.Trial | None = None) -> core.Trial:
        nonlocal done
        trial = _measure(launcher, base_spec.model_copy(update={"mtp": mtp}), prompts, method)
        if plain is not None:
            trial.speedup = core.speedup_against(trial, plain)
        done += 1
        if on_trial:
            on_trial(trial, done, max(total, done))
        return trial

    plain = run(off, select)
    if plain.tokens_per_s is None:
        raise LlmtpError(f"plain decoding could not be measured: {plain.error}",
                         "Check the model with `llmtp serve` and its log.")
    base_mtp = MtpSettings(enabled=True, draft_model=str(target.sidecar) if target.sidecar else None)
    trials = [run(m, select, plain) for m in core.stage_n_max(base_mtp)]
    if upstream:
        best = core.best_trial(trials)
        if best is not None:
            trials += [run(m, select, plain) for m in core.stage_p_min(best.mtp)]
            best = core.best_trial(trials) or best
            trials += [run(m, select, plain) for m in core.stage_stack(best.mtp, target.caps.spec_types)]
    best = core.best_trial(trials)
    plain_held: core.Trial | None = None
    held: list[core.Trial] = []
    drift = None
    if best is not None and best.speedup is not None and best.speedup >= 1.0 + min_gain:
        finalists = core.finalists(trials)
        total += len(finalists) - 1
        # plain before and after the finalists: the reference is their mean, so drift moves both sides
        before = run(off, heldout)
        held = [run(f.mtp, heldout, before) for f in finalists]  # progress shows it against `before`
        plain_held, drift = core.bracket(before, run(off, heldout))
        for trial in held:
            trial.speedup = core.speedup_against(trial, plain_held)
    return core.decide(plain_held, [plain, *trials], held, min_gain, noise_band, drift)


def run_tune(settings, model_ref: str | None, method: Method | None = None, *,
             min_gain: float = core.DEFAULT_MIN_GAIN, noise_band: float = core.DEFAULT_NOISE_BAND,
             threads: int | None = None, save: bool = True,
             on_trial: TrialCallback | None = None) -> tuple[core.TuneDecision, Target]:
    """Sweep on the current build and store the choice (or MTP off, with the reason) for `serve`."""
    from pathlib import Path

    from llmtp.services import model_settings
    from llmtp.services.verify import base_spec_for, gather_target, real_launcher

    target, build = gather_target(settings, model_ref)
    launcher = real_launcher(build.server, target.caps, Path(settings.state_dir) / "tune")
    decision = tune(target, launcher, base_spec=base_spec_for(target, settings, threads=threads), method=method,
                    min_gain=min_gain, noise_band=noise_band, on_trial=on_trial)
    if save:
        model_settings.save(settings, target.model_key, decision.chosen, reason=decision.reason,
                            build_id=target.build_id, speedup=decision.speedup, acceptance=decision.acceptance,
                            break_even_acceptance=decision.break_even_acceptance,
                            plain_tokens_per_s=decision.plain_tokens_per_s)
    return decision, target
