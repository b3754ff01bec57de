"""Parsers for what llama.cpp reports about its own memory, and the predicted-vs-actual correction.

Ground truth comes from three places: the load log's buffer lines, the `memory breakdown [MiB]` table
printed at load (with -lv 4) and at exit, and llama-fit-params' fitted flags.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field

MiB = 1024 * 1024

# load_tensors:   CPU_Mapped model buffer size =    92.10 MiB
# llama_kv_cache:        CPU KV buffer size =    90.00 MiB
# sched_reserve:        CPU compute buffer size =    18.64 MiB
# llama_context:        CPU  output buffer size =     0.75 MiB
# llama_memory_recurrent:        CPU RS buffer size =   149.62 MiB
_BUFFER = re.compile(
    r"(?P<fn>\w+):\s+(?P<dev>\S+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[\d.]+) MiB"
)
# llama_context: n_ctx                 = 4096
_NCTX = re.compile(r"llama_context: n_ctx\s+=\s+(\d+)")
# memory breakdown rows (common/fit.cpp templates):
# |   - CUDA0 (RTX 4090)   | 24080 = 1234 + (22000 = 20000 + 1500 + 500) + 846 |
# |   - Host               |                  200 =    92 +      90 +      18                |
_GPU_ROW = re.compile(
    r"\|\s+- (?P<name>.+?)\s+\|\s*(?P<total>-?\d+)\s*=\s*(?P<free>-?\d+)\s*\+\s*"
    r"\(\s*(?P<self>-?\d+)\s*=\s*(?P<model>-?\d+)\s*\+\s*(?P<context>-?\d+)\s*\+\s*"
    r"(?P<compute>-?\d+)\s*\)\s*\+\s*(?P<unacc>-?\d+)\s*\|"
)
_HOST_ROW = re.compile(
    r"\|\s+- (?P<name>.+?)\s+\|\s*(?P<self>-?\d+)\s*=\s*(?P<model>-?\d+)\s*\+\s*"
    r"(?P<context>-?\d+)\s*\+\s*(?P<compute>-?\d+)\s*\|"
)
# llama-fit-params stdout: -c 8192 -ngl -1   (optionally -ts a,b and -ot ...)
_FIT = re.compile(r"^-c (?P<ctx>\d+) -ngl (?P<ngl>-?\d+)(?P<rest>.*)$", re.MULTILINE)


class LoadBuffers(BaseModel):
    """Bytes per device and kind from the load log (kind: model, KV, compute, output, RS)."""

    n_ctx: int | None = None
    buffers: dict[str, dict[str, int]] = Field(default_factory=dict)  # device -> kind -> bytes

    def total(self, kind: str) -> int:
        return sum(d.get(kind, 0) for d in self.buffers.values())


class BreakdownRow(BaseModel):
    name: str
    model: int  # MiB
    context: int
    compute: int
    self_: int
    total: int | None = None
    free: int | None = None
    unaccounted: int | None = None


class FitParams(BaseModel):
    ctx: int
    n_gpu_layers: int
    extra: list[str] = Field(default_factory=list)


def parse_load_log(text: str) -> LoadBuffers:
    out = LoadBuffers()
    for line in text.splitlines():
        m = _BUFFER.search(line)
        if m:
            dev = m.group("dev").replace("_Mapped", "").replace("_Host", "")
            kinds = out.buffers.setdefault(dev, {})
            kinds[m.group("kind")] = kinds.get(m.group("kind"), 0) + int(round(float(m.group("mib")) * MiB))
            continue
        m = _NCTX.search(line)
        if m:
            out.n_ctx = int(m.group(1))
    return out


def parse_memory_breakdown(text: str) -> list[BreakdownRow]:
    """The LAST `memory breakdown [MiB]` table in the text (the exit one when both are present)."""
    rows: list[BreakdownRow] = []
    for line in text.splitlines():
        if "memory breakdown [MiB]" in line:
            rows = []
            continue
        m = _GPU_ROW.search(line)
        if m:
            rows.append(
                BreakdownRow(
                    name=m.group("name").strip(),
                    model=int(m.group("model")),
                    context=int(m.group("context")),
                    compute=int(m.group("compute")),
                    self_=int(m.group("self")),
                    total=int(m.group("total")),
                    free=int(m.group("free")),
                    unaccounted=int(m.group("unacc")),
                )
            )
            continue
        m = _HOST_ROW.search(line)
        if m:
            rows.append(
                BreakdownRow(
                    name=m.group("name").strip(),
                    model=int(m.group("model")),
                    context=int(m.group("context")),
                    compute=int(m.group("compute")),
                    self_=int(m.group("self")),
                )
            )
    return rows


def parse_fit_params(stdout: str) -> FitParams | None:
    m = _FIT.search(stdout)
    if not m:
        return None
    return FitParams(ctx=int(m.group("ctx")), n_gpu_layers=int(m.group("ngl")), extra=m.group("rest").split())


class CalibrationRecord(BaseModel):
    model: str
    build: str
    ctx: int
    cache_type: str
    predicted: dict[str, int]  # kind -> bytes (model, context, compute)
    actual: dict[str, int]


def correction_factors(
    records: list[CalibrationRecord], *, limit: tuple[float, float] = (0.8, 1.5)
) -> dict[str, float]:
    """Mean actual/predicted per kind, clamped so one odd run cannot wreck later plans."""
    sums: dict[str, list[float]] = {}
    for r in records:
        for kind, pred in r.predicted.items():
            act = r.actual.get(kind)
            if pred > 0 and act is not None:
                sums.setdefault(kind, []).append(act / pred)
    lo, hi = limit
    return {k: round(min(hi, max(lo, sum(v) / len(v))), 4) for k, v in sums.items()}
