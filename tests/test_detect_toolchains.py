"""Toolchain version parsers on captured output, and the adapter driven by a fake Runner."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from llmtp.adapters.runner import Completed
from llmtp.adapters.toolchains import find_toolchains
from llmtp.core.hardware import Tool
from llmtp.core.toolchain_versions import (
    Parsed,
    parse_ccache,
    parse_cmake,
    parse_compiler,
    parse_git,
    parse_glslc,
    parse_hipcc,
    parse_metal,
    parse_ninja,
    parse_nvcc,
    parse_xcrun,
    version_tuple,
)
from llmtp.errors import ToolMissingError

FIX = Path(__file__).parent / "fixtures" / "toolchains"


@pytest.mark.parametrize(
    "parser, fixture, expected",
    [
        (parse_cmake, "cmake-3.25.1.txt", Parsed("3.25.1")),
        (parse_ninja, "ninja-1.11.1.txt", Parsed("1.11.1")),
        (parse_compiler, "gcc-12.2.0.txt", Parsed("12.2.0", "gcc")),
        (parse_compiler, "gxx-12.2.0.txt", Parsed("12.2.0", "gcc")),
        (parse_compiler, "gcc-14-fedora.txt", Parsed("14.2.1", "gcc")),
        (parse_compiler, "clang-18-ubuntu.txt", Parsed("18.1.3", "clang")),
        (parse_compiler, "apple-clang-15.txt", Parsed("15.0.0", "apple-clang")),
        (parse_nvcc, "nvcc-13.0.txt", Parsed("13.0.88")),
        (parse_hipcc, "hipcc-6.2.txt", Parsed("6.2.41133")),
        (parse_ccache, "ccache-4.8.txt", Parsed("4.8")),
        (parse_git, "git-2.39.5.txt", Parsed("2.39.5")),
        (parse_xcrun, "xcrun-70.txt", Parsed("70")),
        (parse_metal, "metal-32023.txt", Parsed("32023.155")),
        (parse_glslc, "glslc-2023.2.txt", Parsed("2023.2")),
    ],
)
def test_version_parsers_on_captured_output(parser, fixture, expected):
    assert parser((FIX / fixture).read_text()) == expected


def test_parsers_on_garbage_return_none():
    for parser in (parse_cmake, parse_ninja, parse_compiler, parse_nvcc, parse_hipcc, parse_git):
        assert parser("command not understood\n").version is None
    assert parse_compiler("") == Parsed(None)


def test_version_tuple():
    assert (version_tuple("13.0.88"), version_tuple("6.2.41133"), version_tuple(None), version_tuple("x")) == (
        (13, 0, 88),
        (6, 2, 41133),
        None,
        None,
    )


class FakeRunner:
    """Answers `which` from a dict and `run` from canned outputs keyed by argv."""

    def __init__(self, paths: dict[str, str], outputs: dict[tuple[str, ...], str]):
        self.paths, self.outputs, self.ran = paths, outputs, []

    def which(self, name):
        return self.paths.get(name)

    def run(self, argv, *, cwd=None, env=None, timeout=60):
        self.ran.append(list(argv))
        if tuple(argv) not in self.outputs:
            raise ToolMissingError(f"Cannot run {argv[0]}: not found")
        return Completed(list(argv), 0, self.outputs[tuple(argv)], "")


def test_linux_toolchains_present_and_absent():
    runner = FakeRunner(
        {"cmake": "/usr/bin/cmake", "gcc": "/usr/bin/gcc", "g++": "/usr/bin/g++", "git": "/usr/bin/git"},
        {
            ("/usr/bin/cmake", "--version"): (FIX / "cmake-3.25.1.txt").read_text(),
            ("/usr/bin/gcc", "--version"): (FIX / "gcc-12.2.0.txt").read_text(),
            ("/usr/bin/g++", "--version"): (FIX / "gxx-12.2.0.txt").read_text(),
        },
    )
    tools, notes = find_toolchains(runner, "linux", toolkit_dirs={})
    assert notes == []
    assert tools == {
        "cmake": Tool(name="cmake", path="/usr/bin/cmake", version="3.25.1"),
        "ninja": Tool(name="ninja"),
        "cc": Tool(name="cc", path="/usr/bin/gcc", version="12.2.0", family="gcc"),
        "c++": Tool(name="c++", path="/usr/bin/g++", version="12.2.0", family="gcc"),
        "nvcc": Tool(name="nvcc"),
        "hipcc": Tool(name="hipcc"),
        "glslc": Tool(name="glslc"),
        "ccache": Tool(name="ccache"),
        "git": Tool(name="git", path="/usr/bin/git", version=None),  # present, --version failed
    }


def test_nvcc_outside_path_is_found_with_a_note(tmp_path):
    cuda_bin = tmp_path / "cuda" / "bin"
    cuda_bin.mkdir(parents=True)
    nvcc = cuda_bin / "nvcc"
    nvcc.write_text("#!/bin/sh\n")
    os.chmod(nvcc, 0o755)
    runner = FakeRunner({}, {(str(nvcc), "--version"): (FIX / "nvcc-13.0.txt").read_text()})
    tools, notes = find_toolchains(runner, "linux", toolkit_dirs={"nvcc": (str(cuda_bin),)})
    assert tools["nvcc"] == Tool(name="nvcc", path=str(nvcc), version="13.0.88")
    assert notes == [f"nvcc found at {nvcc} but not on PATH: add {cuda_bin} to PATH."]


def test_macos_looks_for_xcrun_and_metal_not_nvcc():
    runner = FakeRunner(
        {"xcrun": "/usr/bin/xcrun", "cc": "/usr/bin/cc"},
        {
            ("/usr/bin/xcrun", "--version"): (FIX / "xcrun-70.txt").read_text(),
            ("/usr/bin/cc", "--version"): (FIX / "apple-clang-15.txt").read_text(),
            (
                "xcrun",
                "-sdk",
                "macosx",
                "--find",
                "metal",
            ): "/Applications/Xcode.app/Contents/Developer/Toolchains/XcodeDefault.xctoolchain/usr/bin/metal\n",
            ("xcrun", "-sdk", "macosx", "metal", "--version"): (FIX / "metal-32023.txt").read_text(),
        },
    )
    tools, _ = find_toolchains(runner, "darwin", toolkit_dirs={})
    assert "nvcc" not in tools and "hipcc" not in tools
    assert tools["cc"] == Tool(name="cc", path="/usr/bin/cc", version="15.0.0", family="apple-clang")
    assert tools["xcrun"].version == "70"
    assert tools["metal"].version == "32023.155"
    assert tools["metal"].path.endswith("/usr/bin/metal")
