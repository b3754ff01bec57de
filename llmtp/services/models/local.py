"""What is on disk (`models list --local`) and removing it (`models rm`): the HF cache and
LLAMA_CACHE first, then llmtp's own pulls (the demo wheel's GGUF, files recorded outside the cache).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmtp.adapters import files, hf_cache
from llmtp.adapters.files import write_json_atomic
from llmtp.core.catalog import Catalog, choose_quant_file, is_model_file, quant_of, variant_name
from llmtp.errors import LlmtpError, UsageError
from llmtp.services.models.catalog import hub_ref, load_catalog, package_model_path, read_model_info
from llmtp.services.models.pulls import load_registry, registry_path


@dataclass
class LocalModel:
    alias: str | None  # the catalog alias whose quant this file is, else None
    repo: str | None  # hub repo ("org/name"); None for a file outside the caches
    quant: str | None
    size_bytes: int  # all split parts
    path: str  # the first part (what llama-server opens)
    mtp_heads: int | None  # nextn_predict_layers from the header; None: unreadable
    sidecar: str | None = None  # the MTP draft file in the same repo, when the cache holds one
    where: str = ""  # "HF cache DIR", "LLAMA_CACHE DIR" or "llmtp models dir"
    files: list[str] = field(default_factory=list)  # every path that belongs to this model

    @property
    def mtp(self) -> str:
        if self.sidecar:
            return "yes (draft file)"
        return "unknown" if self.mtp_heads is None else ("yes" if self.mtp_heads > 0 else "no")

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "mtp": self.mtp}


def _alias_for(catalog: Catalog, repo: str, name: str) -> str | None:
    for entry in catalog.models.values():
        if repo not in entry.repos:
            continue
        for q in entry.quants:
            if repo in entry.repos_for(q):
                choice = choose_quant_file(q.file, {name: None})
                if choice is not None:
                    return entry.alias
    return None


def _heads(path: Path) -> int | None:
    try:
        return read_model_info(path).nextn_predict_layers
    except LlmtpError:
        return None


def list_local(settings, catalog: Catalog | None = None) -> list[LocalModel]:
    """Every model file on disk that llmtp can serve, one row per quant (split parts together)."""

    catalog = catalog or load_catalog()
    rows: list[LocalModel] = []
    groups: dict[tuple[Path, str, str], list[Any]] = {}
    drafts: dict[tuple[Path, str], list[Any]] = {}
    for f in hf_cache.all_gguf_files():
        if is_model_file(f.name):
            groups.setdefault((f.cache_dir, f.repo, variant_name(f.name)), []).append(f)
        else:
            drafts.setdefault((f.cache_dir, f.repo), []).append(f)
    for (cache_dir, repo, variant), parts in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        parts.sort(key=lambda f: f.name)
        side = drafts.get((cache_dir, repo))
        where = hf_cache.cache_label(cache_dir)
        rows.append(
            LocalModel(
                alias=_alias_for(catalog, repo, variant),
                repo=repo,
                quant=quant_of(variant),
                size_bytes=sum(p.size for p in parts),
                path=str(parts[0].path),
                mtp_heads=_heads(parts[0].path),
                sidecar=str(side[0].path) if side else None,
                where=where,
                files=[str(p.path) for p in parts],
            )
        )
    seen = {Path(r.path).resolve() for r in rows}
    for key, quants in load_registry(settings).items():
        for q, rec in quants.items():
            p = Path(rec["path"])
            if not p.is_file() or p.resolve() in seen:
                continue
            seen.add(p.resolve())
            alias = None if key.startswith("hf:") else key
            repo = key[3:] if key.startswith("hf:") else rec.get("repo")
            parts = [p.parent / Path(n).name for n in rec.get("files") or [p.name]]
            rows.append(
                LocalModel(
                    alias=alias,
                    repo=repo,
                    quant=q,
                    path=str(p),
                    size_bytes=sum(files.file_size(x) for x in parts if x.is_file()),
                    mtp_heads=_heads(p),
                    sidecar=rec.get("sidecar"),
                    where=f"recorded pull {p.parent}",
                    files=[str(x) for x in parts if x.is_file()],
                )
            )
    for entry in catalog.models.values():
        if entry.package is None:
            continue
        try:
            p = package_model_path(entry, settings)
        except UsageError:
            continue
        inside = Path(settings.models_dir) in p.parents
        rows.append(
            LocalModel(
                alias=entry.alias,
                repo=f"pypi:{entry.package.distribution}",
                quant=entry.default_quant,
                size_bytes=files.file_size(p),
                path=str(p),
                mtp_heads=_heads(p),
                where="llmtp models dir" if inside else "installed package",
                files=[str(p)],
            )
        )
    return rows


@dataclass
class Removed:
    ref: str
    files: list[str]
    freed_bytes: int


def _matches(row: LocalModel, ref: str, settings) -> bool:
    href = hub_ref(ref) if "/" in ref else None
    if href is not None:
        return row.repo == href.repo and (href.quant is None or row.quant == href.quant)
    name, _, q = ref.partition(":")
    return row.alias == name and (not q or (row.quant or "").upper() == q.upper())


def remove_model(ref: str, settings, catalog: Catalog | None = None) -> Removed:
    """Delete the files of REF (alias[:QUANT] or hub reference) from the caches; what it freed.
    Several quants match and none was named: UsageError listing them (nothing is removed)."""

    rows = [r for r in list_local(settings, catalog) if _matches(r, ref, settings)]
    if not rows:
        raise UsageError(
            f"{ref} is not on disk: nothing to remove",
            "`llmtp models list --local` shows what is (aliases, repos and quants).",
        )
    if len(rows) > 1:
        which = ", ".join(f"{r.alias or r.repo}:{r.quant}" for r in rows)
        raise UsageError(
            f"{ref} matches {len(rows)} models on disk: {which}",
            "Name one with its quant, e.g. `llmtp models rm ALIAS:QUANT`; nothing was removed.",
        )
    row = rows[0]
    if row.where == "installed package":
        raise UsageError(
            f"{ref} ships in an installed Python package ({row.repo})",
            f"Remove it with your package tool (pip uninstall {(row.repo or '')[5:]}); llmtp does not "
            "edit installed packages.",
        )
    gone: list[str] = list(row.files)
    if row.where.startswith(("HF cache", "LLAMA_CACHE")):
        cached = [f for f in hf_cache.all_gguf_files() if str(f.path) in row.files]
        others = [r for r in list_local(settings, catalog) if r.repo == row.repo and r.path != row.path and r.sidecar]
        if row.sidecar and not others:  # the draft serves every quant of the repo: it goes with the last one
            cached += [f for f in hf_cache.all_gguf_files() if str(f.path) == row.sidecar]
            gone.append(row.sidecar)
        freed = hf_cache.remove(cached)
    else:
        own = [Path(d).resolve() for d in (settings.models_dir, settings.data_dir, settings.cache_dir) if d]
        outside = [f for f in row.files if not any(Path(f).resolve().is_relative_to(d) for d in own)]
        if outside:  # the record is data: it never makes llmtp delete a file outside its own folders
            raise UsageError(
                f"{ref} is recorded at {outside[0]}, outside llmtp's folders: not removed",
                "Delete the file yourself if it is yours; `llmtp models list --local` shows it.",
            )
        freed = hf_cache.remove_files([Path(f) for f in row.files])
    reg = load_registry(settings)
    kept = {k: {q: rec for q, rec in v.items() if rec.get("path") not in gone} for k, v in reg.items()}
    kept = {k: v for k, v in kept.items() if v}
    if kept != reg:
        write_json_atomic(registry_path(settings), kept)
    return Removed(ref=ref, files=gone, freed_bytes=freed)
