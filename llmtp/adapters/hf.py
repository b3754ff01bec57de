"""Hugging Face: the HubClient port and the real client on huggingface_hub (listings, downloads,
byte ranges of remote files).

Tests inject a fake HubClient, or point HF_ENDPOINT at a local fake hub; the real one uses the shared
HF cache (HF_HOME / HF_HUB_CACHE), resumes partial downloads, shows huggingface_hub's progress bars
and takes the token from HF_TOKEN or `hf auth login` (huggingface_hub reads both itself).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from llmtp.adapters.hf_cache import hub_cache_dir as current
from llmtp.adapters.hf_cache import hub_offline
from llmtp.errors import NetworkError, NotOnHubError

HUB_TIMEOUT_S = 10.0
# A hub that did not answer is not asked again for this long by the same process (a plan of every
# catalog alias would otherwise wait out one timeout per repo on a machine without a route to it).
UNREACHABLE_MEMO_S = 60.0


@dataclass(frozen=True)
class RepoFile:
    path: str  # path inside the repo
    size: int | None  # bytes, as the hub lists it
    sha256: str | None  # LFS sha256, when the hub gives one


class HubClient(Protocol):
    def revision(self, repo: str) -> str | None:
        """The commit the repo's main branch points at now (one small request)."""
        ...

    def list_files(self, repo: str, revision: str | None = None) -> list[RepoFile]: ...

    def download(self, repo: str, path: str, revision: str | None = None) -> Path:
        """Download (or reuse from cache) one file; returns its local path. Raises on failure."""
        ...

    def read_range(self, repo: str, path: str, start: int, length: int, revision: str | None = None) -> bytes:
        """Bytes [start, start + length) of a remote file (fewer at its end), by an HTTP range request."""
        ...


def hub_endpoint() -> str:
    """HF_ENDPOINT as set now (huggingface_hub reads it only once, at import)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


class HfHubClient:
    """The real client. Every failure becomes a NetworkError (NotOnHubError for a 404) naming the
    repo and what to do."""

    _unreachable: dict[str, float] = {}  # endpoint -> when it last failed to answer

    def __init__(self, token: str | None = None, offline: bool = False, timeout: float = HUB_TIMEOUT_S):
        self.token = token
        self.offline = offline or hub_offline()  # HF_HUB_OFFLINE: no network call at all
        self.timeout = timeout

    def _fail(self, what: str, exc: Exception) -> NetworkError:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        first = str(exc).splitlines()[0] if str(exc) else ""
        if isinstance(exc, GatedRepoError):  # a subclass of RepositoryNotFoundError, but the repo is there
            return NetworkError(
                f"Cannot {what}: the repo is gated and this request carried no accepted token",
                "Accept the model's license on its Hugging Face page, then set HF_TOKEN (or run `hf auth login`).",
            )
        if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError)):
            return NotOnHubError(
                f"Cannot {what}: the hub has no such repo or file ({first})".rstrip(" ()"),
                "Check the name in the catalog or the hf: reference; gated or private repos "
                "also answer 404 without a token (set HF_TOKEN).",
            )
        if _is_connection_failure(exc):
            HfHubClient._unreachable[hub_endpoint()] = time.monotonic()
        return NetworkError(
            f"Cannot {what}: {type(exc).__name__}: {first}".rstrip(": "),
            "Check the network (huggingface.co must be reachable), the repo name, and for gated models "
            "accept the license and set HF_TOKEN. `llmtp models list` shows local aliases that need no download.",
        )

    def _check_online(self, what: str) -> None:
        if self.offline:
            raise NetworkError(
                f"Cannot {what}: offline mode is on (LLMTP_OFFLINE or HF_HUB_OFFLINE)",
                "Unset LLMTP_OFFLINE and HF_HUB_OFFLINE to reach the hub; files already in the "
                "HF cache are used without it (`llmtp models list --local`).",
            )
        failed = HfHubClient._unreachable.get(hub_endpoint())
        if failed is not None and time.monotonic() - failed < UNREACHABLE_MEMO_S:
            raise NetworkError(
                f"Cannot {what}: {hub_endpoint()} did not answer a moment ago",
                "Check the network (huggingface.co must be reachable); llmtp asks again in a minute.",
            )

    def _api(self):
        from huggingface_hub import HfApi

        return HfApi(endpoint=hub_endpoint(), token=self.token)

    def revision(self, repo: str) -> str | None:
        self._check_online(f"ask the hub about {repo}")
        try:
            return self._api().model_info(repo, timeout=self.timeout).sha
        except Exception as exc:  # huggingface_hub raises many HTTP/OS error types
            raise self._fail(f"ask the hub about {repo}", exc) from exc

    def list_files(self, repo: str, revision: str | None = None) -> list[RepoFile]:
        self._check_online(f"list {repo}")
        try:
            info = self._api().model_info(repo, revision=revision, files_metadata=True, timeout=self.timeout)
        except Exception as exc:
            raise self._fail(f"list the files of {repo}", exc) from exc
        out = []
        for s in info.siblings or []:
            lfs = getattr(s, "lfs", None)
            sha = getattr(lfs, "sha256", None) if lfs is not None else None
            out.append(RepoFile(path=s.rfilename, size=getattr(s, "size", None), sha256=sha))
        return out

    def download(self, repo: str, path: str, revision: str | None = None) -> Path:
        self._check_online(f"download {repo}/{path}")
        try:
            from huggingface_hub import hf_hub_download

            # hf_hub_download writes to a .incomplete blob and renames it only when complete, so
            # an interrupted download never leaves a file that looks finished; it resumes next time.
            from llmtp.adapters.hf_cache import hub_cache_dir

            return Path(
                hf_hub_download(
                    repo_id=repo,
                    filename=path,
                    revision=revision,
                    token=self.token,
                    endpoint=hub_endpoint(),
                    cache_dir=hub_cache_dir(),
                )
            )
        except Exception as exc:
            raise self._fail(f"download {repo}/{path}", exc) from exc

    def read_range(self, repo: str, path: str, start: int, length: int, revision: str | None = None) -> bytes:
        self._check_online(f"read {repo}/{path}")
        import httpx
        from huggingface_hub import get_token
        from huggingface_hub.utils import hf_raise_for_status

        url = f"{hub_endpoint()}/{repo}/resolve/{quote(revision or 'main', safe='')}/{quote(path)}"
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        token = self.token or get_token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            # the hub redirects to a CDN; a range request is honoured there (206), a plain 200 would
            # stream the whole file, so read only `length` bytes of it either way
            with httpx.Client(follow_redirects=True, timeout=self.timeout) as http:
                with http.stream("GET", url, headers=headers) as r:
                    if r.status_code >= 400:
                        r.read()
                        hf_raise_for_status(r)
                    data = bytearray()
                    skip = start if r.status_code == 200 else 0
                    for chunk in r.iter_bytes():
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                        data += chunk
                        if len(data) >= length:
                            break
                    return bytes(data[:length])
        except Exception as exc:
            raise self._fail(f"read {repo}/{path}", exc) from exc


def _is_connection_failure(exc: Exception) -> bool:
    import httpx

    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, (httpx.ConnectError, httpx.TimeoutException, ConnectionError, TimeoutError)):
            return True
        if type(e).__name__ == "OfflineModeIsEnabled":
            return True
        e = e.__cause__ or e.__context__
    return False


def hub_cache_dir() -> Path | None:
    """The shared HF hub cache (HF_HUB_CACHE / HF_HOME), read from the environment now (adapters/hf_cache.py)."""

    return current()
