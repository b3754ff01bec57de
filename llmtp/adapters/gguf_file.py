"""Reading GGUF files from disk: the only module that reads their header and tensor table (files.py hashes
them whole or at the edges); the meaning lives in core.gguf_meta."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from llmtp.adapters.files import read_json_cache
from llmtp.core import gguf_header
from llmtp.core import gguf_meta as _gguf_meta
from llmtp.core import gguf_sizes as _gguf_sizes
from llmtp.core.gguf_header import GGUFHeaderError, GGUFTruncated, parse_gguf_header, tensor_infos
from llmtp.core.gguf_meta import ModelInfo, TensorInfo, model_info_from_metadata
from llmtp.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
# Arrays longer than this (token lists, merges, scores) are not needed for planning; converting
# 150k strings to Python would dominate the time `inspect` takes.
MAX_ARRAY_ITEMS = 4096
CACHE_VERSION = 2  # bump when what read_model_info extracts changes


def read_model_info(
    path: Path | str, *, cache_dir: Path | None | bool = True, header_only: bool = False, file_size: int | None = None
) -> ModelInfo:
    """Read a GGUF's header and tensor table; raise ModelFileError for anything unusable.

    header_only=True reads a file that holds only the header (the first bytes of a remote GGUF, as
    fetched from the hub before a download): missing tensor data is expected, and the model's file
    size is `file_size` (the remote size) or None. A normal read flags missing data as truncation.

    Results are cached by (path, size, mtime) under cache_dir (True: the settings' cache dir,
    False/None: no cache): reading a header needs gguf + numpy (~0.4 s of imports), which
    `llmtp serve` must not pay on every start.
    """
    variant = ""
    if header_only:  # a different parser and a caller-given size: keep those entries apart
        src = Path(gguf_header.__file__).stat()
        variant = f"|header_only|{file_size}|{src.st_size}|{src.st_mtime_ns}"
    cache = _cache_file(Path(path), cache_dir, variant)
    if cache is not None:
        cached = read_json_cache(cache, ModelInfo)
        if cached is not None:  # missing or stale: read the file
            return cached
    if header_only:
        kv, tensors = read_header_metadata(path)
        size: int | None = file_size
    else:
        kv, tensors, size = read_metadata(path)
    info = model_info_from_metadata(kv, tensors, path=str(path), file_size=size)
    if cache is not None:
        try:
            from llmtp.adapters.files import write_text_atomic

            write_text_atomic(cache, info.model_dump_json())
        except OSError:
            pass  # a read-only cache dir only costs time
    return info


def _cache_file(path: Path, cache_dir: Path | None | bool, variant: str = "") -> Path | None:
    """Key: file identity (resolved path, size, mtime) + the parser's own identity, so a changed
    file or a changed ModelInfo/gguf_meta/gguf_sizes never serves a stale entry."""
    if cache_dir is False or cache_dir is None:
        return None
    try:
        if cache_dir is True:
            from llmtp.settings import load_settings

            cache_dir = Path(load_settings().settings.cache_dir)
        st = path.stat()
        sources = [Path(m.__file__).stat() for m in (_gguf_meta, _gguf_sizes)]
    except (OSError, Exception):  # noqa: BLE001 - no cache is always a safe answer
        return None
    stamps = (st.st_size, st.st_mtime_ns, *(n for src in sources for n in (src.st_size, src.st_mtime_ns)))
    ident = f"{path.resolve()}|" + "|".join(map(str, stamps)) + f"|{CACHE_VERSION}{variant}"
    return Path(cache_dir) / "gguf-meta" / (hashlib.sha256(ident.encode()).hexdigest()[:24] + ".json")


def read_metadata(path: Path | str) -> tuple[dict[str, Any], list[TensorInfo], int]:
    """(key/value dict of plain Python values, tensor table, file size) of one GGUF file."""
    p = Path(path)
    hint = "Check the path, or download the model again."
    if not p.exists():
        raise ModelFileError(f"model file not found: {p}", hint)
    if not p.is_file():
        raise ModelFileError(f"not a file: {p}", "Pass the path of a .gguf file.")
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelFileError(f"cannot read {p}: {exc.strerror or exc}", "Check the file's permissions.") from exc
    if magic != GGUF_MAGIC and GGUF_MAGIC.startswith(magic):
        raise ModelFileError(f"truncated GGUF: {p} is only {size} bytes", hint)
    if magic != GGUF_MAGIC:
        raise ModelFileError(
            f"not a GGUF file: {p} (starts with {magic!r})",
            "llmtp serves GGUF models; convert or download a .gguf file.",
        )

    from gguf import GGUFReader

    try:
        reader = GGUFReader(str(p), "r")
    except (ValueError, IndexError, KeyError, OSError, UnicodeDecodeError) as exc:
        # The reader fails in many ways on a short file (reshape of a short mmap, bad offsets).
        raise ModelFileError(f"unreadable or truncated GGUF: {p} ({_first_line(exc)})", hint) from exc

    # mmap happily maps a file whose tensor data is cut short: check the data extent ourselves.
    tensors: list[TensorInfo] = []
    end = reader.data_offset
    for t in reader.tensors:
        tensors.append(
            TensorInfo(name=t.name, shape=[int(d) for d in t.shape], type=t.tensor_type.name, n_bytes=int(t.n_bytes))
        )
        end = max(end, int(t.data_offset) + int(t.n_bytes))
    if end > size:
        raise ModelFileError(f"truncated GGUF: {p} is {size} bytes but its tensors need {end}", hint)

    kv: dict[str, Any] = {}
    for name, field in reader.fields.items():
        if name.startswith("GGUF."):
            continue  # reader bookkeeping (version, counts), not model metadata
        if len(field.data) > MAX_ARRAY_ITEMS:
            continue
        try:
            kv[name] = _plain(field.contents())
        except (ValueError, IndexError, UnicodeDecodeError):
            continue  # a field we cannot decode is dropped, never guessed
    return kv, tensors, size


HEADER_CHUNK = 8 << 20  # most headers (tokenizer arrays included) fit in the first 8 MiB


def read_header_metadata(path: Path | str) -> tuple[dict[str, Any], list[TensorInfo]]:
    """(key/value dict, tensor table) of a file that may hold only a GGUF header (no tensor data).

    gguf.GGUFReader maps every tensor's data and fails without it, so this uses the pure parser in
    core.gguf_header, reading more of the file only while the header is longer than what was read.
    """

    p = Path(path)
    hint = "Check the path, or fetch the header again."
    if not p.is_file():
        raise ModelFileError(f"model file not found: {p}" if not p.exists() else f"not a file: {p}", hint)
    want = HEADER_CHUNK
    try:
        with p.open("rb") as fh:
            while True:
                fh.seek(0)
                data = fh.read(want)
                try:
                    header = parse_gguf_header(data)
                    break
                except GGUFTruncated:
                    if len(data) < want:  # the whole file was read and the header is still cut short
                        raise
                    want *= 4
    except GGUFTruncated as exc:
        raise ModelFileError(f"truncated GGUF header: {p} ({exc})", hint) from exc
    except GGUFHeaderError as exc:
        raise ModelFileError(
            f"unreadable GGUF header: {p} ({exc})", "llmtp serves GGUF models; convert or download a .gguf file."
        ) from exc
    except OSError as exc:
        raise ModelFileError(f"cannot read {p}: {exc.strerror or exc}", "Check the file's permissions.") from exc
    tensors = tensor_infos(header)
    if len(tensors) != len(header.tensors):
        raise ModelFileError(f"unknown tensor type in {p}", "Upgrade llmtp (and its gguf package).")
    return header.kv, tensors


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
