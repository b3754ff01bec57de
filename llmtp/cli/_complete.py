"""Shell completion of model arguments (`llmtp serve <TAB>`): catalog aliases, ALIAS:QUANT once a colon is
typed. Typer calls these while the shell completes; they never print and never raise."""

from __future__ import annotations


def model_names(incomplete: str) -> list[str]:
    try:
        from llmtp.services.models.catalog import load_catalog

        names = []
        for entry in load_catalog().models.values():
            names.append(entry.alias)
            if ":" in incomplete:
                names += [f"{entry.alias}:{q.name}" for q in entry.quants]
        return sorted(n for n in names if n.startswith(incomplete))
    except Exception:  # noqa: BLE001 - a completion that fails offers nothing, never a traceback
        return []
