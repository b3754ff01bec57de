"""Small file primitives every store shares: one reader and one writer for JSON stores, content hashes,
and the tree, link and disk operations the services ask for (they call no os/shutil themselves).

Writes are atomic and durable: a temp file with a unique name beside the target, fsynced, renamed
over it, and the directory fsynced, so a crash leaves the old record or the new one, never half.
Reads never guess: a store that is not UTF-8 JSON of the expected shape is a ConfigError naming the
file, and the damaged original is moved aside (NAME.corrupt-TIMESTAMP) so that nothing overwrites it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from llmtp.errors import ConfigError, UsageError

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # a platform or file system that cannot open directories: the rename still happened
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, *, mode: int | None = None) -> Path:
    """`mode`: the file's permission bits whatever the umask (default: mkstemp's 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_text_atomic(path: Path, text: str, *, mode: int | None = None) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"), mode=mode)


def write_json_atomic(path: Path, data: Any, *, sort_keys: bool = False) -> Path:
    if isinstance(data, BaseModel):
        return write_text_atomic(path, data.model_dump_json(indent=2))
    return write_text_atomic(path, json.dumps(data, indent=2, sort_keys=sort_keys))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def move_aside(path: Path) -> Path:
    """Rename a damaged file to NAME.corrupt-TIMESTAMP beside it (never over an earlier one)."""
    path = Path(path)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    os.replace(path, target)
    return target


# --- trees, links, disks -----------------------------------------------------------------------------


def remove_tree(path: Path, *, ignore_errors: bool = False) -> None:
    """Delete a directory and everything in it (a symlink inside is removed, never followed)."""
    shutil.rmtree(path, ignore_errors=ignore_errors)


def copy_file(src: Path, dst: Path) -> None:
    """Copy a file with its mode and times (an installed binary stays executable)."""
    shutil.copy2(src, dst)


