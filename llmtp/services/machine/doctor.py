"""`llmtp doctor`: gather the facts (hardware, builds, disk, caches, service) and run the checklist."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from llmtp.adapters.files import free_bytes, read_link, tree_size, writable
from llmtp.adapters.hf import hub_cache_dir
from llmtp.adapters.ports import connect_error
from llmtp.core import doctor as core
from llmtp.core.doctor import Check, Status
from llmtp.core.rpc import Endpoint, is_loopback, parse_endpoints
from llmtp.errors import LlmtpError
from llmtp.services.machine.detect import detect_hardware


class DoctorReport(BaseModel):
    status: Status
    checks: list[Check]


def _link(settings, name: str) -> str | None:
    return read_link(Path(settings.builds_dir) / name)


def run_doctor(
    settings, *, hw=None, service_state: Callable[[], str | None] | None = None, hf_cache: Path | None = None
) -> DoctorReport:
    from llmtp.services.build import installed as builds

    if hw is None:
        hw = detect_hardware()
    current = builds.current_build(settings)
    caps = current.manifest.capabilities if current else None
    gpus = len(hw.gpus)
    backends = (
        None
        if caps is None or caps.devices is None
        else [d.id for d in caps.devices if d.backend.upper() not in {"CPU", "BLAS"}]
    )
    nvcc = current.manifest.toolchain.get("nvcc") if current else None
    driver_cuda = next((g.cuda_driver_version for g in hw.gpus if g.cuda_driver_version), None)

    checks = []
    if current is not None and current.manifest.backend == "cuda":
        checks.append(core.check_driver_toolkit(driver_cuda, nvcc.version if nvcc else None))
    checks.append(core.check_build_sees_gpu(current.manifest.profile if current else None, backends, gpus))
    if current is not None:
        checks.append(core.check_mtp_build(caps.mtp_dialect))
    checks.append(_default_model_check(settings))
    checks.append(core.check_service(service_state() if service_state else None))
    checks.append(core.check_disk("models", free_bytes(settings.models_dir), core.MIN_FREE_MODELS))
    checks.append(core.check_disk("builds", free_bytes(settings.builds_dir), core.MIN_FREE_BUILDS))
    installed = builds.list_builds(settings)
    checks.append(
        core.check_stale_builds(
            [b.id for b in installed],
            _link(settings, "current"),
            _link(settings, "previous"),
            {b.id: tree_size(b.path) for b in installed},
        )
    )
    if hf_cache is None:
        hf_cache = hub_cache_dir()
    cache = hf_cache
    exists = cache is not None and cache.is_dir()
    checks.append(
        core.check_hf_cache(
            str(cache) if cache else None, exists, tree_size(cache) if exists else None, exists and writable(cache)
        )
    )
    checks += _worker_checks(settings, current.manifest.build_number if current else None)
    return DoctorReport(status=core.overall(checks), checks=checks)


def _worker_checks(settings, client_build: int | None) -> list[Check]:
    """Every worker llmtp runs here, and every worker the rpc setting names."""
    from llmtp.services.build import installed as builds
    from llmtp.services.rpc.worker import worker_records

    numbers = {b.id: b.manifest.build_number for b in builds.list_builds(settings)}
    local = {str(Endpoint(r.host, r.port)): r for r in worker_records(settings.state_dir)}
    try:
        wanted = [str(e) for e in parse_endpoints(settings.rpc)] if settings.rpc else []
    except LlmtpError as exc:
        return [Check(name="rpc setting", status="fail", detail=exc.message, fix=exc.hint)]
    out = []
    for address in dict.fromkeys([*local, *wanted]):
        record = local.get(address)
        host, _, port = address.rpartition(":")
        why = connect_error(host.strip("[]"), int(port), 2.0)
        out.append(
            core.check_rpc_worker(
                address,
                None if why == "timed out" and record is not None else why,  # busy: one client at a time
                numbers.get(record.build) if record is not None and record.build else None,
                client_build,
                None if record is None or is_loopback(record.host) else record.host,
            )
        )
    return out


def _default_model_check(settings) -> Check:
    if not settings.default_model:
        return core.check_mtp_model(None, None)
    try:
        from llmtp.adapters.gguf_file import read_model_info
        from llmtp.services.verify.ab_plan import resolve_model_path

        path, sidecar = resolve_model_path(settings.default_model, settings)
        info = read_model_info(path)
    except LlmtpError as exc:
        return Check(
            name="MTP heads in the default model",
            status="warn",
            detail=f"{settings.default_model}: {exc.message}",
            fix=exc.hint,
        )
    return core.check_mtp_model(settings.default_model, info.has_mtp_heads or sidecar is not None)
