"""Build ids from the user, from links and from adopted manifests never reach outside builds/."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmtp.adapters import shipped
from llmtp.adapters.runner import Completed
from llmtp.cli.main import run
from llmtp.errors import UsageError
from llmtp.services.build import installed as reg
from llmtp.settings import load_settings

FIXTURES = Path(__file__).parent / "fixtures" / "llama" / "b11434-cpu"


@pytest.fixture
def settings(llmtp_home):
    return load_settings().settings


def snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.lstat().st_mtime_ns for p in root.rglob("*")}


def probe_dir(path: Path, manifest: dict | None = None) -> Path:
    """A llama.cpp tree elsewhere that looks installed: bin/llama-server, manifest.json beside bin/."""
    (path / "bin").mkdir(parents=True)
    (path / "bin" / "llama-server").write_text("#!/bin/sh\n")
    (path / "marker").write_text("must survive")
    if manifest is not None:
        (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def fixture_manifest(bid: str) -> dict:
    return reg.BuildManifest(
        id=bid,
        source="pypi",
        source_identity="pypi:x",
        profile="cpu",
        backend="cpu",
        cmake_options={},
        targets=["llama-server"],
        inputs_hash="h",
        started_at="2026-01-01T00:00:00.000+00:00",
    ).model_dump(mode="json")


class ProbeRunner:
    def run(self, argv, **kw):
        out = {"--version": "server-version.txt", "--help": "server-help.txt", "--list-devices": "list-devices.txt"}[
            argv[1]
        ]
        return Completed(list(argv), 0, "", (FIXTURES / out).read_text())


@pytest.mark.parametrize(
    "bad",
    [
        "../../x",
        "../victim",
        "/tmp/victim",
        "current",
        "previous",
        ".",
        "..",
        "",
        "b1-cpu-aaaaaaaa/../../x",
        "b1-cpu-aaaaaaaa\n",
    ],
)
def test_use_refuses_anything_but_a_build_id(settings, tmp_path, bad):
    victim = probe_dir(tmp_path / "victim", fixture_manifest("b1-cpu-aaaaaaaa"))
    settings.builds_dir.mkdir(parents=True)
    outside = snapshot(tmp_path)
    with pytest.raises(UsageError, match="is not a build id"):
        reg.use_build(settings, bad)
    assert not (settings.builds_dir / "current").is_symlink()
    assert snapshot(tmp_path) == outside and (victim / "marker").is_file()


def cli(argv: list[str], capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        run(argv)
    return exc.value.code, capsys.readouterr().err


def test_cli_builds_use_with_a_path_exits_2(settings, tmp_path, capsys):
    probe_dir(tmp_path / "x", fixture_manifest("b1-cpu-aaaaaaaa"))
    for bad in (str(tmp_path / "x"), "../../x"):
        code, err = cli(["builds", "use", bad], capsys)
        assert code == 2 and "is not a build id" in err and "Traceback" not in err
    assert not (settings.builds_dir / "current").is_symlink()


def test_adopt_replaces_a_hostile_manifest_id_and_touches_nothing_outside(settings, tmp_path):
    """A foreign manifest.json says id ../../victim: adopting must not move, replace or delete that."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious").write_text("keep me")
    settings.builds_dir.mkdir(parents=True)
    rel = os.path.relpath(victim, settings.builds_dir)  # ../../victim seen from builds/
    foreign = probe_dir(tmp_path / "foreign", fixture_manifest(rel))
    assert not settings.builds_dir.is_relative_to(tmp_path)
    outside = snapshot(tmp_path)

    b = reg.adopt(settings, foreign / "bin", ProbeRunner())
    assert reg.is_build_id(b.id) and b.id.endswith("-adopted") and ".." not in b.id
    assert b.path.parent == settings.builds_dir and b.manifest.id == b.id
    assert b.manifest.source_identity == "pypi:x"  # the provenance is kept
    assert (victim / "precious").read_text() == "keep me"
    again = reg.adopt(settings, foreign / "bin", ProbeRunner())  # re-adopting replaces only its own dir
    assert again.id == b.id and (victim / "precious").read_text() == "keep me"
    assert snapshot(tmp_path) == outside
    assert json.loads((foreign / "manifest.json").read_text())["id"] == rel  # the foreign tree untouched


def test_a_hostile_current_link_is_never_followed(settings, tmp_path):
    victim = probe_dir(tmp_path / "victim", fixture_manifest("b1-cpu-aaaaaaaa"))
    settings.builds_dir.mkdir(parents=True)
    os.symlink(str(victim), settings.builds_dir / "current")
    os.symlink("../../victim", settings.builds_dir / "previous")
    assert reg.current_build(settings) is None
    with pytest.raises(UsageError, match="no previous build"):
        reg.rollback(settings)
    assert reg.prune(settings, keep=0) == []
    assert (victim / "marker").is_file()


def test_a_build_dir_that_is_a_link_is_refused(settings, tmp_path):
    victim = probe_dir(tmp_path / "victim", fixture_manifest("b1-cpu-aaaaaaaa"))
    settings.builds_dir.mkdir(parents=True)
    os.symlink(str(victim), settings.builds_dir / "b1-cpu-aaaaaaaa")
    with pytest.raises(UsageError, match="is a link"):
        reg.use_build(settings, "b1-cpu-aaaaaaaa")
    assert reg.list_builds(settings) == [] and reg.prune(settings, keep=0) == []
    assert (victim / "marker").is_file()


def test_generated_ids_are_build_ids():
    for profile in shipped.profile_names():
        assert reg.is_build_id(reg.build_id(11434, profile, "0123456789abcdef"))
        assert reg.is_build_id(reg.build_id(None, profile, "0123456789abcdef") + "-adopted")
