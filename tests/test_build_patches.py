"""Patch series: parse, sha256 check, git apply (git trees) and patch -p1 (plain trees), rejected hunks."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from llmtp.adapters.runner import SubprocessRunner
from llmtp.adapters.sources import apply_patches
from llmtp.core.pin import PatchEntry, extract_hunk, parse_series
from llmtp.errors import BuildError, ConfigError

ORIGINAL = "int a = 1;\nint b = 2;\nint c = 3;\n"
PATCH = """diff --git a/src/x.c b/src/x.c
--- a/src/x.c
+++ b/src/x.c
@@ -1,3 +1,3 @@
 int a = 1;
-int b = 2;
+int b = 20;
 int c = 3;
"""


def make_tree(root: Path, git: bool, content: str = ORIGINAL) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "x.c").write_text(content)
    if git:
        run = lambda *a: subprocess.run(["git", *a], cwd=root, check=True, capture_output=True)  # noqa: E731
        run("init", "-q")
        run("-c", "user.email=t@t", "-c", "user.name=t", "add", "-A")
        run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    return root


def make_patches(root: Path, text: str = PATCH, sha: str | None = None) -> tuple[Path, list[PatchEntry]]:
    d = root / "patches"
    d.mkdir()
    (d / "0001-b.patch").write_text(text)
    digest = sha or hashlib.sha256(text.encode()).hexdigest()
    (d / "series").write_text(f"# comment\n\n0001-b.patch {digest}  # trailing comment\n")
    return d, parse_series((d / "series").read_text(), str(d / "series"))


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
needs_patch = pytest.mark.skipif(shutil.which("patch") is None, reason="patch not installed")


@needs_git
def test_applies_on_git_tree(tmp_path):
    tree = make_tree(tmp_path / "tree", git=True)
    d, entries = make_patches(tmp_path)
    apply_patches(tree, d, entries, SubprocessRunner(), is_git=True)
    assert (tree / "src" / "x.c").read_text() == "int a = 1;\nint b = 20;\nint c = 3;\n"


@needs_patch
def test_applies_on_plain_tree(tmp_path):
    tree = make_tree(tmp_path / "tree", git=False)
    d, entries = make_patches(tmp_path)
    apply_patches(tree, d, entries, SubprocessRunner(), is_git=False)
    assert (tree / "src" / "x.c").read_text() == "int a = 1;\nint b = 20;\nint c = 3;\n"


def test_wrong_sha256_stops_before_touching_the_tree(tmp_path):
    tree = make_tree(tmp_path / "tree", git=False)
    d, entries = make_patches(tmp_path, sha="0" * 64)
    with pytest.raises(ConfigError, match="Patch 0001-b.patch: sha256 .* does not match the series"):
        apply_patches(tree, d, entries, SubprocessRunner(), is_git=False)
    assert (tree / "src" / "x.c").read_text() == ORIGINAL


def test_listed_patch_missing(tmp_path):
    d, entries = make_patches(tmp_path)
    (d / "0001-b.patch").unlink()
    with pytest.raises(ConfigError, match="0001-b.patch is listed in .* but missing"):
        apply_patches(tmp_path, d, entries, SubprocessRunner(), is_git=False)


@needs_git
def test_does_not_apply_on_git_tree_names_patch_and_hunk(tmp_path):
    tree = make_tree(tmp_path / "tree", git=True, content="int a = 1;\nint b = 7;\nint c = 3;\n")
    d, entries = make_patches(tmp_path)
    with pytest.raises(BuildError, match="Patch 0001-b.patch does not apply") as exc:
        apply_patches(tree, d, entries, SubprocessRunner(), is_git=True)
    assert exc.value.details[:3] == ["int a = 1;", "int b = 2;", "int c = 3;"]
    assert exc.value.details[-1].startswith("error: patch failed: src/x.c:1")
    assert (tree / "src" / "x.c").read_text() == "int a = 1;\nint b = 7;\nint c = 3;\n"


@needs_patch
def test_does_not_apply_on_plain_tree_shows_rejected_hunk(tmp_path):
    tree = make_tree(tmp_path / "tree", git=False, content="int a = 1;\nint b = 7;\nint c = 3;\n")
    d, entries = make_patches(tmp_path)
    with pytest.raises(BuildError, match="Patch 0001-b.patch does not apply") as exc:
        apply_patches(tree, d, entries, SubprocessRunner(), is_git=False)
    assert exc.value.details == [
        "src/x.c hunk #1:",
        "@@ -1,3 +1,3 @@",
        " int a = 1;",
        "-int b = 2;",
        "+int b = 20;",
        " int c = 3;",
    ]
    assert not list(tree.rglob("*.rej")) and not list(tree.rglob("*.orig"))  # dry run left nothing


def test_series_parse_errors():
    assert parse_series("# only comments\n\n") == []
    with pytest.raises(ConfigError, match="series line 2: 'x.patch'"):
        parse_series("# c\nx.patch\n", "series")
    with pytest.raises(ConfigError, match="line 1"):
        parse_series("x.diff " + "0" * 64, "series")


def test_extract_hunk_picks_file_and_number():
    two = PATCH + "@@ -10,2 +10,2 @@\n-x\n+y\n" + PATCH.replace("src/x.c", "src/y.c")
    assert extract_hunk(two, "src/x.c", 2) == ["@@ -10,2 +10,2 @@", "-x", "+y"]
    assert extract_hunk(two, "src/y.c", 1)[0] == "@@ -1,3 +1,3 @@"
    assert extract_hunk(two, "src/z.c", 1) == []


@needs_patch
def test_patched_copy_keeps_build_named_sources(tmp_path):
    """llama.cpp's own cmake/build-info.cmake and common/build-info.cpp.in are sources: the patched copy
    must keep them (skipping every `build*` name broke the configure of every patched tree), while build
    trees at the top of the source are left out."""
    from llmtp.adapters.sources import SourceTree, patched_copy

    tree = make_tree(tmp_path / "tree", git=False)
    (tree / "CMakeLists.txt").write_text("project(x)\n")
    for rel in (
        "cmake/build-info.cmake",
        "common/build-info.cpp.in",
        "build/CMakeCache.txt",
        "build-cuda/x.o",
        "tools/ui/node_modules/x.js",
    ):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("x\n")
    d, entries = make_patches(tmp_path)
    src = SourceTree(kind="path", path=tree, identity="path:x", is_git=False, patches=entries)
    out = patched_copy(src, d, "ab" * 32, tmp_path / "cache", SubprocessRunner())
    assert (out / "cmake" / "build-info.cmake").is_file() and (out / "common" / "build-info.cpp.in").is_file()
    assert not (out / "build").exists() and not (out / "build-cuda").exists()
    assert not (out / "tools" / "ui" / "node_modules").exists()
    assert (out / "src" / "x.c").read_text() == "int a = 1;\nint b = 20;\nint c = 3;\n"
