"""Shared fixtures. Every test gets its own LLMTP_HOME; the real test bed (a CPU llama-server built
from the pinned source, and tiny GGUF models) is session-scoped and cached in the real user cache
dir (or LLMTP_TESTBED_CACHE) so only the first run on a machine pays for the build."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def _nvidia_gpu_present() -> bool:
    if os.environ.get("LLMTP_TEST_GPU_BIN_DIR"):
        return True
    try:
        from llmtp.adapters.nvml import read_nvidia_gpus

        return bool(read_nvidia_gpus()[0])
    except Exception:  # noqa: BLE001 - no driver, no library: no GPU tests
        return False


def _vulkan_tier_problem() -> str | None:
    if os.environ.get("LLMTP_TEST_VULKAN_BIN_DIR"):
        return None
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.testbed.vulkan import vulkan_tier_problem

    return vulkan_tier_problem(SubprocessRunner())


def pytest_collection_modifyitems(config, items):
    """`vulkan` tests (the GPU paths any backend serves) run where a Vulkan device, glslc and the headers are
    (Mesa's lavapipe counts); the other `gpu` tests need CUDA and run only where an NVIDIA GPU is visible."""
    # Markers, not keywords: a keyword match would also hit a checkout directory named "vulkan" or "gpu".
    vulkan_items = [item for item in items if item.get_closest_marker("vulkan")]
    cuda_items = [item for item in items if item.get_closest_marker("gpu") and not item.get_closest_marker("vulkan")]
    if vulkan_items and (why := _vulkan_tier_problem()) is not None:
        for item in vulkan_items:
            item.add_marker(pytest.mark.skip(reason=why))
    if cuda_items and not _nvidia_gpu_present():
        skip = pytest.mark.skip(
            reason="CUDA-only (NVML, a CUDA build): no NVIDIA GPU visible (set "
            "LLMTP_TEST_GPU_BIN_DIR to a CUDA build); the GPU paths any backend "
            "serves run in the vulkan tier (-m vulkan)"
        )
        for item in cuda_items:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def llmtp_home(tmp_path_factory, monkeypatch) -> Path:
    """Relocate every llmtp path, and drop LLMTP_* settings leaking in from the environment."""
    home = tmp_path_factory.mktemp("llmtp-home")
    for key in list(os.environ):
        if key.startswith("LLMTP_") and not key.startswith(("LLMTP_TEST", "LLMTP_TESTBED")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LLMTP_HOME", str(home))
    # no test reaches the real Hugging Face hub: port 9 refuses at once (tests that need a hub start a fake one)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    # the HF cache is where llmtp finds downloaded models: every test gets an empty one of its own
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hf-hub"))
    for key in ("LLAMA_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    return home


def testbed_cache_dir() -> Path:
    from llmtp.testbed import cache_root

    return cache_root()


@pytest.fixture(scope="session")
def llama_bin_dir() -> Path:
    """Directory holding the real CPU llama-server (and llama-bench, llama-fit-params).

    LLMTP_TEST_LLAMA_BIN_DIR points at an existing build (e.g. a GPU build on a lent machine);
    otherwise the pinned source is built once through llmtp's own build code and cached.
    """
    override = os.environ.get("LLMTP_TEST_LLAMA_BIN_DIR")
    if override:
        path = Path(override)
        assert (path / "llama-server").is_file(), f"LLMTP_TEST_LLAMA_BIN_DIR has no llama-server: {path}"
        return path
    from llmtp.testbed.build import testbed_build

    return testbed_build(testbed_cache_dir() / "llmtp-home")


@pytest.fixture(scope="session")
def llama_ui_build():
    """The test bed build with the web UI from an npm build of tools/ui (llmtp/testbed/build.py), built once
    and cached beside the test bed; skipped where Node.js >= 20 with npm is missing (the build would have
    no UI to test). LLMTP_TEST_LLAMA_UI_BIN_DIR points at an existing llama-server with a UI instead."""
    import shutil
    import subprocess

    override = os.environ.get("LLMTP_TEST_LLAMA_UI_BIN_DIR")
    if override:
        return Path(override)
    from llmtp.core.ui import NODE_MIN_MAJOR, node_major

    node = shutil.which("node")
    major = node_major(subprocess.run([node, "--version"], capture_output=True, text=True).stdout) if node else None
    if major is None or major < NODE_MIN_MAJOR or not shutil.which("npm"):
        pytest.skip(
            f"the UI build needs Node.js >= {NODE_MIN_MAJOR} with npm on PATH (found: "
            f"{'node ' + str(major) if major else 'no node'})"
        )
    from llmtp.testbed.build import testbed_ui_build

    return testbed_ui_build(testbed_cache_dir() / "llmtp-home")


@pytest.fixture(scope="session")
def llama_ui_bin_dir(llama_ui_build) -> Path:
    return llama_ui_build if isinstance(llama_ui_build, Path) else llama_ui_build.bin_dir


@pytest.fixture(scope="session")
def rpc_bin_dir() -> Path:
    """Directory holding the test bed's RPC build: llama-server and ggml-rpc-server with GGML_RPC=ON.

    A build of its own (`llmtp build --rpc` of the cpu profile), cached beside the CPU test bed under its
    own lock and inputs hash; LLMTP_TEST_RPC_BIN_DIR points at an existing one instead.
    """
    override = os.environ.get("LLMTP_TEST_RPC_BIN_DIR")
    if override:
        path = Path(override)
        assert (path / "ggml-rpc-server").is_file(), f"LLMTP_TEST_RPC_BIN_DIR has no ggml-rpc-server: {path}"
        return path
    from llmtp.testbed.build import testbed_rpc_build

    return testbed_rpc_build(testbed_cache_dir() / "llmtp-home")


@pytest.fixture(scope="session")
def vulkan_bin_dir() -> Path:
    """Directory holding the test bed's Vulkan build (the vulkan profile of the pinned source, with the
    layer-settings patch where the headers need it), cached beside the CPU test bed under its own lock and
    inputs hash, never current. GGML_VK_VISIBLE_DEVICES names the tier's device (a real GPU when there is
    one, else lavapipe, which ggml-vulkan skips unless named) for every llama-server the session starts.
    LLMTP_TEST_VULKAN_BIN_DIR points at an existing Vulkan build instead."""
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.core.vulkan_devices import VISIBLE_ENV
    from llmtp.testbed.vulkan import test_device, vulkan_devices

    devices = vulkan_devices(SubprocessRunner())
    if devices and VISIBLE_ENV not in os.environ:
        os.environ[VISIBLE_ENV] = str(test_device(devices).index)
    override = os.environ.get("LLMTP_TEST_VULKAN_BIN_DIR")
    if override:
        path = Path(override)
        assert (path / "llama-server").is_file(), f"LLMTP_TEST_VULKAN_BIN_DIR has no llama-server: {path}"
        return path
    from llmtp.testbed.build import testbed_vulkan_build

    return testbed_vulkan_build(testbed_cache_dir() / "llmtp-home")


@pytest.fixture(scope="session")
def tiny_models() -> dict[str, Path]:
    """The tiny qwen35 test models (agree, random, plain), generated once and cached."""
    from llmtp.testbed.tiny_models import ensure_tiny_models

    return ensure_tiny_models(testbed_cache_dir() / "models")


@pytest.fixture(scope="session")
def bench_models() -> dict[str, Path]:
    """The bench-size qwen35 models (agree, random; ~290 MB each) for tests that measure a speedup."""
    from llmtp.testbed.tiny_models import ensure_bench_models

    return ensure_bench_models(testbed_cache_dir() / "bench-models")


@pytest.fixture(scope="session")
def demo_models_dir() -> Path:
    """A models dir shared across runs where `llmtp models pull smollm2-135m` keeps the demo GGUF."""
    path = testbed_cache_dir() / "models-dir"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _systemd_runs_dir() -> Path:
    # Outside /tmp: the units under test run with PrivateTmp=yes and must see their files.
    path = testbed_cache_dir() / "systemd" / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def user_manager_session():
    """A private `systemd --user` manager (tests/systemd_bed.py) for the whole run; stopped, its cgroups and
    its directory removed at the end. Skipped, with the reason, where one cannot run safely."""
    import shutil
    import tempfile

    from systemd_bed import start_user_manager, user_manager_unavailable

    reason = user_manager_unavailable()
    if reason:
        pytest.skip(f"no private systemd user manager here: {reason}")
    root = Path(tempfile.mkdtemp(dir=_systemd_runs_dir(), prefix="user-"))
    manager = start_user_manager(root)
    try:
        yield manager
    finally:
        manager.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture()
def user_manager(user_manager_session):
    """The run's private user manager, with no llmtp unit left behind by the test (a failed one included)."""
    yield user_manager_session
    user_manager_session.remove_units("llmtp*")


@pytest.fixture(scope="session")
def systemd_rootfs() -> Path:
    """The container's Debian root (debootstrap, about 300 MB), made once per machine beside the test bed."""
    from systemd_bed import container_unavailable, ensure_rootfs

    reason = container_unavailable()
    if reason:
        pytest.skip(f"no systemd-nspawn container here: {reason}")
    return ensure_rootfs(testbed_cache_dir() / "systemd")


@pytest.fixture()
def systemd_run_dir():
    """A directory of the test's own outside /tmp (units run with PrivateTmp=yes), removed afterwards."""
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(dir=_systemd_runs_dir(), prefix="t-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def container(systemd_rootfs):
    """A booted systemd-nspawn container (tests/systemd_bed.py) with llmtp installed at /opt/llmtp for its own
    python3 (systemd_bed.install_llmtp) and the test bed bound read-only at its own path. Halted and its
    cgroups removed at the end."""
    import shutil
    import sysconfig
    import tempfile

    from systemd_bed import boot_container, install_llmtp

    import llmtp

    checkout = Path(llmtp.__file__).resolve().parents[1]
    deps = Path(sysconfig.get_paths()["purelib"])
    work = Path(tempfile.mkdtemp(dir=_systemd_runs_dir(), prefix="container-"))
    box = boot_container(
        systemd_rootfs,
        work,
        binds_ro=[f"{checkout}:/opt/llmtp-src", f"{deps}:/opt/llmtp-deps", str(testbed_cache_dir())],
    )
    try:
        reason = install_llmtp(box)
        if reason:
            pytest.skip(f"llmtp cannot run inside the container: {reason}")
        yield box
    finally:
        box.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="session")
def old_release_bin_dir() -> Path:
    """Bin dir of the older real release the upgrade tests start from (llmtp/testbed/releases.py: b10752 from its
    sha256-checked PyPI sdist), built once through llmtp's build like the test bed (about 10 minutes on 2
    cores the first time), never current. LLMTP_TEST_OLD_LLAMA_BIN_DIR points at an existing one instead."""
    override = os.environ.get("LLMTP_TEST_OLD_LLAMA_BIN_DIR")
    if override:
        return Path(override)
    from llmtp.testbed.build import testbed_old_build

    return testbed_old_build(testbed_cache_dir() / "llmtp-home").bin_dir
