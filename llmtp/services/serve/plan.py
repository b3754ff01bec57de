"""`llmtp plan`: hardware (detected, --vram or --gpu) + model metadata -> Plan, and `--check` against
llama-fit-params."""

from __future__ import annotations

import difflib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from llmtp.adapters import amd_sysfs, files, nvml, shipped
from llmtp.adapters.runner import SubprocessRunner
from llmtp.core import limits
from llmtp.core.calibrate import parse_fit_params
from llmtp.core.plan import make_plan
from llmtp.core.plan_types import GiB, Plan, PlanDevice, PlanHardware, PlanRequest
from llmtp.errors import CommandError, ConfigError, ToolMissingError, UsageError
from llmtp.services.machine.detect import detect_hardware
from llmtp.services.machine.vulkan_detect import gpus_of_build
from llmtp.services.models.resolve import resolve_model
from llmtp.services.stores import mtp_settings
from llmtp.services.stores.calibration import calibration_decision, factors_for

if TYPE_CHECKING:
    from llmtp.services.models.resolve import ResolvedModel

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GPUS_PATH = Path(str(shipped.data_file("gpus.toml")))
UNIFIED_GPU_SHARE = 0.75  # macOS default GPU working-set limit


class GpuSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    vram_gib: float
    bandwidth_gbps: float
    backend: str
    unified: bool = False


def load_gpus(path: Path = GPUS_PATH) -> dict[str, GpuSpec]:
    data = tomllib.loads(files.read_text(path))
    out = {}
    for key, value in data.get("gpus", {}).items():
        try:
            out[key] = GpuSpec.model_validate(value)
        except Exception as exc:
            raise ConfigError(f"Invalid GPU table {path}: gpus.{key}: {exc}", "Fix the entry.") from exc
    return out


def _norm(s: str) -> str:
    return re.sub(
        r"[^a-z0-9]",
        "",
        s.lower()
        .replace("geforce", "")
        .replace("nvidia", "")
        .replace("amd", "")
        .replace("radeon", "")
        .replace("apple", ""),
    )


def find_gpu(name: str, table: dict[str, GpuSpec] | None = None) -> GpuSpec:
    table = table or load_gpus()
    want = _norm(name)
    for key, spec in table.items():
        if want in (_norm(key), _norm(spec.name)):
            return spec
    # "4090" or "3060" alone: a unique key containing it
    hits = [spec for key, spec in table.items() if want and want in _norm(key)]
    if len(hits) == 1:
        return hits[0]
    close = difflib.get_close_matches(name.lower(), list(table), n=3, cutoff=0.4)
    raise UsageError(
        f"Unknown GPU {name!r}", f"Known: {', '.join(table)}." + (f" Did you mean {', '.join(close)}?" if close else "")
    )


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {
    "": GiB,
    "b": 1,
    "k": 1024,
    "ki": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mi": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": GiB,
    "gi": GiB,
    "gib": GiB,
    "gb": 1000**3,
    "t": 1024**4,
    "ti": 1024**4,
    "tib": 1024**4,
    "tb": 1000**4,
}


