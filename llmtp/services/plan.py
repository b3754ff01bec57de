"""`llmtp plan`: hardware (detected, --vram or --gpu) + model metadata -> Plan, and `--check` against
llama-fit-params."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from llmtp.core.plan import GiB, Plan, PlanDevice, PlanHardware, PlanRequest, make_plan
from llmtp.errors import ConfigError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GPUS_PATH = Path(__file__).resolve().parent.parent / "data" / "gpus.toml"
UNIFIED_GPU_SHARE = 0.75  # macOS default GPU working-set limit


class GpuSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    vram_gib: float
    bandwidth_gbps: float
    backend: str
    unified: bool = False


def load_gpus(path: Path = GPUS_PATH) -> dict[str, GpuSpec]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    out = {}
    for key, value in data.get("gpus", {}).items():
        try:
            out[key] = GpuSpec.model_validate(value)
        except Exception as exc:
            raise ConfigError(f"Invalid GPU table {path}: gpus.{key}: {exc}", "Fix the entry.") from exc
    return out


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower().replace("geforce", "").replace("nvidia", "").replace("amd", "").replace("radeon", "").replace("apple", ""))


def find_gpu(name: str, table: dict[str, GpuSpec] | None = None) -> GpuSpec:
    import difflib

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
    raise UsageError(f"Unknown GPU {name!r}", f"Known: {', '.join(table)}." + (f" Did you mean {', '.join(close)}?" if close else ""))


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": GiB, "b": 1, "k": 1024, "ki": 1024, "kib": 1024, "kb": 1000, "m": 1024**2, "mi": 1024**2,
          "mib": 1024**2, "mb": 1000**2, "g": GiB, "gi": GiB, "gib": GiB, "gb": 1000**3,
          "t": 1024**4, "ti": 1024**4, "tib": 1024**4, "tb": 1000**4}


def parse_size(text: str) -> int:
    """'12GiB' -> bytes. GB/MB are decimal, GiB/G binary; a bare number means GiB."""
    m = _SIZE.match(text)
    if not m:
        raise UsageError(f"Cannot read the size {text!r}", "Write it like 12GiB, 24GB or 16384MiB.")
    unit = (m.group(2) or "").lower()
    return int(float(m.group(1)) * _UNITS[unit])


def hardware_from_flags(vram: str | None, gpu: str | None) -> PlanHardware | None:
    if gpu:
        spec = find_gpu(gpu)
        total = int(spec.vram_gib * GiB)
        budget = int(total * UNIFIED_GPU_SHARE) if spec.unified else total
        if vram:
            budget = parse_size(vram)
        return PlanHardware(gpus=[PlanDevice(name=spec.name, free_bytes=budget, bandwidth_gbps=spec.bandwidth_gbps)],
                            ram_bytes=total if spec.unified else None, backend=spec.backend,  # type: ignore[arg-type]
                            unified_memory=spec.unified,
                            ram_bandwidth_gbps=spec.bandwidth_gbps if spec.unified else None)
    if vram:
        return PlanHardware(gpus=[PlanDevice(name=f"GPU ({vram})", free_bytes=parse_size(vram))], backend="cuda")
    return None


def hardware_from_snapshot(snapshot) -> PlanHardware:
    gpus = [g for g in snapshot.gpus if (g.vram_free_bytes or g.vram_total_bytes)]
    if not gpus:
        return PlanHardware(ram_bytes=snapshot.ram_available_bytes, backend="cpu")
    g = gpus[0]
    return PlanHardware(
        gpus=[PlanDevice(name=g.name, free_bytes=int(g.vram_free_bytes or g.vram_total_bytes),
                         bandwidth_gbps=g.memory_bandwidth_gbps)],
        ram_bytes=snapshot.ram_available_bytes, unified_memory=g.unified_memory,
        backend=snapshot.recommendation.profile if snapshot.recommendation.profile != "cpu" else "cuda")


def detected_hardware() -> PlanHardware:
    try:
        from llmtp.services.detect import detect_hardware
    except ImportError:
        import psutil

        return PlanHardware(ram_bytes=psutil.virtual_memory().available, backend="cpu")
    return hardware_from_snapshot(detect_hardware())


@dataclass
class PlanResult:
    ref: str
    downloaded: bool
    source: str
    plan: Plan
    hardware: PlanHardware


def plan_model(ref: str, settings, request: PlanRequest, hardware: PlanHardware | None = None) -> PlanResult:
    from llmtp.services.calibration import apply_corrections
    from llmtp.services.models import resolve_model

    resolved = resolve_model(ref, settings, quant=request.quant)
    hw = hardware or detected_hardware()
    if resolved.entry is not None and resolved.entry.mtp == "sidecar" and request.sidecar is None:
        if resolved.sidecar_path is not None:
            request = request.model_copy(update={"sidecar": str(resolved.sidecar_path),
                                                 "sidecar_bytes": resolved.sidecar_path.stat().st_size})
        else:
            request = request.model_copy(update={"sidecar": resolved.entry.sidecar})
    model = resolved.candidates if (resolved.candidates and not request.quant) else resolved.info
    plan = make_plan(model, hw, request)
    plan = apply_corrections(plan, settings, model_key=resolved.alias or Path(str(resolved.path or ref)).name)
    return PlanResult(ref=ref, downloaded=resolved.downloaded, source=resolved.source, plan=plan, hardware=hw)


def check_with_fit_params(result: PlanResult, settings, runner=None) -> dict:
    """Run llama-fit-params of the current build on the planned model; its fitted flags."""
    from llmtp.core.calibrate import parse_fit_params
    from llmtp.errors import CommandError, ToolMissingError
    from llmtp.services.models import resolve_model

    try:
        from llmtp.services.build import current_build
    except ImportError as exc:
        raise ToolMissingError("No llama.cpp build module yet: cannot run llama-fit-params",
                               "Run `llmtp build` first.") from exc
    build = current_build(settings)
    bin_dir = Path(getattr(build, "bin_dir", None) or Path(build.path) / "bin") if build is not None else None
    exe = bin_dir / "llama-fit-params" if bin_dir else None
    if exe is None or not exe.is_file():
        raise ToolMissingError("The current build has no llama-fit-params", "Rebuild with `llmtp build` (newer llama.cpp).")
    resolved = resolve_model(result.ref, settings, quant=result.plan.quant)
    if resolved.path is None:
        raise UsageError(f"--check needs the file: {result.ref} is not downloaded", f"Run `llmtp models pull {result.ref}`.")
    if runner is None:
        from llmtp.adapters.runner import SubprocessRunner

        runner = SubprocessRunner()
    done = runner.run([str(exe), "-m", str(resolved.path), "-c", str(result.plan.ctx),
                       "-ctk", result.plan.cache_type_k, "-ctv", result.plan.cache_type_v], timeout=300)
    fit = parse_fit_params(done.stdout)
    if done.returncode != 0 or fit is None:
        raise CommandError("llama-fit-params could not fit the model", "See its output below.", argv=done.argv,
                           returncode=done.returncode, details=done.output.strip().splitlines()[-5:])
    return fit.model_dump()
