"""The quant rule, pure: every quant x KV type placed (core.placement) and predicted, the choice among
them, and why each other candidate lost (the rows of `llmtp plan --compare`)."""

from __future__ import annotations

from collections.abc import Sequence

from llmtp.core import memory as mem
from llmtp.core import placement as pl
from llmtp.core import speed as spd
from llmtp.core.catalog import NOMINAL_BPW
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.plan_types import (
    FFN_SPILL_TOLERANCE,
    QUALITY_LADDER,
    SPEED_FRACTION,
    TOP_DEFAULT_BPW,
    Candidate,
    PlanHardware,
    PlanRequest,
)


def quant_rule() -> dict:
    """The quant rule as data, for `plan --json` and the compare table's header."""
    return {
        "ladder": list(QUALITY_LADDER),
        "default_top": "Q8_0",
        "speed_fraction": SPEED_FRACTION,
        "default_acceptance": spd.DEFAULT_ACCEPTANCE,
        "text": (
            f"highest quality up to Q8_0 (more only with --quant) whose predicted speed is >= "
            f"{SPEED_FRACTION:.0%} of the fastest full fit's; with no full fit, the fastest"
        ),
    }


def quality_bpw(info: ModelInfo) -> float | None:
    """Bits per weight: the quant's nominal width, else the file's size over its parameters."""
    name = (info.quant or "").upper().removeprefix("UD-")
    if name in NOMINAL_BPW:
        return NOMINAL_BPW[name]
    if info.file_size_bytes and info.param_count:
        return info.file_size_bytes * 8 / info.param_count
    return None


def _above_default(info: ModelInfo) -> bool:
    bpw = quality_bpw(info)
    return bpw is not None and bpw > TOP_DEFAULT_BPW + 0.01


def _quality_key(info: ModelInfo) -> tuple[float, int]:
    # for one model a bigger file keeps more bits per weight: the file size breaks ties and orders
    # quants whose width is unknown
    return (quality_bpw(info) or 0.0, info.file_size_bytes or 0)


def _runs(t: pl.Trial, info: ModelInfo) -> str:
    n = mem.trunk_layers(info)
    if t.gpu is None:
        return "CPU" if t.fits else "does not fit in RAM"
    if not t.fits:
        return "does not fit"
    if t.n_cpu_moe:
        return f"GPU + CPU experts ({t.n_cpu_moe} layers)"
    if t.n_cpu_ffn:
        return f"GPU + {t.n_cpu_ffn} FFN on CPU"
    if t.ngl >= n:
        return "GPU"
    return f"GPU {t.ngl}/{n} layers + CPU"


def _is_full(t: pl.Trial, info: ModelInfo) -> bool:
    return t.fits and (t.gpu is None or (t.ngl > mem.trunk_layers(info) and not t.n_cpu_moe and not t.n_cpu_ffn))


def _variants(
    c: ModelInfo, hw: PlanHardware, req: PlanRequest, *, ctx_target: int, ctx_floor: int, caches: list[str], fa: bool
) -> tuple[list[pl.Trial], pl.Trial, dict[int, list[pl.Trial]]]:
    """Every KV type of one quant at its largest fitting context (else split at the floor context),
    and the one the memory rules take: the largest context fully placed, then the better KV type;
    else the split with the lightest KV type. Also, per trial (by id), the split placements it beat."""
    mtp, _ = pl.mtp_state(c, req)
    on_gpu = pl.budget(hw) is not None
    trials: list[pl.Trial] = []
    beaten: dict[int, list[pl.Trial]] = {}
    rep: pl.Trial | None = None
    for cache in caches:
        t = pl.fit_full(c, hw, req, ctx_start=ctx_target, ctx_floor=ctx_floor, caches=[cache], mtp=mtp, fa=fa)
        if t is None:
            if on_gpu:
                t, losers = pl.split(c, hw, req, ctx=ctx_floor, cache=cache, mtp=mtp, fa=fa)
                beaten[id(t)] = losers
            else:
                t = pl.trial(c, hw, req, ngl=0, n_cpu_moe=0, ctx=ctx_floor, cache=cache, mtp=mtp, fa=fa)
        elif rep is None or t.ctx > rep.ctx:
            rep = t
        trials.append(t)
    if rep is None:
        rep = trials[-1]
    return trials, rep, beaten


def _row(c: ModelInfo, hw: PlanHardware, req: PlanRequest, t: pl.Trial, mtp: bool) -> Candidate:
    """One compare row; `relative` holds the raw rank until choose_quant divides it by the pace."""
    sp = pl.speed(c, hw, req, t, mtp)
    return Candidate(
        quant=c.quant,
        file_size_bytes=c.file_size_bytes,
        runs=_runs(t, c),
        full=_is_full(t, c),
        fits=t.fits,
        n_gpu_layers=(pl.llama_ngl(c, t.ngl) if t.gpu else None),
        n_cpu_moe=t.n_cpu_moe or None,
        n_cpu_ffn=t.n_cpu_ffn or None,
        ctx=t.ctx,
        cache=t.cache,
        gpu_bytes=t.gpu.total if t.gpu else None,
        cpu_bytes=t.cpu.total,
        plain_tok_s=sp.plain_tok_s,
        mtp_tok_s=sp.mtp_tok_s,
        assumed=sp.assumed,
        relative=sp.rank,
    )


