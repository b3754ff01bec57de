"""`llmtp setup`: detect, build, choose a model, pull/plan/serve, verify, install the service: resumable.

Every step records its inputs and result in data_dir/setup.json only once it succeeded; a later run
skips a step whose recorded inputs still hold (and whose result is still there), so an interrupted
setup resumes where it stopped and a second run on a set-up machine does nothing. Side effects come
in through `SetupDeps`; services/setup_deps.real_deps() wires the real services. The progress file
is services/setup/progress.py, the model recommendation core/setup_rules.py; each step returns data
(StepResult.data) and the CLI words it (cli/_setup_text.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from llmtp.core.setup_rules import DEMO_ALIAS, Recommendation, recommend
from llmtp.core.verify import VerdictCode
from llmtp.errors import LlmtpError, UsageError
from llmtp.services.setup.progress import SetupState

STEPS = ("detect", "build", "model", "serve", "verify", "service")

Status = Literal["done", "unchanged", "off"]  # done: did work; unchanged: nothing to do; off: not asked


@dataclass
class SetupRequest:
    model: str | None = None
    yes: bool = False
    no_serve: bool = False
    service: bool = False
    profile: str | None = None
    source: Literal["git", "pypi"] | None = None  # None: git when its host answers, else the pinned sdist


@dataclass
class StepResult:
    """What one step did, as data: the CLI words it (cli/_setup_text.py), --json prints it."""

    name: str
    status: Status
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class SetupResult:
    steps: list[StepResult]
    warnings: list[str]
    state_file: Path

    @property
    def changed(self) -> bool:
        return any(s.status == "done" for s in self.steps)


class Reporter(Protocol):
    """How setup shows itself: the CLI renders with rich, tests record."""

    def step(self, index: int, name: str) -> None: ...

    def info(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def result(self, step: StepResult) -> None: ...

    def build_event(self, event: Any) -> None: ...  # llmtp.services.build.request.BuildEvent


class NullReporter:
    def step(self, index: int, name: str) -> None:
        pass

    def info(self, text: str) -> None:
        pass

    def warn(self, text: str) -> None:
        pass

    def result(self, step: StepResult) -> None:
        pass

    def build_event(self, event: Any) -> None:
        pass


@dataclass
class SetupDeps:
    """The side effects setup needs; see real_deps() for what each one is in production."""

    detect: Callable[[], Any]  # -> HardwareSnapshot
    pin_build: Callable[[], int]  # the pinned upstream build number
    git_url: Callable[[], str]
    reachable: Callable[[str], bool]  # quick probe of the upstream git host
    list_builds: Callable[[Any], list]  # settings -> [InstalledBuild]
    current_build: Callable[[Any], Any]
    use_build: Callable[[Any, str], Any]
    build: Callable[..., Any]  # (settings, BuildRequest, on_progress, hw) -> InstalledBuild
    resolve: Callable[..., Any]  # (ref, settings, allow_download) -> ResolvedModel
    plan: Callable[..., Any]  # (ref, settings, hardware_snapshot) -> PlanResult
    catalog_aliases: Callable[[], list[str]]  # catalog order = preference order
    server_record: Callable[[Any, int], dict | None]  # live llmtp serve on a port: model, build, healthy, url
    start_server: Callable[..., dict]  # (settings, build, model_ref, plan, host, port) -> url, pid, sample
    stop_server: Callable[[Any, int], None]
    verify: Callable[..., Any]  # (settings, model_ref, build) -> VerifyReport of the plan serve runs
    plain_tok_s: Callable[..., float | None]  # (settings, model_ref, build) -> plain decode tok/s
    model_key: Callable[[Path], str]
    service_installed: Callable[[Any], bool]
    install_service: Callable[..., list[str]]  # (settings, model_ref, host, port) -> actions
    confirm: Callable[[str], bool] | None = None  # None: nobody to ask (not a terminal)
    set_default_model: Callable[[Any, str], bool] | None = None  # (settings, ref) -> changed; None: leave it


# --- model recommendation ---------------------------------------------------------------------------


def recommend_model(settings, hw, aliases: list[str], plan: Callable[..., Any]) -> Recommendation:
    """The best catalog model that fits this machine with MTP on: each alias planned for `hw`, the
    choice by core.setup_rules.recommend. An alias without metadata to plan with is no known fit."""
    candidates = []
    for alias in aliases:
        if alias == DEMO_ALIAS:
            continue
        try:
            candidates.append((alias, plan(alias, settings, hw).plan))
        except LlmtpError:
            continue
    return recommend(candidates)


# --- the run ----------------------------------------------------------------------------------------


class _Run:
    def __init__(self, settings, req: SetupRequest, deps: SetupDeps, report: Reporter):
        self.settings, self.req, self.deps, self.report = settings, req, deps, report
        self.state = SetupState(settings)
        self.steps: list[StepResult] = []
        self.warnings: list[str] = []
        self.hw = self.build = self.model_path = None
        self.model_ref: str | None = None

    def recorded(self, name: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
        return self.state.recorded(name, inputs)

    def record(self, name: str, inputs: dict[str, Any], result: dict[str, Any]) -> None:
        self.state.record(name, inputs, result)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        self.report.warn(text)

    def run(self) -> SetupResult:
        failed = self.state.failed
        if failed:
            self.report.info(f"resuming: step {failed['step']} failed last time ({failed['error']})")
        for i, name in enumerate(STEPS, 1):
            self.report.step(i, name)
            try:
                result = getattr(self, f"step_{name}")()
            except LlmtpError as exc:
                self.state.fail(name, exc.message)
                raise
            self.steps.append(result)
            self.report.result(result)
        self.state.finish()
        return SetupResult(self.steps, self.warnings, self.state.path)

    # 1 ------------------------------------------------------------------------------------------
    def step_detect(self) -> StepResult:
        hw = self.hw = self.deps.detect()
        gpus = [g.name for g in hw.gpus]
        result = {
            "gpus": gpus,
            "recommended_profile": hw.recommendation.profile,
            "reason": hw.recommendation.reason,
            "notes": list(hw.notes),
        }
        for note in hw.notes:  # what was looked for and not found, with the fix
            self.warn(note)
        same = self.recorded("detect", {}) == result
        self.record("detect", {}, result)
        found = {"cpu_threads": hw.cpu.cores_logical, "ram_bytes": hw.ram_total_bytes}
        return StepResult("detect", "unchanged" if same else "done", result | found)

    # 2 ------------------------------------------------------------------------------------------
    def step_build(self) -> StepResult:
        profile = self.req.profile or self.hw.recommendation.profile
        number = self.deps.pin_build()
        inputs = {"profile": profile, "build_number": number}
        matching = [
            b
            for b in self.deps.list_builds(self.settings)
            if b.manifest.status == "ok"
            and b.manifest.profile == profile
            and b.manifest.build_number == number
            and b.server.is_file()
        ]
        current = self.deps.current_build(self.settings)
        status: Status = "done"
        if current is not None and any(b.id == current.id for b in matching):
            build, how, source = current, "reused", None
            status = "unchanged"
        elif matching:
            build, how, source = self.deps.use_build(self.settings, matching[-1].id), "switched", None
        else:
            from llmtp.services.build.request import BuildRequest

            source = self.req.source or self._source()
            self.report.info(f"building llama.cpp b{number} ({profile}) from the {source} source")
            request = BuildRequest(profile=profile, source=source, make_current=True, ui=self.settings.build_ui)
            build = self.deps.build(self.settings, request, self.report.build_event, self.hw)
            how = "built"
        self.build = build
        caps = build.manifest.capabilities
        if not caps.mtp_dialect:
            self.warn(
                f"build {build.id} offers no draft-mtp speculative decoding: MTP cannot run with it; "
                "rebuild with `llmtp build` from the pinned source"
            )
        result = {"build_id": build.id, "profile": build.manifest.profile, "mtp": caps.mtp_dialect}
        self.record("build", inputs, result)
        return StepResult("build", status, result | {"how": how, "source": source})

    def _source(self) -> Literal["git", "pypi"]:
        if getattr(self.settings, "offline", False):
            return "pypi"
        url = self.deps.git_url()
        if "git" in self.hw.toolchains and self.hw.tool("git") is None:
            self.report.info("git is not installed: using the pinned PyPI source")
            return "pypi"
        if self.deps.reachable(url):
            return "git"
        self.report.info(f"{url} is not reachable: using the pinned PyPI source")
        return "pypi"

    # 3 ------------------------------------------------------------------------------------------
    def step_model(self) -> StepResult:
        prev = self.state.previous("model")
        if self.req.model:
            ref, how = self.req.model, "given with --model"
        elif prev.get("ref"):
            ref, how = prev["ref"], "chosen by an earlier setup"
        else:
            rec = recommend_model(self.settings, self.hw, self.deps.catalog_aliases(), self.deps.plan)
            self.report.info(f"recommended: {rec.alias} ({rec.reason})")
            if not self.req.yes:
                if self.deps.confirm is None:
                    raise UsageError(
                        "setup needs a model and cannot ask here (not a terminal)",
                        f"Pass --model ALIAS (e.g. --model {rec.alias}), or --yes to take "
                        "the recommendation; `llmtp models list` shows the catalog.",
                    )
                if not self.deps.confirm(f"Use {rec.alias}?"):
                    raise UsageError(
                        "No model chosen", "Run `llmtp setup --model ALIAS`; `llmtp models list` shows the catalog."
                    )
            ref, how = rec.alias, f"recommended: {rec.reason}"
        resolved = self.deps.resolve(ref, self.settings, allow_download=False)  # bad refs fail here
        self.model_ref = ref
        result = {"ref": ref, "how": how, "downloaded": resolved.downloaded}
        same = prev.get("ref") == ref
        self.record("model", {"ref": ref}, {"ref": ref, "how": how})
        if self.deps.set_default_model is not None and self.deps.set_default_model(self.settings, ref):
            self.report.info(f"default model: {ref} (`llmtp verify`, `llmtp doctor` and `llmtp tune` use it)")
        if not resolved.info.has_mtp_heads:
            self.report.info(f"{ref} has no MTP heads: MTP stays off for it")
        return StepResult("model", "unchanged" if same else "done", result)

    # 4 ------------------------------------------------------------------------------------------
    def step_serve(self) -> StepResult:
        ref, settings = self.model_ref, self.settings
        resolved = self.deps.resolve(ref, settings, allow_download=False)
        pulled = False
        if not resolved.downloaded:
            self.report.info(f"pulling {ref}")
            resolved = self.deps.resolve(ref, settings, allow_download=True)
            pulled = True
        self.model_path = Path(resolved.path)
        plan = self.deps.plan(ref, settings, self.hw).plan  # the plan serve runs for the model, by its name
        for w in plan.warnings:
            self.warn(f"plan: {w}")
        ngl = "CPU" if plan.n_gpu_layers is None else f"-ngl {plan.n_gpu_layers}"
        plan_text = (
            f"{ngl}, context {plan.ctx}, KV {plan.cache_type_k}, "
            f"MTP {'on (n-max ' + str(plan.mtp.n_max) + ')' if plan.mtp.enabled else 'off'}"
        )
        self.report.info(f"plan: {plan_text}")
        host, port = settings.host, settings.port
        data = {"model_path": str(self.model_path), "pulled": pulled, "plan": plan_text}
        inputs = {"build_id": self.build.id, "model_path": str(self.model_path), "host": host, "port": port}
        if self.req.no_serve or self.req.service:
            data.update(action="not_started", because="no_serve" if self.req.no_serve else "service")
            self.record("serve", inputs | {"serve": False}, data)
            return StepResult("serve", "done" if pulled else "off", data)
        live = self.deps.server_record(settings, port)
        if (
            live is not None
            and live.get("healthy")
            and live.get("model") == str(self.model_path)
            and live.get("build") == self.build.id
        ):
            data.update(action="already_serving", url=live["url"], **_addresses(live))
            self.record("serve", inputs | {"serve": True}, data)
            return StepResult("serve", "done" if pulled else "unchanged", data)
        if live is not None:
            self.report.info(f"stopping the llmtp server on port {port} ({live.get('model')})")
            self.deps.stop_server(settings, port)
        started = self.deps.start_server(settings, self.build, ref, plan, host, port)
        data.update(
            action="started",
            url=started["url"],
            pid=started.get("pid"),
            sample=started.get("sample"),
            **_addresses(started),
        )
        self.record("serve", inputs | {"serve": True}, data)
        return StepResult("serve", "done", data)

    # 5 ------------------------------------------------------------------------------------------
    def step_verify(self) -> StepResult:
        inputs = {"build_id": self.build.id, "model_key": self.deps.model_key(self.model_path)}
        done = self.recorded("verify", inputs)
        if done is not None and "verdict_reason" in done:  # a record without it predates the data form
            return StepResult("verify", "unchanged", done)
        report = self.deps.verify(self.settings, self.model_ref, self.build)
        result = self._verify_result(report)
        self.record("verify", inputs, result)
        return StepResult("verify", "done", result)

    def _verify_result(self, report) -> dict[str, Any]:
        code = VerdictCode(int(report.verdict.code))
        plain = report.plain_tokens_per_s
        if plain is None and code in (VerdictCode.NO_MTP_HEADS, VerdictCode.MTP_NOT_IN_BUILD):
            # verify stops at a missing marker; the plain speed is still worth knowing
            plain = self.deps.plain_tok_s(self.settings, self.model_ref, self.build)
        if code == VerdictCode.MTP_NOT_IN_BUILD:
            self.warn("rebuild llama.cpp with MTP support: `llmtp build` from the pinned source")
        elif code == VerdictCode.MTP_INACTIVE:
            self.warn("MTP was asked for but did not draft: `llmtp verify` shows the details")
        elif code == VerdictCode.MTP_SLOWER:
            self.warn(
                "MTP is slower than plain decoding here: `llmtp tune` finds the settings that win "
                "(or serves without MTP)"
            )
        elif code not in (VerdictCode.PASS, VerdictCode.NO_MTP_HEADS):
            self.warn(f"verify: {report.verdict.title}; `llmtp verify` shows the details")
        for w in report.warnings:
            self.warn(f"verify: {w}")
        return {
            "verdict": int(code),
            "verdict_title": report.verdict.title,
            "verdict_reason": report.verdict.reason,
            "model_detail": report.markers.model.detail,
            "build_detail": report.markers.build.detail,
            "mtp_active": report.markers.runtime.ok,
            "acceptance": report.acceptance,
            "mtp_tok_s": report.mtp_tokens_per_s,
            "plain_tok_s": plain,
            "speedup": report.speedup,
        }

    # 6 ------------------------------------------------------------------------------------------
    def step_service(self) -> StepResult:
        if not self.req.service:
            return StepResult("service", "off")
        host, port = self.settings.host, self.settings.port
        inputs = {"build_id": self.build.id, "model_path": str(self.model_path), "host": host, "port": port}
        done = self.recorded("service", inputs)
        if done is not None and self.deps.service_installed(self.settings):
            return StepResult("service", "unchanged", done)
        live = self.deps.server_record(self.settings, port)
        if live is not None:  # the unit needs the port a background serve of an earlier setup holds
            self.report.info(f"stopping the background server on port {port}: the service takes over")
            self.deps.stop_server(self.settings, port)
        actions = self.deps.install_service(self.settings, self.model_ref, host, port)
        result = {"actions": actions}
        self.record("service", inputs, result)
        return StepResult("service", "done", result)


def run_setup(settings, req: SetupRequest, deps: SetupDeps, report: Reporter | None = None) -> SetupResult:
    """Run the six steps (see the module docstring); raises the failing step's LlmtpError."""
    return _Run(settings, req, deps, report or NullReporter()).run()


_ADDRESS_KEYS = ("openai_base_url", "ui_url", "ui_asks_for_key", "api_key_file")


def _addresses(server: dict) -> dict:
    """Where the served model answers (OpenAI base URL, web UI), as the server record gave them."""
    return {k: server[k] for k in _ADDRESS_KEYS if k in server}
