"""`llmtp doctor`: gather the facts (hardware, builds, disk, caches, service) and run the checklist."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from llmtp.core import doctor as core
from llmtp.core.doctor import Check, Status


class DoctorReport(BaseModel):
    status: Status
    checks: list[Check]


def _free(path: Path) -> int | None:
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def _hf_cache() -> Path | None:
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except Exception:  # huggingface_hub missing or broken: the check says so by skipping
        return None


def _link(settings, name: str) -> str | None:
    try:
        return os.readlink(Path(settings.builds_dir) / name)
    except OSError:
        return None


def run_doctor(settings, *, hw=None, service_state: Callable[[], str | None] | None = None,
               hf_cache: Path | None = None) -> DoctorReport:
    from llmtp.services import builds

    if hw is None:
        from llmtp.services.detect import detect_hardware

        hw = detect_hardware()
    current = builds.current_build(settings)
    caps = current.manifest.capabilities if current else None
    gpus = len(hw.gpus)
    backends = None if caps is None or caps.devices is None else [
        d.id for d in caps.devices if d.backend.upper() not in {"CPU", "BLAS"}]
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
    checks.append(core.check_disk("models", _free(settings.models_dir), core.MIN_FREE_MODELS))
    checks.append(core.check_disk("builds", _free(settings.builds_dir), core.MIN_FREE_BUILDS))
    installed = builds.list_builds(settings)
    checks.append(core.check_stale_builds([b.id for b in installed], _link(settings, "current"),
                                          _link(settings, "previous"), {b.id: _tree_size(b.path) for b in installed}))
    cache = hf_cache if hf_cache is not None else _hf_cache()
    exists = cache is not None and cache.is_dir()
    checks.append(core.check_hf_cache(str(cache) if cache else None, exists,
                                      _tree_size(cache) if exists else None,
                                      exists and os.access(cache, os.W_OK)))
    checks += _worker_checks(settings, current.manifest.build_number if current else None)
    return DoctorReport(status=core.overall(checks), checks=checks)


def _worker_checks(settings, client_build: int | None) -> list[Check]:
    """Every worker llmtp runs here, and every worker the rpc setting names."""
    from llmtp.adapters.ports import connect_error
    from llmtp.core.rpc import Endpoint, is_loopback, parse_endpoints
    from llmtp.errors import LlmtpError
    from llmtp.services import builds
    from llmtp.services.worker import worker_records

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
        out.append(core.check_rpc_worker(
            address, None if why == "timed out" and record is not None else why,  # busy: one client at a time
            numbers.get(record.build) if record is not None and record.build else None, client_build,
            None if record is None or is_loopback(record.host) else record.host))
    return out


def _default_model_check(settings) -> Check:
    from llmtp.errors import LlmtpError

    if not settings.default_model:
        return core.check_mtp_model(None, None)
    try:
        from llmtp.adapters.gguf_file import read_model_info
        from llmtp.services.verify import resolve_model_path

        path, sidecar = resolve_model_path(settings.default_model, settings)
        info = read_model_info(path)
    except LlmtpError as exc:
        return Check(name="MTP heads in the default model", status="warn",
                     detail=f"{settings.default_model}: {exc.message}", fix=exc.hint)
    return core.check_mtp_model(settings.default_model, info.has_mtp_heads or sidecar is not None)
