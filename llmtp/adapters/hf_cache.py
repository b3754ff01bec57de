"""The Hugging Face cache on disk: where it is (HF_HUB_CACHE / HF_HOME, and llama.cpp's LLAMA_CACHE),
what GGUF files it holds (huggingface_hub's scan_cache_dir), and removing one file from it.

Files that `hf download`, `llama-server -hf` or `llmtp models pull` put there are the same files:
the cache is the record of what is downloaded. Reading it never touches the network.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

_TRUE = {"1", "on", "yes", "true"}


def hub_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where huggingface_hub reads and writes (read from the environment now: huggingface_hub's own
    constants are fixed when it is imported)."""
    env = os.environ if env is None else env
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub"


def cache_dirs(env: Mapping[str, str] | None = None) -> list[Path]:
    """Every cache llmtp reads: llama.cpp's LLAMA_CACHE (b11434 lays it out like the HF cache,
    common/hf-cache.cpp) first, as llama-server looks there first, then the HF cache."""
    env = os.environ if env is None else env
    out = []
    if env.get("LLAMA_CACHE"):
        out.append(Path(env["LLAMA_CACHE"]).expanduser())
    hf = hub_cache_dir(env)
    if hf not in out:
        out.append(hf)
    return out


def cache_label(cache_dir: Path, env: Mapping[str, str] | None = None) -> str:
    """ "LLAMA_CACHE DIR" or "HF cache DIR": which cache a file was found in, for people."""
    env = os.environ if env is None else env
    llama = env.get("LLAMA_CACHE")
    return ("LLAMA_CACHE " if llama and Path(llama).expanduser() == cache_dir else "HF cache ") + str(cache_dir)


def remove_files(paths: list[Path]) -> int:
    """Delete plain files (a pull kept outside the caches); the bytes freed."""
    freed = 0
    for p in paths:
        if p.is_file():
            freed += p.stat().st_size
            p.unlink()
    return freed


def hub_offline(env: Mapping[str, str] | None = None) -> bool:
    """HF_HUB_OFFLINE (or the older TRANSFORMERS_OFFLINE) asks for no network call at all."""
    env = os.environ if env is None else env
    return any(env.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


@dataclass(frozen=True)
class CachedFile:
    repo: str
    name: str  # path inside the repo
    path: Path  # the snapshot path (a link to the blob)
    size: int  # bytes on disk
    revision: str  # commit hash of the snapshot
    cache_dir: Path


def _scan(cache_dir: Path):
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    if not cache_dir.is_dir():
        return []
    try:
        return [r for r in scan_cache_dir(cache_dir).repos if r.repo_type == "model"]
    except (CacheNotFound, OSError):
        return []


def _files_of(repo_info, cache_dir: Path) -> dict[str, CachedFile]:
    """name -> file, taking each name from the revision main points at, else the newest one."""
    revs = sorted(repo_info.revisions, key=lambda r: ("main" in r.refs, r.last_modified), reverse=True)
    out: dict[str, CachedFile] = {}
    for rev in revs:
        for f in rev.files:
            name = Path(f.file_path).relative_to(rev.snapshot_path).as_posix()
            if name not in out and Path(f.file_path).is_file():
                out[name] = CachedFile(
                    repo=repo_info.repo_id,
                    name=name,
                    path=Path(f.file_path),
                    size=int(f.size_on_disk),
                    revision=rev.commit_hash,
                    cache_dir=cache_dir,
                )
    return out


def repo_files(repo: str, env: Mapping[str, str] | None = None) -> dict[str, CachedFile]:
    """The files of one hub repo present in the caches (LLAMA_CACHE's copy wins, as for llama-server).

    Read straight from the layout huggingface_hub documents (models--ORG--NAME/{refs,snapshots}):
    this is on `llmtp serve`'s path, where importing huggingface_hub alone costs ~0.3 s. A test
    checks it against huggingface_hub's scan_cache_dir, which `models list --local` uses."""
    out: dict[str, CachedFile] = {}
    for d in cache_dirs(env):
        for name, f in _read_repo(d, repo).items():
            out.setdefault(name, f)
    return out


def _read_repo(cache_dir: Path, repo: str) -> dict[str, CachedFile]:
    root = cache_dir / f"models--{repo.replace('/', '--')}"
    snapshots = root / "snapshots"
    if not snapshots.is_dir():
        return {}
    try:
        main = (root / "refs" / "main").read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        main = None
    revs = [d for d in snapshots.iterdir() if d.is_dir()]
    revs.sort(key=lambda d: (d.name == main, d.stat().st_mtime), reverse=True)  # main first, then newest
    out: dict[str, CachedFile] = {}
    for rev in revs:
        for p in sorted(rev.rglob("*")):
            try:
                if not p.is_file():  # folders, and links whose blob is gone
                    continue
                size = p.stat().st_size
            except OSError:
                continue
            name = p.relative_to(rev).as_posix()
            if name not in out:
                out[name] = CachedFile(repo=repo, name=name, path=p, size=size, revision=rev.name, cache_dir=cache_dir)
    return out


def all_gguf_files(env: Mapping[str, str] | None = None) -> list[CachedFile]:
    """Every .gguf in every cache, one per (cache, repo, name)."""
    out: list[CachedFile] = []
    for d in cache_dirs(env):
        for r in _scan(d):
            out += [f for f in _files_of(r, d).values() if f.name.lower().endswith(".gguf")]
    return out


def remove(files: list[CachedFile]) -> int:
    """Delete these files from their caches (every revision's link and the blob, unless another
    snapshot still links to it); returns the bytes freed. Empty snapshot folders go too."""
    freed = 0
    for f in files:
        repo_dir = f.cache_dir / f"models--{f.repo.replace('/', '--')}"
        snapshots = repo_dir / "snapshots"
        for rev_dir in snapshots.iterdir() if snapshots.is_dir() else []:
            link = rev_dir / f.name
            if not (link.is_symlink() or link.exists()):
                continue
            blob = link.resolve() if link.is_symlink() else None
            size = link.stat().st_size if link.exists() else 0
            link.unlink()
            if blob is None:
                freed += size  # a copy, not a link (caches on file systems without symlinks)
            elif blob.parent != (repo_dir / "blobs").resolve():
                continue  # a link out of the cache: the link goes, what it points at is not the cache's
            elif blob.exists() and not _linked_elsewhere(snapshots, blob):
                freed += blob.stat().st_size
                blob.unlink()
            parent = link.parent
            while parent != rev_dir.parent and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent
    return freed


def _linked_elsewhere(snapshots: Path, blob: Path) -> bool:
    return any(p.is_symlink() and p.resolve() == blob for p in snapshots.rglob("*"))
