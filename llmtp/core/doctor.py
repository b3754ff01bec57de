"""`llmtp doctor`, pure part: one check per fact, each failure with the fix. Inputs are plain values."""

from __future__ import annotations

from typing import Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel

Status = Literal["ok", "warn", "fail", "skip"]
GiB = 1024**3
MIN_FREE_MODELS = 20 * GiB  # one 27B Q4 model and room to download the next
MIN_FREE_BUILDS = 2 * GiB  # one CUDA build tree


class Check(BaseModel):
    name: str
    status: Status
    detail: str
    fix: str | None = None


def _v(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def check_driver_toolkit(driver_cuda: str | None, toolkit: str | None) -> Check:
    """A CUDA build needs a driver that supports at least the toolkit it was compiled with."""
    name = "driver vs build toolkit"
    d, t = _v(driver_cuda), _v(toolkit)
    if d is None or t is None:
        return Check(
            name=name,
            status="skip",
            detail=f"driver CUDA {driver_cuda or 'unknown'}, build toolkit {toolkit or 'unknown'}",
        )
    if (t.major, t.minor) > (d.major, d.minor):
        return Check(
            name=name,
            status="fail",
            detail=f"build uses CUDA {toolkit}, driver supports up to {driver_cuda}",
            fix="update the NVIDIA driver, or rebuild with an older CUDA toolkit (`llmtp build`)",
        )
    return Check(name=name, status="ok", detail=f"driver CUDA {driver_cuda} >= toolkit {toolkit}")


def check_build_sees_gpu(profile: str | None, device_backends: list[str] | None, machine_gpus: int) -> Check:
    name = "build sees the GPU"
    if profile is None:
        return Check(name=name, status="fail", detail="no current build", fix="run `llmtp build`")
    if device_backends is None:
        return Check(name=name, status="skip", detail="--list-devices not probed")
    if profile == "cpu":
        if machine_gpus:
            return Check(
                name=name,
                status="warn",
                detail="CPU build on a machine with a GPU",
                fix="run `llmtp build` for the GPU profile",
            )
        return Check(name=name, status="ok", detail="CPU build, no GPU on this machine")
    if not device_backends:
        return Check(
            name=name,
            status="fail",
            detail=f"{profile} build lists no device in --list-devices",
            fix="check the driver (nvidia-smi / rocminfo), then rebuild with `llmtp build`",
        )
    return Check(name=name, status="ok", detail="devices: " + ", ".join(device_backends))


def check_mtp_build(mtp_dialect: str | None) -> Check:
    name = "MTP in the build"
    if mtp_dialect is None:
        return Check(
            name=name,
            status="fail",
            detail="--spec-type offers no draft-mtp",
            fix="build a llama.cpp release >= b9180 with `llmtp build`",
        )
    return Check(name=name, status="ok", detail=f"{mtp_dialect} dialect")


def check_mtp_model(model: str | None, has_heads: bool | None) -> Check:
    name = "MTP heads in the default model"
    if model is None or has_heads is None:
        return Check(name=name, status="skip", detail="no default model set")
    if not has_heads:
        return Check(
            name=name,
            status="warn",
            detail=f"{model} has no MTP (nextn) layers",
            fix="pick a GGUF that keeps the MTP heads (see `llmtp plan`), or accept plain decoding",
        )
    return Check(name=name, status="ok", detail=f"{model} carries MTP heads")


def check_service(state: str | None) -> Check:
    """`state` is systemd's ActiveState (active, failed, inactive, ...) or None when no unit is installed."""
    name = "service unit"
    if state is None:
        return Check(name=name, status="skip", detail="no llmtp service installed")
    if state == "active":
        return Check(name=name, status="ok", detail="active")
    if state == "failed":
        return Check(
            name=name,
            status="fail",
            detail="the unit failed",
            fix="read `llmtp service logs`, then `llmtp service restart`",
        )
    return Check(name=name, status="warn", detail=state, fix="start it with `llmtp service restart`")


def check_disk(what: str, free_bytes: int | None, needed: int) -> Check:
    name = f"disk space for {what}"
    if free_bytes is None:
        return Check(name=name, status="skip", detail="unknown")
    free = f"{free_bytes / GiB:.1f} GiB free"
    if free_bytes < needed:
        return Check(
            name=name,
            status="fail",
            detail=f"{free}, want {needed / GiB:.0f} GiB",
            fix=f"free space or move the {what} directory (see `llmtp config show`)",
        )
    return Check(name=name, status="ok", detail=free)


def check_stale_builds(build_ids: list[str], current: str | None, previous: str | None, sizes: dict[str, int]) -> Check:
    """Builds other than current and its rollback target only take disk space."""
    name = "stale builds"
    stale = [b for b in build_ids if b not in {current, previous}]
    if not stale:
        return Check(name=name, status="ok", detail=f"{len(build_ids)} build(s), none stale")
    size = sum(sizes.get(b, 0) for b in stale)
    return Check(
        name=name,
        status="warn",
        detail=f"{len(stale)} stale: {', '.join(stale)} ({size / GiB:.1f} GiB)",
        fix="delete their directories under the builds directory (current and previous are kept)",
    )


def check_hf_cache(path: str | None, exists: bool, size_bytes: int | None, writable: bool) -> Check:
    name = "Hugging Face cache"
    if path is None or not exists:
        return Check(name=name, status="ok", detail="no cache yet")
    if not writable:
        return Check(
            name=name,
            status="fail",
            detail=f"{path} is not writable",
            fix="fix its ownership, or set HF_HOME to a writable directory",
        )
    size = f"{size_bytes / GiB:.1f} GiB" if size_bytes is not None else "size unknown"
    return Check(name=name, status="ok", detail=f"{path}: {size}")


def overall(checks: list[Check]) -> Status:
    statuses = {c.status for c in checks}
    return "fail" if "fail" in statuses else "warn" if "warn" in statuses else "ok"


def check_rpc_worker(
    address: str, unreachable: str | None, worker_build: int | None, client_build: int | None, exposed_on: str | None
) -> Check:
    """One RPC worker: it answers, runs the client's llama.cpp build (the RPC protocol has no version
    negotiation across builds), and binds to loopback (`exposed_on`: its non-loopback bind address)."""
    name = f"RPC worker {address}"
    if unreachable is not None:
        return Check(
            name=name,
            status="fail",
            detail=f"not reachable ({unreachable})",
            fix="start it there with `llmtp worker start`, or drop it from the rpc setting",
        )
    if worker_build is not None and client_build is not None and worker_build != client_build:
        return Check(
            name=name,
            status="fail",
            detail=f"worker runs build {worker_build}, this client {client_build}",
            fix="build the same llama.cpp on both (`llmtp build --rpc`), then restart the worker",
        )
    build = (
        f"build {worker_build}"
        if worker_build is not None
        else "build unknown (not started by this llmtp: run `llmtp doctor` on its host)"
    )
    if exposed_on is not None:
        return Check(
            name=name,
            status="warn",
            detail=f"answers, {build}, bound to {exposed_on}: the RPC protocol has "
            "no authentication, anyone reaching it can run tensors there",
            fix="bind to 127.0.0.1 unless every host on that network is trusted",
        )
    return Check(name=name, status="ok", detail=f"answers, {build}")
