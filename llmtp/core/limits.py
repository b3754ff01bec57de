"""The bounds of every number a user can give llmtp, defined once.

Each bound is an `Annotated` type carrying an annotated_types.Interval, the constraint vocabulary
pydantic itself uses: Settings fields (LLMTP_* environment, config.toml) validate with the type as is,
CLI options (serve, plan, `service install`, verify, tune, ...) get the same range from `option()`, and
stored records (tuned MTP settings) validate with it too. A value outside its range stops at the edge with
a usage or config error (exit 2) and never reaches llama-server or the planner.

Imports only annotated_types (pydantic's own dependency, cheap): command modules load this at import.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from annotated_types import Interval

# llama.cpp pads n_ctx up to a multiple of 256 (src/llama-context.cpp), so less is never served; the top is
# far above any trained context (10M is the largest seen) yet keeps the planner's arithmetic finite.
# 0 ("from the model" to llama-server) is not a size: leave --ctx out and llmtp plans the context.
CTX_MIN, CTX_MAX = 256, 1 << 24
# llama.cpp refuses n_seq_max > LLAMA_MAX_SEQ = 256 (src/llama-cparams.h) and 0 slots.
PARALLEL_MAX = 256
# ggml's GGML_MAX_N_THREADS; llama.cpp reads -t <= 0 as "all cores", which is not what a bound number means.
THREADS_MAX = 512

Port = Annotated[int, Interval(ge=1, le=65535)]
Ctx = Annotated[int, Interval(ge=CTX_MIN, le=CTX_MAX)]
Parallel = Annotated[int, Interval(ge=1, le=PARALLEL_MAX)]
Clients = Annotated[int, Interval(ge=1, le=PARALLEL_MAX)]  # --clients N: one slot per client
Threads = Annotated[int, Interval(ge=1, le=THREADS_MAX)]
BuildJobs = Annotated[int, Interval(ge=1, le=1024)]
Runs = Annotated[int, Interval(ge=1, le=1000)]
Warmups = Annotated[int, Interval(ge=0, le=100)]
NPredict = Annotated[int, Interval(ge=1, le=CTX_MAX)]
Fraction = Annotated[float, Interval(ge=0.0, le=1.0)]  # a share: --tolerance 0.10 = 10%, --spec-draft-p-min
Gain = Annotated[float, Interval(ge=0.0, le=10.0)]  # a required speedup: 0.03 = 3%
Temperature = Annotated[float, Interval(ge=0.0, le=2.0)]  # the OpenAI API's range, which llama-server takes
DraftTokens = Annotated[int, Interval(ge=0, le=128)]  # --spec-draft-n-max/-n-min; tune sweeps 1-6
LogLines = Annotated[int, Interval(ge=0, le=1_000_000)]
Keep = Annotated[int, Interval(ge=0, le=1000)]
VramBytes = Annotated[int, Interval(ge=256 * 2**20, le=16 * 2**40)]  # --vram: 256 MiB .. 16 TiB
BudgetSeconds = Annotated[float, Interval(ge=1.0, le=86_400.0)]  # verify --budget: 1 s .. a day
WorkerMemMiB = Annotated[int, Interval(ge=1, le=16 * 2**20)]  # `worker start --mem`: 1 MiB .. 16 TiB per device
ModelsMax = Annotated[int, Interval(ge=1, le=64)]  # a router's children at once (llama-server --models-max)
IdleSeconds = Annotated[int, Interval(ge=1, le=7 * 86_400)]  # --idle-unload: a second .. a week
Bandwidth = Annotated[float, Interval(ge=1.0, le=100_000.0)]  # GB/s: DDR3 single channel .. HBM3e
BudgetSeconds = Annotated[float, Interval(ge=1.0, le=86400.0)]  # verify --budget: a second .. a day


def bounds(kind: Any) -> tuple[float | int | None, float | int | None]:
    """(lowest, highest) allowed by a bound type above."""
    for meta in getattr(kind, "__metadata__", ()):
        if isinstance(meta, Interval):
            return meta.ge, meta.le
    raise TypeError(f"{kind!r} carries no Interval")


def _base(kind: Any) -> type:
    return kind.__origin__


def _finite(value: Any) -> Any:
    """typer callback: refuse nan and inf, which click's FloatRange (typer < 0.26) lets through."""
    if value is not None and not math.isfinite(value):
        import typer

        raise typer.BadParameter(f"{value} is not a finite number.")
    return value


def _all_finite(values: Any) -> Any:
    """The same for a repeatable option. typer < 0.26 hands the callback None for "not given" and then
    needs a sequence back (None would fail in its list converter); every version reads [] as not given."""
    for value in values or ():
        _finite(value)
    return [] if values is None else values


def option(kind: Any, *, many: bool = False) -> dict[str, Any]:
    """typer.Option keyword arguments enforcing `kind`'s range: `typer.Option(None, **option(Port))`;
    `many` for a repeatable option (a list).

    typer reports a value outside the range as its own usage error (exit 2), on every supported version."""
    lo, hi = bounds(kind)
    kwargs: dict[str, Any] = {"min": lo, "max": hi}
    if _base(kind) is float:
        kwargs["callback"] = _all_finite if many else _finite
    return kwargs
