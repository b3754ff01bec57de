"""From a verify request to a report: resolve the launch plan serve would run (services/serve/launch_plan.py),
launch its MTP arm and its plain arm for real, and mind a server of the same model that llmtp already runs
here (refuse and offer `--port` / `--restart`, or stop it, measure and start it again)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from llmtp.adapters import files
from llmtp.adapters.gguf_file import read_model_info
from llmtp.adapters.ports import free_port
from llmtp.core import verify as core
from llmtp.core.launch_plan import LaunchPlan, LaunchRequest
from llmtp.core.tune import remembers_output
from llmtp.core.verify import Method, VerifyReport
from llmtp.errors import LlmtpError, ModelNotDownloadedError, NetworkError, UsageError
from llmtp.services.models.resolve import resolve_model
from llmtp.services.serve.launch import detach, launched, stop_served
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch
from llmtp.services.serve.run_prompt import running_for
from llmtp.services.stores.mtp_settings import model_key
from llmtp.services.verify import baselines as store
from llmtp.services.verify.arms import Launcher, cases_of, measure_plain
from llmtp.services.verify.mtp_ab import Target, VerifyOptions, verify

# -- the real launcher: the serve service's launched() plus the HTTP client --------------------------


class _LiveHandle:
    def __init__(self, proc, client):  # noqa: ANN001 - ServerProcess (None: a running server), LlamaClient
        self._proc, self._client = proc, client

    def slots(self) -> list[dict]:
        return self._client.slots()

    def metrics(self) -> str | None:
        try:
            return self._client.metrics_text()
        except NetworkError:  # 501 without --metrics
            return None

    def complete(self, prompt: str, *, n_predict: int, temperature: float, seed: int) -> dict:
        # cache_prompt is off (LlamaClient's default) so every run pays the prompt: PP cost is measurable.
        return self._client.completion(prompt, n_predict=n_predict, temperature=temperature, seed=seed, timeout=600)[
            "timings"
        ]

    def log_text(self) -> str:
        return self._proc.log_tail() if self._proc is not None else ""


def real_launcher(log_dir: Path, *, ready_timeout: float = 300) -> Launcher:
    """Launch an arm (a LaunchPlan) on a free port each time, its argv otherwise as planned; logs land in
    `log_dir` (verify-mtp.log, verify-plain.log)."""

    @contextmanager
    def launch(arm: LaunchPlan) -> Iterator[_LiveHandle]:
        arm = arm.variant(port=free_port(arm.spec.host))
        log_path = Path(log_dir) / f"verify-{'mtp' if arm.mtp.enabled else 'plain'}.log"
        files.remove(log_path)
        with launched(arm, log_path=log_path, ready_timeout=ready_timeout) as proc:
            with proc.client(timeout=600) as client:
                yield _LiveHandle(proc, client)

    return launch


# -- from a request to the plan and its target --------------------------------------------------------


def model_ref_or_default(settings, ref: str | None) -> str:  # noqa: ANN001
    ref = ref or settings.default_model
    if ref is None:
        raise UsageError(
            "No model named and no default model set",
            "Pass a GGUF path or alias, or set default_model in config.toml (`llmtp config show` "
            "names the file) or LLMTP_DEFAULT_MODEL.",
        )
    return ref


def resolve_model_path(ref: str | None, settings) -> tuple[Path, Path | None]:  # noqa: ANN001
    """(model path, MTP sidecar) of REF (default: the default model), as `doctor` checks it. A path is used
    as is; other refs go through the models service."""
    ref = model_ref_or_default(settings, ref)
    path = Path(ref).expanduser()
    if path.is_file():
        return path.resolve(), None

    resolved = resolve_model(ref, settings)
    if resolved.path is None:
        raise UsageError(f"Model {ref} is not downloaded yet", f"Fetch it first with `llmtp models pull {ref}`.")
    return Path(resolved.path), resolved.sidecar_path


def verify_plan(settings, request: LaunchRequest, build=None) -> LaunchPlan:  # noqa: ANN001
    """The plan serve would run for `request` (on `build` instead of the current one: upgrade's check).
    A model that is not on disk is not pulled by verify: it says how to get it."""

    deps = LaunchDeps(current_build=(lambda s: build) if build is not None else None)
    try:
        return resolve_launch(settings, request, deps)
    except ModelNotDownloadedError as exc:
        raise UsageError(
            f"Model {request.model} is not downloaded yet", f"Fetch it first with `llmtp models pull {request.model}`."
        ) from exc


def target_for(settings, plan: LaunchPlan, build=None) -> Target:  # noqa: ANN001
    """What verify checks for a plan: its file (and MTP sidecar), its build's capabilities."""
    from llmtp.services.build.installed import current_build

    path = Path(plan.spec.model)
    sidecar = Path(plan.spec.mtp.draft_model) if plan.spec.mtp.draft_model else _sidecar(plan)
    sidecar_error = None
    if sidecar is not None:
        try:
            read_model_info(sidecar)
        except LlmtpError as exc:
            sidecar_error = exc.message
    build = build or (current_build(settings) if plan.build_id is not None else None)
    gpus, bandwidth = _machine_gpus()
    return Target(
        model_path=path,
        model_key=model_key(path),
        info=read_model_info(path),
        caps=plan.caps,
        build_id=plan.build_id,
        profile=build.manifest.profile if build is not None else None,
        sidecar=sidecar,
        sidecar_error=sidecar_error,
        machine_gpus=gpus,
        bandwidth_gbps=bandwidth,
    )


def _sidecar(plan: LaunchPlan) -> Path | None:
    resolved = getattr(plan.planned, "resolved", None)
    return getattr(resolved, "sidecar_path", None)


def _machine_gpus() -> tuple[int, float | None]:
    """GPUs on this machine and the first one's stated bandwidth; detection failures mean 'none known'."""
    try:
        from llmtp.services.machine.detect import detect_hardware

        hw = detect_hardware()
    except Exception:  # detection is advisory here: verify still measures without it
        return 0, None
    return len(hw.gpus), (hw.gpus[0].memory_bandwidth_gbps if hw.gpus else None)


# -- the A/B, and a server of the same model already running -----------------------------------------


def served_here(settings, model_path: str, on_note: Callable[[str], None] = lambda _l: None):  # noqa: ANN001
    """The ready llmtp server of this very file on this machine (a router serving it among others), or None."""
    from llmtp.services.stores import serve_records as st

    running = running_for(Path(settings.state_dir), model_path, on_note)
    if running is not None:
        return running
    routers = [r for r in st.all_states(Path(settings.state_dir)) if r.kind == "router" and r.state == "ready"]
    return next((r for r in routers if any(Path(m["model"]) == Path(model_path) for m in r.models)), None)


def _caveats(plan: LaunchPlan, report: VerifyReport) -> VerifyReport:
    """What the report must say about how it measured this plan."""
    if remembers_output(plan.mtp):
        report.warnings.append(
            "this plan drafts with an n-gram drafter that remembers the server's earlier output: verify decodes "
            "each case several times on one server, so the MTP arm's speed includes that memory and can overstate "
            "the gain on new text (`llmtp tune` measures each repeat on a fresh server)"
        )
    return report


def run_verify(
    settings,
    request: LaunchRequest,
    method: Method,
    *,
    build=None,  # noqa: ANN001
    options: VerifyOptions | None = None,
    served: str = "refuse",
) -> VerifyReport:
    """The A/B of the plan serve would run. A server of this model that llmtp runs here is, by `served`:
    "refuse"d (its load would disturb the measurement, and two more copies may not fit), naming `--port` and
    `--restart`; with "restart" stopped, the A/B run, and started again with its own command line; with
    "keep" (upgrade, which compares builds under the same load) measured beside it, and said so."""

    plan = verify_plan(settings, request, build)
    target = target_for(settings, plan, build)
    opts = dataclasses.replace(
        options or VerifyOptions(),
        baseline_load=lambda k: store.load(settings, k),
        baseline_save=lambda b: store.save(settings, b),
    )
    launcher = real_launcher(Path(settings.state_dir) / "verify")
    running = served_here(settings, plan.spec.model)
    if running is None:
        return _caveats(plan, verify(target, method, launcher, base=plan, options=opts))
    if served == "keep":
        report = verify(target, method, launcher, base=plan, options=opts)
        report.warnings.append(f"measured while the llmtp server on port {running.port} kept serving this model")
        return report
    if served != "restart":
        routed = running.kind == "router"  # one model of a set: the check names it; a restart stops the set
        model = next((m["name"] for m in running.models if Path(m["model"]) == Path(plan.spec.model)), "MODEL")
        raise UsageError(
            f"{model if routed else running.alias or running.model} is already served by llmtp here "
            f"(port {running.port}{', a router' if routed else ''})",
            f"`llmtp verify {model + ' ' if routed else ''}--port {running.port}` checks that server without "
            "restarting it; `llmtp verify --restart` stops it"
            + (" (and every model of its set)" if routed else "")
            + ", runs the plain/MTP comparison and starts it again.",
        )
    return _with_server_stopped(
        settings, running, plan.ready_timeout_s, lambda: verify(target, method, launcher, base=plan, options=opts)
    )


def _with_server_stopped(
    settings,
    record,
    ready_timeout_s: float,  # noqa: ANN001
    measure: Callable[[], VerifyReport],
) -> VerifyReport:

    command = list(record.command)
    if not command:
        raise UsageError(
            f"The server on port {record.port} was started by an llmtp that did not record its "
            "command line, so verify could not start it again",
            f"Stop it with `llmtp stop --port {record.port}`, run `llmtp verify`, then serve again.",
        )
    stop_served(Path(settings.state_dir), record.port)
    try:
        report = measure()
    finally:
        again = detach(Path(settings.state_dir), record.port, command, ready_timeout_s)
    report.warnings.append(
        f"the server on port {record.port} was stopped for the comparison and started again "
        f"(llmtp pid {again.llmtp_pid})"
    )
    return report


def plain_tokens_per_s(settings, request: LaunchRequest, method: Method, *, build=None) -> float | None:  # noqa: ANN001
    """Plain decode speed alone (geometric mean of the cases' medians) of the plan with MTP off, for a
    model verify stops early on (no MTP heads, or a build without MTP): its speed is still worth knowing."""
    plan = verify_plan(settings, request, build)
    launcher = real_launcher(Path(settings.state_dir) / "verify")
    samples = measure_plain(cases_of(method), method, launcher, plan)
    return core.geomean(
        [stats.median if (stats := core.summarize([s.tokens_per_s for s in v])) else None for v in samples.values()]
    )
