"""A finished plan, reviewed before anyone reads it: warnings a user must see (too slow to use, too little
memory left, a context past what the model was trained for) and wording that matches the device (a
CPU-only plan never talks of VRAM or the GPU). Pure: values in, values out."""

from __future__ import annotations

from llmtp.errors import UsageError

GiB = 2**30
SLOW_TOK_S = 5.0  # below this a chat feels broken: one short sentence takes several seconds
RAM_FLOOR_BYTES = 1 * GiB  # at least this much system RAM left over when everything is loaded ...
RAM_FLOOR_SHARE = 0.05  # ... or this share of it, whichever is more (the OS, a browser, a longer prompt)
GPU_FLOOR_BYTES = 256 * 2**20  # on a GPU the plan already keeps core.plan.MARGIN_BYTES; under this is tight
FAR_BEYOND_TRAINED = 4  # --ctx more than this times the trained context is refused without --force


def check_ctx(requested: int | None, trained: int | None, force: bool) -> None:
    """Refuse a context far beyond the trained one (a typo such as 1000000 for 100000, or a model that
    cannot use it) unless forced."""
    if requested is None or not trained or force or requested <= FAR_BEYOND_TRAINED * trained:
        return
    raise UsageError(
        f"--ctx {requested} is {requested / trained:.0f}x the context this model was trained for ({trained})",
        f"Use --ctx {trained} or less; beyond it answers degrade unless the model is RoPE-scaled "
        "(`-- --rope-scaling yarn`). `llmtp plan --force` plans it anyway.",
    )


def device_wording(text: str, on_gpu: bool) -> str:
    """A reason written for a GPU plan, said for the CPU when nothing runs on a GPU."""
    if on_gpu:
        return text
    for gpu, cpu in ((" in VRAM", " in RAM"), (" on the GPU", " in RAM"), ("the VRAM", "RAM"), ("VRAM", "RAM")):
        text = text.replace(gpu, cpu)
    return text


def warnings_for(
    *,
    decode_tok_s: float | None,
    memory: list,
    on_gpu: bool,
    requested_ctx: int | None,
    trained: int | None,
    fits: bool,
) -> list[str]:
    """The warnings this review adds (memory: core.plan.MemoryBreakdown rows)."""
    out = []
    if decode_tok_s is not None and decode_tok_s < SLOW_TOK_S:
        out.append(
            f"predicted decode speed is at most {decode_tok_s:.1f} tok/s, under {SLOW_TOK_S:g} tok/s: "
            "expect a slow chat; a smaller quant (--quant) or a shorter --ctx reads less per token"
        )
    for m in memory:
        if m.budget is None or not fits:
            continue
        left = m.budget - m.total + m.margin
        floor = (
            GPU_FLOOR_BYTES
            if on_gpu and m.device.lower() not in ("cpu", "ram")
            else max(RAM_FLOOR_BYTES, int(RAM_FLOOR_SHARE * m.budget))
        )
        if left < floor:
            out.append(
                f"{m.device}: only {_gib(max(left, 0))} of {_gib(m.budget)} would be left over, under the "
                f"safety floor of {_gib(floor)}: other programs or a long prompt can run it out of memory; "
                "a smaller quant (--quant) or a shorter --ctx leaves room"
            )
    if requested_ctx is not None and trained and requested_ctx > trained:
        out.append(
            f"--ctx {requested_ctx} is beyond the trained context {trained}: answers degrade past "
            f"{trained} tokens unless the model is RoPE-scaled"
        )
    return out


def reword_fit_warning(warnings: list[str], requested_ctx: int | None) -> list[str]:
    """With --ctx given the planner never shrank the context: say it does not fit at that context."""
    if requested_ctx is None:
        return warnings
    return [
        f"does not fit at --ctx {requested_ctx}: expect an out-of-memory failure; a shorter --ctx or a "
        "smaller quant fits"
        if w.startswith("does not fit even at the smallest context")
        else w
        for w in warnings
    ]


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB"