def move(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` atomically (same file system), replacing a file or empty dir there."""
    os.replace(src, dst)


def symlink(target: str | Path, link: Path) -> None:
    """Create `link` pointing at `target` (kept as given: relative stays relative)."""
    os.symlink(target, link)


def read_link(path: Path) -> str | None:
    """Where the symlink `path` points, as written; None when it is no symlink or does not exist."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def switch_link(link: Path, target: str) -> None:
    """Point `link` at `target` atomically: a new symlink beside it, renamed over the old one."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")  # unique, even across threads
    os.symlink(target, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def free_bytes(path: Path) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent); None if unknown."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free
    except OSError:
        return None


def tree_size(path: Path) -> int:
    """Bytes of the files under `path`, links counted as links (never followed); unreadable ones skipped."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def writable(path: Path) -> bool:
    """Whether this user may write into `path`."""
    return os.access(path, os.W_OK)


def tail_text(path: Path, max_bytes: int) -> str:
    """The last `max_bytes` of a text file (undecodable bytes replaced); "" when it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - max_bytes))
            return f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""


def text_since(path: Path, offset: int, max_bytes: int) -> str:
    """What was written to a log from byte `offset` on (the last `max_bytes` of it). When the file is now
    shorter than `offset` it was rotated live (copied to `path.1`, truncated): the rest of `path.1` past
    `offset` comes first. "" when nothing can be read."""

    def read(p: Path, start: int) -> bytes:
        try:
            with open(p, "rb") as f:
                f.seek(0, 2)
                end = f.tell()
                f.seek(max(start, end - max_bytes))
                return f.read() if end > start else b""
        except OSError:
            return b""

    try:
        size = path.stat().st_size
    except OSError:
        return ""
    data = read(path, offset) if size >= offset else read(path.with_name(path.name + ".1"), offset) + read(path, 0)
    return data[-max_bytes:].decode("utf-8", errors="replace")


def replaced_under(path: Path, f) -> bool:  # noqa: ANN001 - an open file on `path`
    """Whether `path` no longer names the file `f` reads, or that file shrank below `f`'s position
    (truncated or renamed away under the reader); False when `path` cannot be looked at now."""
    try:
        now, mine = os.stat(path), os.fstat(f.fileno())
    except OSError:
        return False
    return (now.st_dev, now.st_ino) != (mine.st_dev, mine.st_ino) or now.st_size < f.tell()


# --- plain file operations services ask for (so that no service touches the file system itself) ----


def read_text(path: Path, *, errors: str = "strict") -> str:
    return Path(path).read_text(encoding="utf-8", errors=errors)


def head_text(path: Path, max_bytes: int) -> str:
    """The first `max_bytes` of a file as text (undecodable bytes replaced)."""
    with open(path, "rb") as f:
        return f.read(max_bytes).decode("utf-8", errors="replace")


def read_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def write_text(path: Path, text: str) -> None:
    Path(path).write_text(text, encoding="utf-8")


def remove(path: Path, *, missing_ok: bool = True) -> None:
    Path(path).unlink(missing_ok=missing_ok)


def make_dirs(path: Path, *, mode: int = 0o777) -> Path:
    Path(path).mkdir(parents=True, exist_ok=True, mode=mode)
    return Path(path)


def list_dir(path: Path) -> list[Path]:
    """The entries of a folder, sorted by name."""
    return sorted(Path(path).iterdir())


def glob(path: Path, pattern: str) -> list[Path]:
    """The entries of `path` matching `pattern`, sorted."""
    return sorted(Path(path).glob(pattern))


def stat(path: Path) -> os.stat_result:
    return Path(path).stat()


def file_size(path: Path) -> int:
    return Path(path).stat().st_size


def open_log(path: Path) -> TextIO:
    """A text file opened for writing, line-buffered, for a log another process or a reader follows."""
    return open(path, "w", encoding="utf-8", buffering=1)


def edge_digest(path: Path, edge: int) -> tuple[int, str]:
    """(size, sha256 of the first and last `edge` bytes): a cheap identity of a large file."""
    size = file_size(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read(edge))
        if size > 2 * edge:
            f.seek(size - edge)
            h.update(f.read(edge))
    return size, h.hexdigest()


@functools.lru_cache(maxsize=64)
def _adapter(schema: Any) -> TypeAdapter:
    return TypeAdapter(schema)


def _problem(exc: Exception) -> str:
    """What is wrong, in one clause: the JSON error, or the first place the shape is wrong."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        first = errors[0]
        if first["type"] == "json_invalid":
            return f"not valid JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
        where = ".".join(str(x) for x in first["loc"]) or "the top level"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"unexpected content at {where}: {first['msg']}{more}"
    return str(exc)


def read_json_store(
    path: Path, schema: type[T] | Any, *, what: str, hint: str, default: Any = None, aside: bool = True
) -> T | Any:
    """The store at `path` validated as `schema` (a pydantic model, or any type pydantic takes:
    list[Model], dict[str, Model], ...); `default` when the file does not exist.

    A damaged store (not UTF-8, not JSON, empty, or the wrong shape) raises a ConfigError that names
    the file and what is wrong, followed by `hint`; with `aside` the original is first renamed to
    NAME.corrupt-TIMESTAMP so the next write cannot overwrite it. An unreadable file (permissions)
    is a ConfigError too, and stays where it is."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return default
    except OSError as exc:
        raise ConfigError(
            f"Cannot read the {what} {path}: {exc.strerror or exc}", "Check its permissions and owner. " + hint
        ) from exc
    try:
        return _adapter(schema).validate_json(data.decode("utf-8"))
    except (UnicodeDecodeError, ValidationError) as exc:
        problem = _problem(exc)
        kept = ""
        if aside:
            try:
                kept = f"; the damaged file was moved to {move_aside(path)}"
            except OSError as err:
                kept = f"; it could not be moved aside ({err.strerror or err}), so nothing will overwrite it"
        raise ConfigError(f"The {what} {path} is damaged: {problem}{kept}", hint) from exc


def read_json_cache(path: Path, schema: type[T] | Any) -> T | None:
    """A cache entry at `path` validated as `schema`, or None when it is missing, unreadable or does not
    validate: a cache is only ever a shortcut, so a bad entry is as if absent (recomputed, then overwritten)."""
    try:
        return _adapter(schema).validate_json(Path(path).read_bytes())
    except (OSError, ValueError):  # pydantic's ValidationError is a ValueError
        return None


def executable_file(path: Path, *, option: str) -> Path:
    """`path` (given with `option`, e.g. --server) as an absolute path when it is a regular file this
    user may execute; a UsageError saying what it is instead (missing, a directory, a device, a file
    without the execute bit)."""
    import stat

    path = Path(path).expanduser()
    try:
        st = path.stat()
    except OSError as exc:
        raise UsageError(
            f"{option} {path}: {exc.strerror or exc}", f"Pass the path of a llama-server binary to {option}."
        ) from exc
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(
            f"{option} {path} is a directory",
            f"Pass the llama-server file inside it: {option} {path / 'llama-server'}.",
        )
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(
            f"{option} {path} is not a regular file", f"Pass the path of a llama-server binary to {option}."
        )
    if not os.access(path, os.X_OK):
        raise UsageError(
            f"{option} {path} is not executable by this user",
            f"Make it executable (chmod +x {path}) or pass another llama-server.",
        )
    return path.resolve()


class LogFollower:
    """New complete lines of a log since the last read; starts over when the file was rotated."""

    def __init__(self, path: Path):
        self.path, self.offset = Path(path), 0

    def read(self) -> str:
        try:
            with open(self.path, "rb") as f:
                f.seek(0, 2)
                if f.tell() < self.offset:  # rotated or truncated at a restart
                    self.offset = 0
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return ""
        end = data.rfind(b"\n") + 1  # a half-written line waits for the next read
        self.offset += end
        return data[:end].decode("utf-8", errors="replace")
