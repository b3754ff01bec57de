"""`llmtp tune`: a short measured sweep of the MTP settings; the fastest is stored for `serve`.

One server launch per configuration (draft settings are launch flags). A configuration that fails to
launch is recorded and skipped; plain decoding is always measured first as the reference. The stages
run on the suite's selection half; plain, the finalists and plain again then run on the held-out half
(the reference is the mean of the two plain runs), and the held-out figure decides and is stored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import tomllib

from llmtp.adapters import files, shipped
from llmtp.core import tune as core
from llmtp.core import tune_decision as verdict
from llmtp.core.launch import MtpSettings
from llmtp.core.launch_plan import LaunchPlan, LaunchRequest
from llmtp.core.verify import Method, Sample, acceptance, parse_spec_metrics, sample_from_timings, summarize
from llmtp.errors import LlmtpError, UsageError
from llmtp.services.stores import mtp_settings
from llmtp.services.verify.ab_plan import real_launcher, target_for, verify_plan
from llmtp.services.verify.arms import Launcher
from llmtp.services.verify.mtp_ab import Target, model_marker

TrialCallback = Callable[[core.Trial, int, int], None]  # trial, index (1-based), planned total


def load_suite() -> core.Suite:
    """The shipped prompt suite (llmtp/data/prompts.toml)."""

    text = shipped.data_text("prompts.toml")
    return core.parse_suite(tomllib.loads(text))


def tune_method(n_predict: int = 128, warmups: int = 1, runs: int = 2) -> Method:
    """Short on purpose: greedy decoding, every prompt of a half; enough to rank, not a benchmark."""
    return Method(n_predict=n_predict, warmups=warmups, runs=runs, temperatures=[0.0])


# The warm-up's text: none of the suite's prompts, so an n-gram drafter has not seen what is measured.
WARMUP_TEXT = "Write one sentence about the weather."


def _measure(launcher: Launcher, arm: LaunchPlan, prompts: list[core.Prompt], method: Method) -> core.Trial:
    """Warm-ups (on a text outside the suite), then `runs` greedy completions of every prompt. With a drafter
    that remembers the server's earlier output (remembers_output), each run is a launch of its own: a prompt
    is never measured on a server that already generated its answer. A configuration that fails to launch or
    run is recorded (error) and skipped: one bad configuration must not end the sweep."""
    samples: dict[str, list[Sample]] = {}
    delta: dict[str, float] = {}
    error = None
    fresh = core.remembers_output(arm.mtp)
    launches, per_launch = (method.runs, 1) if fresh else (1, method.runs)
    try:
        for _ in range(launches):
            with launcher(arm) as handle:
                for _ in range(method.warmups):
                    handle.complete(WARMUP_TEXT, n_predict=method.n_predict, temperature=0.0, seed=method.seed)
                before = parse_spec_metrics(handle.metrics())
                for prompt in prompts:
                    text = prompt.render()
                    for _ in range(per_launch):
                        samples.setdefault(prompt.name, []).append(
                            sample_from_timings(
                                handle.complete(text, n_predict=method.n_predict, temperature=0.0, seed=method.seed)
                            )
                        )
                after = parse_spec_metrics(handle.metrics())
                for k in after:
                    delta[k] = delta.get(k, 0.0) + after[k] - before.get(k, 0.0)
    except LlmtpError as exc:
        samples, error = {}, exc.message
    every = [s for v in samples.values() for s in v]
    drafts = {
        k: (sum(s.draft_n_accepted or 0 for s in v if s.draft_n), sum(s.draft_n or 0 for s in v))
        for k, v in samples.items()
        if any(s.draft_n for s in v)
    }
    per_step = delta["draft_tokens"] / delta["drafts"] if delta.get("drafts") and "draft_tokens" in delta else None
    return core.Trial(
        mtp=arm.mtp,
        label=core.label(arm.mtp),
        tokens_per_s=summarize([s.tokens_per_s for s in every]),
        per_prompt={k: st for k, v in samples.items() if (st := summarize([s.tokens_per_s for s in v])) is not None},
        acceptance=acceptance(every),
        drafts=drafts,
        draft_tokens_per_step=per_step,
        error=error,
    )


def _off(reason: str) -> verdict.TuneDecision:
    return verdict.TuneDecision(
        chosen=MtpSettings(enabled=False),
        label="plain",
        plain_tokens_per_s=None,
        chosen_tokens_per_s=None,
        speedup=None,
        reason=reason,
    )


def tune(
    target: Target,
    launcher: Launcher,
    *,
    base: LaunchPlan,
    method: Method | None = None,
    rule: core.Rule | None = None,
    suite: core.Suite | None = None,
    on_trial: TrialCallback | None = None,
) -> verdict.TuneDecision:
    """`base`: the plan serve would run (each trial is it with other draft settings); `rule`: min gain,
    noise band and the user's workload (a family of `suite`); see core.families."""
    method = method or tune_method()
    suite = suite or load_suite()
    rule = rule or core.Rule()
    families = suite.families()
    off = MtpSettings(enabled=False)
    if target.caps.mtp_dialect is None:
        return _off("this build offers no draft-mtp: MTP off")
    marker = model_marker(target)
    if marker.ok is False:
        return _off(f"model has no MTP heads ({marker.detail}): MTP off")
    upstream = target.caps.mtp_dialect == "upstream"
    select, heldout = suite.half("select"), suite.half("heldout")
    # Planned total for the progress bar: plain + n-max stage + p-min stage + stacked + held-out (plain, best, plain).
    total = 1 + len(core.N_MAX_RANGE) + (len(core.P_MIN_VALUES) + 1 if upstream else 0) + 3
    done = 0

    def run(mtp: MtpSettings, prompts: list[core.Prompt], plain: core.Trial | None = None) -> core.Trial:
        nonlocal done
        trial = _measure(launcher, base.with_mtp(mtp), prompts, method)  # the plan, other draft settings
        if plain is not None:
            core.compare(trial, plain, families, rule)
        done += 1
        if on_trial:
            on_trial(trial, done, max(total, done))
        return trial

    plain = run(off, select)
    if plain.tokens_per_s is None:
        raise LlmtpError(
            f"plain decoding could not be measured: {plain.error}", "Check the model with `llmtp serve` and its log."
        )
    base_mtp = MtpSettings(enabled=True, draft_model=str(target.sidecar) if target.sidecar else None)
    trials = [run(m, select, plain) for m in core.stage_n_max(base_mtp)]
    if upstream:
        best = core.best_trial(trials, rule)
        if best is not None:
            trials += [run(m, select, plain) for m in core.stage_p_min(best.mtp)]
            best = core.best_trial(trials, rule) or best
            trials += [run(m, select, plain) for m in core.stage_stack(best.mtp, target.caps.spec_types)]
    best = core.best_trial(trials, rule)
    plain_held: core.Trial | None = None
    held: list[core.Trial] = []
    drift = None
    if core.worth_holding_out(best, rule):
        finalists = core.finalists(trials, rule)
        total += len(finalists) - 1
        # plain before and after the finalists: the reference is their mean, so drift moves both sides
        before = run(off, heldout)
        held = [run(f.mtp, heldout, before) for f in finalists]  # progress shows it against `before`
        plain_held, drift = core.bracket(before, run(off, heldout))
    return verdict.decide(plain_held, [plain, *trials], held, rule, drift, families)