def parse_size(text: str) -> int:
    """'12GiB' -> bytes. GB/MB are decimal, GiB/G binary; a bare number means GiB."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"Cannot read the size {text!r}", "Write it like 12GiB, 24GB or 16384MiB.")
    unit = (m.group(2) or "").lower()
    return int(float(m.group(1)) * _UNITS[unit])


def parse_vram(text: str) -> int:
    """--vram: a size within core.limits.VramBytes (a 0 or 100 TiB budget is a typo, not a card)."""

    size = parse_size(text)
    lo, hi = limits.bounds(limits.VramBytes)
    if not lo <= size <= hi:
        raise UsageError(f"--vram {text} is outside 256MiB..16TiB", "Give the GPU memory to plan for, e.g. 12GiB.")
    return size


def hardware_from_flags(vram: str | None, gpu: str | None) -> PlanHardware | None:
    if gpu:
        spec = find_gpu(gpu)
        total = int(spec.vram_gib * GiB)
        budget = int(total * UNIFIED_GPU_SHARE) if spec.unified else total
        if vram:
            budget = parse_vram(vram)
        return PlanHardware(
            gpus=[PlanDevice(name=spec.name, free_bytes=budget, bandwidth_gbps=spec.bandwidth_gbps)],
            ram_bytes=total if spec.unified else None,
            backend=spec.backend,  # type: ignore[arg-type]
            unified_memory=spec.unified,
            ram_bandwidth_gbps=spec.bandwidth_gbps if spec.unified else None,
        )
    if vram:  # a GPU of this size, of no named kind: its backend is unknown
        return PlanHardware(gpus=[PlanDevice(name=f"GPU ({vram})", free_bytes=parse_vram(vram))], backend=None)
    return None


def plan_hardware(gpus, ram_bytes: int | None, backend: str | None) -> PlanHardware:
    """Detected GPUs (core.hardware.GPU) and available RAM -> what the planner plans for: the first GPU
    that reports memory, else the CPU alone. `backend` "cpu" (a build that cannot use a GPU) plans for
    the CPU whatever GPUs there are; None (unknown) stays None, never a guessed "cuda"."""
    usable = [g for g in gpus if (g.vram_free_bytes or g.vram_total_bytes)]
    if not usable or backend == "cpu":
        return PlanHardware(ram_bytes=ram_bytes, backend="cpu")
    g = usable[0]
    return PlanHardware(
        gpus=[
            PlanDevice(
                name=g.name,
                free_bytes=int(g.vram_free_bytes or g.vram_total_bytes),
                bandwidth_gbps=g.memory_bandwidth_gbps,
            )
        ],
        ram_bytes=ram_bytes,
        unified_memory=g.unified_memory,
        backend=backend,
    )  # type: ignore[arg-type]


def hardware_from_snapshot(snapshot) -> PlanHardware:
    """A detection snapshot -> planning hardware; the backend is the recommended build's (a GPU profile),
    None when the recommendation names none for the GPU found."""
    profile = snapshot.recommendation.profile
    return plan_hardware(snapshot.gpus, snapshot.ram_available_bytes, None if profile == "cpu" else profile)


def detected_hardware() -> PlanHardware:
    return hardware_from_snapshot(detect_hardware())


_BACKENDS = {"cuda": "cuda", "rocm": "rocm", "hip": "rocm", "mtl": "metal", "metal": "metal", "vulkan": "vulkan"}


def build_backend(caps) -> str | None:
    """The backend a binary was built for, from its --list-devices: "cpu" when it lists none
    (a CPU build ignores -ngl), None when the devices were never probed."""
    if caps is None or caps.devices is None:
        return None
    for d in caps.devices:
        b = _BACKENDS.get(d.backend.lower())
        if b is not None:
            return b
    return "cpu"


def hardware_for_build(
    caps=None, *, gpus=None, memory=None, not_counting: frozenset[int] = frozenset()
) -> PlanHardware:
    """Planning hardware for a launch on this build: free VRAM and RAM right now (NVML / sysfs /
    psutil), backend from the build. Unlike detect_hardware it probes no toolchains (that costs
    ~0.2 s of subprocesses, and serve's start-up budget is 0.3 s). macOS takes the full detection.
    `not_counting`: pids whose memory is the plan's to give (a warm-started llama-server)."""
    backend = build_backend(caps)
    if sys.platform == "darwin":
        hw = detected_hardware()
    else:
        if gpus is None and backend == "cpu":
            gpus = []  # a CPU build: no need to ask NVML (its import alone costs ~50 ms)
        if gpus is None:
            gpus = (
                nvml.read_nvidia_gpus(None, not_counting=not_counting)[0] + amd_sysfs.read_amd_gpus(Path("/"), None)[0]
            )
            if backend == "vulkan" and not gpus:  # a Vulkan device NVML and sysfs do not see: the build's own list
                gpus = gpus_of_build(caps)
        if memory is None:
            from llmtp.adapters.cpuinfo import memory
        hw = plan_hardware(gpus, memory(not_counting)[1], backend)
    if backend == "cpu" and hw.gpus:  # a GPU in the machine, but this build cannot use it
        hw = PlanHardware(ram_bytes=hw.ram_bytes, ram_bandwidth_gbps=hw.ram_bandwidth_gbps, backend="cpu")
    return hw


@dataclass
class PlanResult:
    ref: str
    downloaded: bool
    source: str
    plan: Plan
    hardware: PlanHardware
    resolved: ResolvedModel | None = None
    calibration_key: str | None = None
    corrections: dict[str, float] = field(default_factory=dict)  # applied to this plan


def calibration_key(resolved: ResolvedModel, ref: str) -> str:
    """What calibration records are filed under: the alias, else the file name."""
    return resolved.alias or Path(str(resolved.path or ref)).name


def plan_model(ref: str, settings, request: PlanRequest, hardware: PlanHardware | None = None) -> PlanResult:
    resolved = resolve_model(ref, settings, quant=request.quant)
    if request.acceptance is None:
        acceptance = measured_acceptance(settings, resolved)
        if acceptance is not None:
            request = request.model_copy(update={"acceptance": acceptance})
    return plan_resolved(resolved, settings, request, hardware or detected_hardware())


def measured_acceptance(settings, resolved: ResolvedModel) -> float | None:
    """The MTP draft acceptance `llmtp tune` measured on this file, if it ran; None otherwise (the
    planner then assumes core.speed.DEFAULT_ACCEPTANCE and says so). Not on serve's path: it hashes
    the file's ends."""

    path = Path(str(resolved.path)) if resolved.path is not None else None
    if path is None or not path.is_file():
        return None
    record = mtp_settings.load_record(settings, mtp_settings.model_key(path))
    return record.acceptance if record is not None else None


def plan_resolved(resolved: ResolvedModel, settings, request: PlanRequest, hw: PlanHardware) -> PlanResult:
    """Plan an already resolved model; earlier launches' measurements correct the memory model."""

    if resolved.entry is not None and resolved.entry.mtp == "sidecar" and request.sidecar is None:
        if resolved.sidecar_path is not None:
            request = request.model_copy(
                update={"sidecar": str(resolved.sidecar_path), "sidecar_bytes": files.file_size(resolved.sidecar_path)}
            )
        else:  # not downloaded: the draft the hub lists (its size), else the catalog's pattern
            request = request.model_copy(
                update={
                    "sidecar": resolved.sidecar_listed or resolved.entry.sidecar,
                    "sidecar_bytes": resolved.sidecar_listed_bytes,
                }
            )
    key = calibration_key(resolved, resolved.ref)
    factors, n = factors_for(settings, key)
    if factors and not request.corrections:
        request = request.model_copy(update={"corrections": factors})
    model = resolved.candidates if (resolved.candidates and not request.quant) else resolved.info
    plan = make_plan(model, hw, request)
    if request.corrections:
        plan.decisions.append(calibration_decision(request.corrections, n, key))
    return PlanResult(
        ref=resolved.ref,
        downloaded=resolved.downloaded,
        source=resolved.source,
        plan=plan,
        hardware=hw,
        resolved=resolved,
        calibration_key=key,
        corrections=dict(request.corrections),
    )


def check_with_fit_params(result: PlanResult, settings, runner=None) -> dict:
    """Run llama-fit-params of the current build on the planned model; its fitted flags."""
    from llmtp.services.build.installed import current_build

    build = current_build(settings)
    bin_dir = Path(getattr(build, "bin_dir", None) or Path(build.path) / "bin") if build is not None else None
    exe = bin_dir / "llama-fit-params" if bin_dir else None
    if exe is None or not exe.is_file():
        raise ToolMissingError(
            "The current build has no llama-fit-params", "Rebuild with `llmtp build` (newer llama.cpp)."
        )
    resolved = resolve_model(result.ref, settings, quant=result.plan.quant)
    if resolved.path is None:
        raise UsageError(
            f"--check needs the file: {result.ref} is not downloaded", f"Run `llmtp models pull {result.ref}`."
        )
    if runner is None:
        runner = SubprocessRunner()
    done = runner.run(
        [
            str(exe),
            "-m",
            str(resolved.path),
            "-c",
            str(result.plan.ctx),
            "-ctk",
            result.plan.cache_type_k,
            "-ctv",
            result.plan.cache_type_v,
        ],
        timeout=300,
    )
    fit = parse_fit_params(done.stdout)
    if done.returncode != 0 or fit is None:
        raise CommandError(
            "llama-fit-params could not fit the model",
            "See its output below.",
            argv=done.argv,
            returncode=done.returncode,
            details=done.output.strip().splitlines()[-5:],
        )
    return fit.model_dump()
