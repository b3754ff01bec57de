"""The calibration store: predicted vs actual memory per model + build (JSON under data_dir), the
correction later plans apply, and recording a launch from llama-server's own load log."""

from __future__ import annotations

from pathlib import Path

from llmtp.adapters.files import read_json_store, write_json_atomic
from llmtp.core.calibrate import CalibrationRecord, correction_factors, parse_load_log, parse_memory_breakdown
from llmtp.core.plan_types import Decision, Plan

MiB = 1024 * 1024
# The second llama_context of a draft-mtp launch (the draft) starts after this line (b11434):
# 0.01.013.556 I common_speculative_init_result: creating MTP draft context against the target model '/m.gguf'
DRAFT_CONTEXT_MARK = "creating MTP draft context"


def store_path(settings) -> Path:
    return Path(settings.data_dir) / "calibration.json"


def load_records(settings) -> list[CalibrationRecord]:
    """The stored launches ([] when none); a damaged store is a ConfigError (moved aside, never
    silently replaced by the next launch's record)."""
    return read_json_store(
        store_path(settings),
        list[CalibrationRecord],
        default=[],
        what="memory calibration store",
        hint="Run the command again: plans start uncalibrated, and the next launches measure anew.",
    )


def record(settings, rec: CalibrationRecord, keep: int = 50) -> None:
    records = list(load_records(settings))[-(keep - 1) :] + [rec]
    write_json_atomic(store_path(settings), [r.model_dump(mode="json") for r in records])


def factors_for(settings, model_key: str) -> tuple[dict[str, float], int]:
    """(actual/predicted per kind, number of launches measured) for this model; ({}, 0) when none."""
    records = [r for r in load_records(settings) if r.model == model_key]
    return (correction_factors(records), len(records)) if records else ({}, 0)


def calibration_decision(f: dict[str, float], n: int, model_key: str):
    return Decision(
        what="calibration",
        value=", ".join(f"{k} x{v}" for k, v in sorted(f.items())),
        reason=f"{n} earlier launch(es) of {model_key} measured by llama-server",
    )


def predicted_kinds(plan: Plan, corrections: dict[str, float] | None = None) -> dict[str, int]:
    """The plan's prediction per kind, with any correction taken out again (the store keeps raw
    predictions, so factors never compound)."""
    f = corrections or {}
    weights = sum(d.weights for d in plan.memory)
    context = sum(d.kv_cache + d.recurrent_state for d in plan.memory)
    compute = max((d.compute for d in plan.memory), default=0)  # one graph; the busiest backend holds it
    return {
        "model": int(weights / f.get("model", 1.0)),
        "context": int(context / f.get("context", 1.0)),
        "compute": int(compute / f.get("compute", 1.0)),
    }


def actual_kinds(log_text: str) -> dict[str, int] | None:
    """What llama-server allocated for the target model, from this launch's log: the load log's
    buffer lines (printed at -lv 4) or, failing that, the last `memory breakdown [MiB]` table.
    The MTP draft context's buffers are left out: the plan counts them separately (mtp_draft)."""
    target = log_text.split(DRAFT_CONTEXT_MARK, 1)[0]
    buf = parse_load_log(target)
    if buf.buffers:
        compute = max((d.get("compute", 0) for d in buf.buffers.values()), default=0)
        return {"model": buf.total("model"), "context": buf.total("KV") + buf.total("RS"), "compute": compute}
    rows = parse_memory_breakdown(log_text)
    if rows:
        return {
            "model": sum(r.model for r in rows) * MiB,
            "context": sum(r.context for r in rows) * MiB,
            "compute": max(r.compute for r in rows) * MiB,
        }
    return None


def record_launch(
    settings, *, model_key: str, build: str | None, plan: Plan, corrections: dict[str, float] | None, log_text: str
) -> CalibrationRecord | None:
    """Store predicted vs actual for one launch; None when the log says nothing about memory."""
    actual = actual_kinds(log_text)
    if actual is None:
        return None
    rec = CalibrationRecord(
        model=model_key,
        build=build or "external",
        ctx=plan.ctx,
        cache_type=plan.cache_type_k,
        predicted=predicted_kinds(plan, corrections),
        actual=actual,
    )
    record(settings, rec)
    return rec
