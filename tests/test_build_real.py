"""The real thing: the pinned sdist built through `llmtp build --source pypi --profile cpu` (the test bed
build, cached across runs), probed, current; a cheap second build, rollback; a CUDA configure check."""

from __future__ import annotations

import shutil
import time

import conftest
import pytest
from filelock import FileLock
from typer.testing import CliRunner

from llmtp.adapters.runner import SubprocessRunner
from llmtp.cli.main import app
from llmtp.errors import BuildError, ToolMissingError
from llmtp.services.build import installed, steps
from llmtp.services.build import pipeline as svc
from llmtp.testbed.build import TESTBED_REQUEST, testbed_build, testbed_inputs_hash, testbed_settings

pytestmark = pytest.mark.llama


def test_testbed_build_is_probed_current_and_rolls_back(monkeypatch):
    home = conftest.testbed_cache_dir() / "llmtp-home"
    bin_dir = testbed_build(home)  # builds once per machine (~15-25 min on 2 cores), then reuses
    settings = testbed_settings(home)
    with FileLock(str(home / "testbed-build.lock")):
        cur = installed.current_build(settings)
        assert cur is not None and cur.bin_dir == bin_dir
        pin = svc.load_pin()
        m = cur.manifest
        assert (m.status, m.source, m.profile, m.build_number, m.sdist_sha256) == (
            "ok",
            "pypi",
            "cpu",
            pin.build,
            pin.pypi.sha256,
        )
        assert m.inputs_hash == testbed_inputs_hash()  # reuse is decided without fetching anything
        assert m.cmake_options["GGML_NATIVE"] == "ON" and m.cmake_options["BUILD_SHARED_LIBS"] == "OFF"
        caps = m.capabilities
        assert caps.version.build_number == pin.build
        assert "draft-mtp" in caps.spec_types and caps.mtp_dialect == "upstream"
        assert caps.devices == []
        assert cur.server.is_file() and cur.bench is not None and cur.fit_params is not None

        # A second build differing only in provenance: the cached build tree relinks, no full rebuild.
        commit = f"t{int(time.time()):x}"
        req = TESTBED_REQUEST.model_copy(update={"cmake_args": [f"LLAMA_BUILD_COMMIT={commit}"]})
        t0 = time.monotonic()
        second = svc.build(settings, req, SubprocessRunner())
        elapsed = time.monotonic() - t0
        try:
            assert second.id != cur.id and second.current
            assert second.manifest.capabilities.version.commit == commit
            assert elapsed < 300, f"incremental rebuild took {elapsed:.0f} s"
            monkeypatch.setenv("LLMTP_HOME", str(home))
            r = CliRunner().invoke(app, ["builds", "rollback"])
            assert r.exit_code == 0 and r.output == f"current: {cur.id}\n"
            assert installed.current_build(settings).id == cur.id
        finally:
            if installed.current_build(settings) is None or installed.current_build(settings).id != cur.id:
                svc.use_build(settings, cur.id)
            shutil.rmtree(second.path, ignore_errors=True)  # keep the shared test bed small
            prev = settings.builds_dir / "previous"
            if prev.is_symlink() and not prev.exists():
                prev.unlink()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not installed")
def test_cuda_profile_configure_only(monkeypatch):
    """CMake configure of the pinned tree with the cuda profile (no compile, no GPU needed)."""
    settings = testbed_settings(conftest.testbed_cache_dir() / "llmtp-home")
    req = svc.BuildRequest(
        profile="cuda", source="pypi", native=False, make_current=False, cmake_args=["CMAKE_CUDA_ARCHITECTURES=89"]
    )
    try:
        svc.build(settings, req, SubprocessRunner(), configure_only=True)
    except ToolMissingError as exc:
        # This machine's bare nvcc 13.0 has no cuBLAS: preflight must say so before CMake runs...
        assert exc.message.startswith("cuBLAS not found for the CUDA toolkit")
        # ...and CMake itself, run without that check, fails for exactly that reason.
        monkeypatch.setattr(steps, "_cuda_library_problems", lambda profile, found: [])
        with pytest.raises(BuildError, match="CMake configure failed for profile cuda") as failed:
            svc.build(settings, req, SubprocessRunner(), configure_only=True)
        assert failed.value.details[0].startswith("missing: cuBLAS not found next to nvcc")
        return
    tree = next((settings.cache_dir / "build-trees").glob("*-cuda"))
    cache = (tree / "CMakeCache.txt").read_text()
    assert "GGML_CUDA:BOOL=ON" in cache and "CMAKE_CUDA_ARCHITECTURES:STRING=89" in cache
