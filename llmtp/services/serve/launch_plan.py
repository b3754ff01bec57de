"""resolve_launch: a LaunchRequest resolved once, on this machine and this build, into the LaunchPlan that
plan, serve, service, setup, run, verify, tune and upgrade all take (core/launch_plan.py holds the types).

The rules that `plan` and `serve` used to apply each their own way live here, once:
- the build: the current one, or --server; `plan` may run before any build (then the plan has no argv);
- the hardware: free memory now for this build's backend (hardware_for_build), else the full detection
  when there is no build yet; `plan --vram/--gpu/--ram-bw` replace it through LaunchDeps.hardware;
- the file: a catalog model named without a quant uses a quant already on disk before the catalog's
  default (serve never downloads a second quant when one is there, and plan plans that very file);
- MTP: the acceptance `llmtp tune` measured on this file (else the planner's default) and its draft
  settings; the user's overrides last (core.launch_plan.apply_overrides).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmtp.adapters import files
from llmtp.core.capabilities import Capabilities
from llmtp.core.concurrency import ClientsPlan, plan_clients
from llmtp.core.launch import alias_problem, default_alias
from llmtp.core.launch_plan import LaunchPlan, LaunchRequest, apply_overrides, merge_reasons
from llmtp.core.passthrough import check_passthrough
from llmtp.core.placement import budget
from llmtp.core.plan_types import PlanHardware, PlanRequest
from llmtp.core.supervisor import load_budget_s
from llmtp.errors import ModelNotDownloadedError, ServeError, UsageError
from llmtp.services.build.probe_cache import cached_capabilities
from llmtp.services.machine.ram_bandwidth import cached_ram_bandwidth
from llmtp.services.models import resolve
from llmtp.services.rpc.cluster import rpc_split
from llmtp.services.serve.plan import detected_hardware, hardware_for_build, plan_resolved
from llmtp.services.serve.supervisor import read_api_key
from llmtp.services.stores import mtp_settings

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class LaunchDeps:
    """What resolve_launch reads from the machine; tests replace any of it (None: the real one)."""

    current_build: Callable | None = None  # settings -> Build | None
    probe: Callable[[Path], Capabilities] | None = None  # capabilities of a --server binary
    hardware: PlanHardware | None = None  # plan for this instead of the machine (plan --vram/--gpu)
    tune_record: Callable[[Path], object] | None = None  # GGUF path -> ModelSettingsRecord | None
    not_counting: frozenset[int] = frozenset()  # pids whose memory the plan may use (a warm start)
    launching: bool = True  # False (`plan`): no build or no file yet is not an error, only no argv
    ram_bandwidth: float | None = None  # GB/s measured just now (`plan`); else the cached measurement


def resolve_launch(settings, request: LaunchRequest, deps: LaunchDeps | None = None) -> LaunchPlan:
    """The one launch plan for `request` here. Raises the usage error a bad request deserves before
    anything starts: the bind and its key, the alias, the pass-through flags, the build, the file."""

    deps = deps or LaunchDeps()
    check_passthrough(list(request.extra))  # before anything is probed or planned; argv checks the rest
    if request.alias is not None and (why := alias_problem(request.alias)) is not None:
        raise UsageError(
            f"--alias {request.alias!r} cannot name the model: {why}",
            "Pass one name without commas, e.g. `--alias my-model`.",
        )
    host, port = request.host or settings.host, request.port or settings.port
    notes: list[str] = []
    key_file = _key_file(host, request.api_key_file, notes)
    server, caps, build_id = _binary(settings, request, deps)
    resolved, on_disk = _resolve_model(settings, request)
    path = Path(resolved.path) if resolved.path is not None else None
    if path is None and deps.launching:
        raise ModelNotDownloadedError(
            f"{request.model} is not downloaded yet",
            f"Run `llmtp models pull {request.model}` first (or pass the path to a .gguf file).",
        )
    record = _tune_record(settings, path, deps)
    if resolved.alias is None and request.alias is not None:
        # a file served under a name (a service unit pins the path and the alias): calibration is filed
        # under the name clients see, as for the alias the file was pulled as
        resolved = dataclasses.replace(resolved, alias=request.alias)
    hardware = _hardware(caps, deps, settings)
    clients = request.clients if request.clients is not None else settings.clients
    slots = plan_clients(clients, budget(hardware) is not None, request.parallel) if clients is not None else None
    result = plan_resolved(resolved, settings, _plan_request(request, record, slots), hardware)
    spec = result.plan.to_launch_spec(str(path) if path else request.model, host=host, port=port)
    reasons = merge_reasons(
        [d.model_dump() for d in result.plan.decisions], apply_overrides(spec, request, getattr(record, "mtp", None))
    )
    if on_disk:
        reasons.insert(
            0,
            {
                "what": "quant",
                "value": on_disk,
                "reason": "already on disk (the catalog's default "
                f"is not): `llmtp models pull {request.model}:QUANT` for another",
            },
        )
    if record is not None and spec.mtp.enabled and getattr(record, "mtp", None) is not None:
        notes.append(f"MTP settings from `llmtp tune`: enabled={record.mtp.enabled}, n-max {record.mtp.n_max}")
    spec.alias = request.alias or default_alias(
        spec.model, resolved.alias or (resolved.entry.alias if resolved.entry else None)
    )
    spec.api_key_file = key_file
    spec.extra_args = _calibration_args(caps, list(request.extra)) + list(request.extra)
    devices: list[dict] = []
    rpc = request.rpc if request.rpc is not None else settings.rpc
    if rpc and server is not None and path is not None:
        devices = rpc_split(settings, server, spec, rpc, reasons)  # names a dead worker first
    size = files.file_size(path) if path is not None and path.is_file() else None
    return LaunchPlan.freeze(
        request=request,
        spec=spec,
        caps=caps,
        server=str(server) if server else None,
        build_id=build_id,
        ready_timeout_s=load_budget_s(size),
        reasons=tuple(reasons),
        warnings=tuple(result.plan.warnings),
        notes=tuple(notes),
        devices=tuple(devices),
        planned=result,
    )


def _key_file(host: str, api_key_file: str | None, notes: list[str]) -> str | None:
    if host not in LOOPBACK and api_key_file is None:
        raise UsageError(
            f"Binding to {host} exposes the server to the network without an API key",
            "Pass --api-key-file FILE (one key per line), or bind to 127.0.0.1.",
        )
    if api_key_file is None:
        return None
    key_path = Path(api_key_file).expanduser().resolve()
    if not key_path.is_file() or read_api_key(str(key_path)) is None:
        raise UsageError(
            f"The API key file {key_path} is missing or holds no key", "Write one key per line into it (chmod 600)."
        )
    if files.stat(key_path).st_mode & 0o077:
        notes.append(f"{key_path} is readable by other users; chmod 600 it")
    return str(key_path)


def _binary(settings, request: LaunchRequest, deps: LaunchDeps) -> tuple[Path | None, Capabilities | None, str | None]:
    if request.server is not None:
        probe = deps.probe or (lambda p: cached_capabilities(p, settings.cache_dir))
        return Path(request.server), probe(Path(request.server)), None
    current_build = deps.current_build
    if current_build is None:
        from llmtp.services.build.installed import current_build
    build = current_build(settings)
    if build is None:
        if not deps.launching:
            return None, None, None
        raise ServeError(
            "No llama.cpp build is installed yet",
            "Run `llmtp build` first, or pass --server PATH to an existing llama-server.",
        )
    return build.server, build.manifest.capabilities, build.id


def _resolve_model(settings, request: LaunchRequest):  # -> (ResolvedModel, the quant on disk used or None)
    """The one rule for which file: a named quant; else, for a catalog model, a quant already on disk
    (catalog order) before the default one."""

    resolved = resolve.resolve_model(request.model, settings, quant=request.quant)
    if resolved.path is None and resolved.entry is not None and request.quant is None:
        local = resolve.local_quants(settings, resolved.entry)
        if local:
            return resolve.resolve_model(request.model, settings, quant=local[0]), local[0]
    return resolved, None


def _tune_record(settings, path: Path | None, deps: LaunchDeps):
    if deps.tune_record is not None:
        return deps.tune_record(path) if path is not None else None
    if path is None or not path.is_file():
        return None

    return mtp_settings.load_record(settings, mtp_settings.model_key(path))


def _plan_request(request: LaunchRequest, record, slots: ClientsPlan | None) -> PlanRequest:  # noqa: ANN001 - ModelSettingsRecord | None
    acceptance = getattr(record, "acceptance", None)
    return PlanRequest(
        ctx=request.ctx,
        no_mtp=request.no_mtp,
        parallel=slots.parallel if slots is not None else request.parallel or 1,
        clients=slots,
        quant=request.quant,
        cache_type=request.cache_type,
        acceptance=acceptance,
        force=request.force,
        **({"mtp_n_max": request.draft_n_max} if request.draft_n_max else {}),
    )


def _hardware(caps: Capabilities | None, deps: LaunchDeps, settings) -> PlanHardware:
    """The machine the plan is for. Layers left on the CPU are predicted from its RAM bandwidth: stated,
    else measured now by `plan`, else the measurement `plan` cached (so serve predicts as plan did)."""

    if deps.hardware is not None:
        hw = deps.hardware
    elif caps is None:  # no build yet: what the recommended build would use
        hw = detected_hardware()
    else:
        hw = hardware_for_build(caps, not_counting=deps.not_counting)
    if hw.ram_bandwidth_gbps is None:
        gbps = deps.ram_bandwidth if deps.ram_bandwidth is not None else cached_ram_bandwidth(settings)
        if gbps is not None:
            hw = hw.model_copy(update={"ram_bandwidth_gbps": gbps})
    return hw


_VERBOSITY_FLAGS = ("-lv", "--verbosity", "--log-verbosity", "-v", "--verbose", "--log-verbose")


def _calibration_args(caps: Capabilities | None, extra: list[str]) -> list[str]:
    """`-lv 4`: llama-server prints its buffer sizes (the calibration ground truth) only at
    verbosity 4: they are libllama INFO lines, which common/log.cpp maps to TRACE (4), above the
    default threshold 3 (b11434). Measured on the test bed: ~5.7 kB (51 lines) per request at -lv 4
    against ~0.9 kB (8 lines) at -lv 3; either grows without end, so the supervisor rotates the log
    live (adapters.spawn.LiveRotation). Never overrides the user's choice."""
    flag = caps.first_of("-lv", "--verbosity", "--log-verbosity") if caps is not None else None
    if flag is None or any(a in _VERBOSITY_FLAGS for a in extra):
        return []
    return [flag, "4"]
