"""The calibration store: predicted vs actual memory per model + build (JSON under data_dir), and the
correction it applies to later plans."""

from __future__ import annotations

import json
from pathlib import Path

from llmtp.core.calibrate import CalibrationRecord, correction_factors
from llmtp.core.plan import Plan


def store_path(settings) -> Path:
    return Path(settings.data_dir) / "calibration.json"


def load_records(settings) -> list[CalibrationRecord]:
    p = store_path(settings)
    try:
        data = json.loads(p.read_text(encoding="utf-8")) if p.is_file() else []
        return [CalibrationRecord.model_validate(r) for r in data]
    except (OSError, ValueError):
        return []  # a damaged store only loses the correction, never a plan


def record(settings, rec: CalibrationRecord, keep: int = 50) -> None:
    records = [r for r in load_records(settings)][-(keep - 1):] + [rec]
    p = store_path(settings)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps([r.model_dump() for r in records], indent=2), encoding="utf-8")
    tmp.replace(p)


def apply_corrections(plan: Plan, settings, *, model_key: str) -> Plan:
    """Scale the predicted context/compute buffers by what earlier launches of this model measured."""
    records = [r for r in load_records(settings) if r.model == model_key]
    if not records:
        return plan
    f = correction_factors(records)
    plan = plan.model_copy(deep=True)
    for dev in plan.memory:
        dev.kv_cache = int(dev.kv_cache * f.get("context", 1.0))
        dev.compute = int(dev.compute * f.get("compute", 1.0))
        dev.weights = int(dev.weights * f.get("model", 1.0))
    from llmtp.core.plan import Decision

    plan.decisions.append(Decision(what="calibration", value=", ".join(f"{k} x{v}" for k, v in sorted(f.items())),
                                   reason=f"{len(records)} earlier launch(es) of {model_key} measured by llama-server"))
    return plan
