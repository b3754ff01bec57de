"""`llmtp setup`'s recommendation rule, pure: which catalog model to serve, from the planner's plans."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

DEMO_ALIAS = "smollm2-135m"  # the offline demo model: what a machine gets when nothing better fits


@dataclass
class Recommendation:
    alias: str
    reason: str


def known_fit(plan: Any) -> bool:
    """A plan that fits with MTP on and whose KV cache could be counted (an uncounted one is no known fit)."""
    return bool(
        plan.fits and plan.mtp.enabled and not any(w.startswith("KV cache size unknown") for w in plan.warnings)
    )


def recommend(candidates: Iterable[tuple[str, Any]]) -> Recommendation:
    """The best of (alias, plan) pairs in catalog order (the catalog lists its preferred models first).

    On a GPU: the first alias whose plan keeps every layer on the GPU with MTP (no MoE or FFN spill),
    else the first that fits with partial offload. On the CPU alone: the smallest MTP model that
    fits in RAM (decode speed falls with size). Nothing fits: the offline demo model.
    """
    full, partial, cpu = [], [], []
    for alias, p in candidates:
        if alias == DEMO_ALIAS or not known_fit(p):
            continue
        if p.n_gpu_layers is None:
            cpu.append((sum(d.weights for d in p.memory), alias, p))
        elif p.n_gpu_layers > p.n_layers and not p.n_cpu_moe and not p.n_cpu_ffn:
            full.append((alias, p))
        else:
            partial.append((alias, p))
    if full:
        alias, p = full[0]
        return Recommendation(alias, f"fits fully on the GPU with MTP ({p.quant}, {p.ctx} context)")
    if partial:
        alias, p = partial[0]
        return Recommendation(alias, f"fits with partial offload and MTP ({p.quant}, {p.ctx} context)")
    if cpu:
        _, alias, p = min(cpu, key=lambda c: c[0])
        return Recommendation(alias, f"the smallest MTP model that fits in RAM ({p.quant}, {p.ctx} context)")
    return Recommendation(
        DEMO_ALIAS,
        "no MTP model of the catalog fits this machine; the demo model "
        "needs no download and shows the whole path (it has no MTP heads)",
    )