def load_prompts_file(path: Path) -> core.Suite:
    """A user's own prompt suite (TOML, the shipped file's format): its families define the rule's."""

    hint = (
        "Write [[prompt]] tables with name, family and text (see llmtp/data/prompts.toml), "
        "at least two prompts per family."
    )
    try:
        data = tomllib.loads(files.read_text(Path(path)))
    except OSError as exc:
        raise UsageError(f"Cannot read the prompts file {path}: {exc.strerror or exc}", hint) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"The prompts file {path} is not valid TOML: {exc}", hint) from exc
    try:
        return core.parse_suite(data)
    except (core.SuiteError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise UsageError(f"The prompts file {path} cannot be used: {_first_line(exc)}", hint) from exc


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return " ".join(line.strip() for line in text[:3])


def check_rule(suite: core.Suite, rule: core.Rule) -> core.Rule:
    """The decision rule, as given; --workload must name one of the suite's families."""

    if rule.workload is not None and rule.workload not in suite.family_names():
        raise UsageError(
            f"--workload {rule.workload!r} is not a family of the prompt suite",
            f"Use one of: {', '.join(suite.family_names())} (or --prompts FILE with your own).",
        )
    return rule


def run_tune(
    settings,
    request: LaunchRequest,
    method: Method | None = None,
    *,  # noqa: ANN001
    rule: core.Rule | None = None,
    prompts: Path | None = None,
    save: bool = True,
    on_trial: TrialCallback | None = None,
) -> tuple[verdict.TuneDecision, Target]:
    """Sweep the plan serve would run (each trial that plan with other draft settings) on the current build,
    and store the choice (or MTP off, with the reason) for `serve`. `rule`: min gain, noise band and the
    user's workload; `prompts`: the user's own suite, whose families then replace the shipped ones."""

    suite = load_prompts_file(prompts) if prompts is not None else load_suite()
    rule = check_rule(suite, rule or core.Rule())
    plan = verify_plan(settings, request)
    target = target_for(settings, plan)
    launcher = real_launcher(Path(settings.state_dir) / "tune")
    decision = tune(target, launcher, base=plan, method=method, rule=rule, suite=suite, on_trial=on_trial)
    if save:
        mtp_settings.save(
            settings,
            target.model_key,
            decision.chosen,
            mtp_settings.TuneFindings(
                build_id=target.build_id,
                speedup=decision.speedup,
                acceptance=decision.acceptance,
                break_even_acceptance=decision.break_even_acceptance,
                plain_tokens_per_s=decision.plain_tokens_per_s,
                workload=decision.workload,
                family_break_even=decision.family_break_even,
                ladder=decision.ladder,
            ),
            reason=decision.reason,
        )
    return decision, target
