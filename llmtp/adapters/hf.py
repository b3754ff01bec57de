"""Hugging Face downloads: the HubClient port and the real client on huggingface_hub.

Tests inject a fake HubClient; the real one uses the shared HF cache (HF_HOME / HF_HUB_CACHE), resumes
partial downloads, shows huggingface_hub's progress bars and takes the token from HF_TOKEN or
`hf auth login` (huggingface_hub reads both itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from llmtp.errors import NetworkError


@dataclass(frozen=True)
class RepoFile:
    path: str  # path inside the repo
    size: int | None  # bytes, as the hub lists it
    sha256: str | None  # LFS sha256, when the hub gives one


class HubClient(Protocol):
    def list_files(self, repo: str) -> list[RepoFile]: ...

    def download(self, repo: str, path: str) -> Path:
        """Download (or reuse from cache) one file; returns its local path. Raises on failure."""
        ...


class HfHubClient:
    """The real client. Every failure becomes a NetworkError naming the repo and what to do."""

    def __init__(self, token: str | None = None, offline: bool = False):
        self.token = token
        self.offline = offline

    def _fail(self, what: str, exc: Exception) -> NetworkError:
        return NetworkError(
            f"Cannot {what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": "),
            "Check the network (huggingface.co must be reachable), the repo name, and for gated models "
            "accept the license and set HF_TOKEN. `llmtp models list` shows local aliases that need no download.")

    def list_files(self, repo: str) -> list[RepoFile]:
        if self.offline:
            raise NetworkError(f"Cannot list {repo}: offline mode is on", "Unset LLMTP_OFFLINE to download.")
        try:
            from huggingface_hub import HfApi

            info = HfApi(token=self.token).model_info(repo, files_metadata=True)
        except Exception as exc:  # huggingface_hub raises many HTTP/OS error types
            raise self._fail(f"list the files of {repo}", exc) from exc
        out = []
        for s in info.siblings or []:
            lfs = getattr(s, "lfs", None)
            sha = getattr(lfs, "sha256", None) if lfs is not None else None
            out.append(RepoFile(path=s.rfilename, size=getattr(s, "size", None), sha256=sha))
        return out

    def download(self, repo: str, path: str) -> Path:
        if self.offline:
            raise NetworkError(f"Cannot download {repo}/{path}: offline mode is on", "Unset LLMTP_OFFLINE to download.")
        try:
            from huggingface_hub import hf_hub_download

            # hf_hub_download writes to a .incomplete blob and renames it only when complete, so
            # an interrupted download never leaves a file that looks finished; it resumes next time.
            return Path(hf_hub_download(repo_id=repo, filename=path, token=self.token))
        except Exception as exc:
            raise self._fail(f"download {repo}/{path}", exc) from exc
