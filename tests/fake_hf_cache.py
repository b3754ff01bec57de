"""A Hugging Face cache laid out the way huggingface_hub writes it (blobs named by their hash,
snapshots/REVISION/NAME linking to them, refs/main naming the revision), for models that
`hf download` or `llama-server -hf` would have put there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def put(cache_dir: Path, repo: str, name: str, data: bytes, revision: str = "a" * 40, *, main: bool = True) -> Path:
    """Store `data` as `name` of `repo` at `revision`; returns the snapshot path (a symlink)."""
    root = cache_dir / f"models--{repo.replace('/', '--')}"
    blob = root / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = root / "snapshots" / revision / name
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(os.path.relpath(blob, link.parent), link)
    if main:
        (root / "refs").mkdir(exist_ok=True)
        (root / "refs" / "main").write_text(revision)
    return link