def choose_quant(
    quants: Sequence[ModelInfo],
    hw: PlanHardware,
    req: PlanRequest,
    *,
    forced: ModelInfo | None,
    ctx_target: int,
    ctx_floor: int,
    caches: list[str],
    fa: bool,
) -> tuple[ModelInfo, pl.Trial, str, list[Candidate]]:
    """The quant rule: among the quants that fit, up to Q8_0 unless one was asked for, the highest
    quality whose predicted delivered speed is at least SPEED_FRACTION of the fastest fully placed
    candidate's; when none is fully placed (all split with the CPU), the fastest."""
    rows: list[tuple[ModelInfo, pl.Trial, Candidate, bool]] = []  # (quant, trial, row, is the quant's pick)
    for c in quants:
        mtp, _ = pl.mtp_state(c, req)
        trials, rep, beaten = _variants(c, hw, req, ctx_target=ctx_target, ctx_floor=ctx_floor, caches=caches, fa=fa)
        for t in trials:
            row = _row(c, hw, req, t, mtp)
            rows.append((c, t, row, t is rep))
            if t is not rep:
                row.lost = (
                    f"{c.quant} runs with {rep.cache} KV"
                    + (f" at {rep.ctx}" if rep.ctx != t.ctx else "")
                    + (
                        ": the largest context, then the better KV type"
                        if _is_full(rep, c)
                        else ": split, the lightest KV keeps most layers on the GPU"
                    )
                )
            for loser in beaten.get(id(t), []):  # the other split of this KV type, shown with why it lost
                other = _row(c, hw, req, loser, mtp)
                share = f" ({other.relative / row.relative:.0%} of its speed)" if row.relative else ""
                other.lost = (
                    f"predicted slower than {row.runs}{share}"
                    if other.relative <= row.relative
                    else f"predicted within {FFN_SPILL_TOLERANCE:.0%} of {row.runs}{share}, which runs no "
                    "attention on the CPU"
                )
                rows.append((c, loser, other, False))
    picks = [(c, t, r) for c, t, r, is_pick in rows if is_pick]

    def allowed(c: ModelInfo) -> bool:
        return forced is c or (forced is None and not _above_default(c))

    eligible = [(c, t, r) for c, t, r in picks if r.fits and allowed(c)]
    # what sets the pace: any KV type of any quant the rule may take (an asked-for quant too)
    pace = [(c, t, r) for c, t, r, _ in rows if r.fits and (c is forced or not _above_default(c))]
    full = [p for p in pace if p[2].full]
    ref = max(full or pace, key=lambda p: p[2].relative or 0.0) if eligible else None
    fastest = ref[2].relative if ref and ref[2].relative else None
    for _, _, r, _ in rows:
        r.relative = round(r.relative / fastest, 3) if fastest and r.relative is not None else None
    where = "on the GPU" if pl.budget(hw) is not None else "in RAM"
    if ref is None:  # nothing fits at all: the smallest, with the warning make_plan adds
        c, t, r = (
            min(picks, key=lambda p: _quality_key(p[0])) if forced is None else next(p for p in picks if p[0] is forced)
        )
        reason = (
            "nothing fits, even split with the CPU; the smallest quant" if forced is None else f"--quant {forced.quant}"
        )
    elif forced is not None:
        c, t, r = next(p for p in picks if p[0] is forced)
        reason = f"asked for with --quant {forced.quant}"
    else:
        fastest_pick = max(eligible, key=lambda p: p[2].relative or 0.0)
        if full:
            ok = [p for p in eligible if (p[2].relative or 0.0) >= SPEED_FRACTION - 1e-9]
            c, t, r = max(ok or [fastest_pick], key=lambda p: _quality_key(p[0]))
        else:  # every candidate is split with the CPU: each layer there costs a lot, take the fastest
            c, t, r = fastest_pick
        if not full:
            reason = f"no quant fits fully {where}: the fastest split"
        elif r is fastest_pick[2]:
            reason = (
                f"fastest that fits fully {where}; every higher quant is predicted under "
                f"{SPEED_FRACTION:.0%} of its speed"
            )
        else:
            reason = (
                f"highest quality predicted at {SPEED_FRACTION:.0%} or more of the fastest fully placed "
                f"candidate's speed ({ref[0].quant}, {ref[2].cache} KV): {r.relative:.0%}"
            )
    r.chosen = True
    for qc, _qt, qr, is_pick in rows:
        if qr.chosen or not is_pick:
            continue
        if not qr.fits:
            qr.lost = "does not fit, even split with the CPU"
        elif forced is not None:
            qr.lost = f"not the quant asked for (--quant {forced.quant})"
        elif _above_default(qc):
            qr.lost = f"above Q8_0: chosen only when asked (--quant {qc.quant})"
        elif not full:
            qr.lost = (
                f"slower than {c.quant} ({qr.relative:.0%} of the fastest)"
                if qr.relative is not None
                else "speed unknown"
            )
        elif _quality_key(qc) > _quality_key(c):
            qr.lost = (
                f"predicted {qr.relative:.0%} of the fastest's speed, under {SPEED_FRACTION:.0%}"
                if qr.relative is not None
                else "speed unknown"
            )
        else:
            qr.lost = f"lower quality than {c.quant}, which is fast enough"
    ordered = sorted(rows, key=lambda x: _quality_key(x[0]))  # the ladder, lowest quality first
    return c, t, reason, [row for _, _, row, _ in ordered]
