"""Which build tools llmtp looks for, how to ask each its version, and pure parsers for the answers."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Parsed:
    version: str | None
    family: str | None = None  # compilers only


def _first(pattern: str, output: str, flags: int = re.M) -> str | None:
    m = re.search(pattern, output, flags)
    return m.group(1) if m else None


def parse_cmake(output: str) -> Parsed:
    # cmake version 3.25.1
    return Parsed(_first(r"^cmake\d? version (\d+(?:\.\d+)+\S*)", output))


def parse_ninja(output: str) -> Parsed:
    # 1.11.1
    return Parsed(_first(r"\A\s*(\d+(?:\.\d+)+)", output))


def parse_compiler(output: str) -> Parsed:
    """`cc --version` / `c++ --version`, GCC or Clang behind whatever name.

    gcc (Debian 12.2.0-14+deb12u1) 12.2.0
    gcc (GCC) 14.2.1 20240912 (Red Hat 14.2.1-3)
    Apple clang version 15.0.0 (clang-1500.3.9.4)
    Ubuntu clang version 18.1.3 (1ubuntu1)
    """
    apple = _first(r"^Apple clang version (\d+(?:\.\d+)+)", output)
    if apple:
        return Parsed(apple, "apple-clang")
    clang = _first(r"clang version (\d+(?:\.\d+)+)", output)
    if clang:
        return Parsed(clang, "clang")
    first_line = output.strip().splitlines()[0] if output.strip() else ""
    gcc = _first(r"^\S+ \([^)]*\) (\d+(?:\.\d+)+)", first_line)
    if gcc and (
        "Free Software Foundation" in output or "GCC" in first_line or "gcc" in first_line or "g++" in first_line
    ):
        return Parsed(gcc, "gcc")
    return Parsed(gcc)


def parse_nvcc(output: str) -> Parsed:
    # Cuda compilation tools, release 13.0, V13.0.88
    return Parsed(_first(r"release \d+\.\d+, V(\d+(?:\.\d+)+)", output) or _first(r"release (\d+\.\d+)", output))


def parse_hipcc(output: str) -> Parsed:
    # HIP version: 6.2.41133-dd7f95766
    return Parsed(_first(r"^HIP version: (\d+(?:\.\d+)+)", output))


def parse_xcrun(output: str) -> Parsed:
    # xcrun version 70.
    return Parsed(_first(r"^xcrun version (\d+(?:\.\d+)*)", output))


def parse_metal(output: str) -> Parsed:
    # Apple metal version 32023.155 (metalfe-32023.155)
    return Parsed(_first(r"metal version (\d+(?:\.\d+)+)", output))


def parse_ccache(output: str) -> Parsed:
    # ccache version 4.8
    return Parsed(_first(r"^ccache version (\d+(?:\.\d+)+)", output))


def parse_git(output: str) -> Parsed:
    # git version 2.39.5   /   git version 2.39.3 (Apple Git-146)
    return Parsed(_first(r"^git version (\d+(?:\.\d+)+)", output))


def parse_glslc(output: str) -> Parsed:
    # shaderc v2023.2 v2023.2    (glslc: llama.cpp's Vulkan backend compiles its shaders with it)
    return Parsed(_first(r"^shaderc v(\d+(?:\.\d+)+)", output))


@dataclass(frozen=True)
class ToolSpec:
    name: str  # key in HardwareSnapshot.toolchains
    executables: tuple[str, ...]  # tried in order on PATH
    version_args: tuple[str, ...]
    parse: Callable[[str], Parsed]
    platforms: tuple[str, ...] = ("linux", "darwin", "windows")


TOOL_SPECS: tuple[ToolSpec, ...] = (
    ToolSpec("cmake", ("cmake",), ("--version",), parse_cmake),
    ToolSpec("ninja", ("ninja", "ninja-build"), ("--version",), parse_ninja),
    ToolSpec("cc", ("cc", "gcc", "clang"), ("--version",), parse_compiler),
    ToolSpec("c++", ("c++", "g++", "clang++"), ("--version",), parse_compiler),
    ToolSpec("nvcc", ("nvcc",), ("--version",), parse_nvcc, ("linux", "windows")),
    ToolSpec("hipcc", ("hipcc",), ("--version",), parse_hipcc, ("linux", "windows")),
    ToolSpec("glslc", ("glslc",), ("--version",), parse_glslc),
    ToolSpec("xcrun", ("xcrun",), ("--version",), parse_xcrun, ("darwin",)),
    ToolSpec("ccache", ("ccache",), ("--version",), parse_ccache),
    ToolSpec("git", ("git",), ("--version",), parse_git),
)
_PARSERS: dict[str, Callable[[str], Parsed]] = {s.name: s.parse for s in TOOL_SPECS}


def tool_parser(name: str | None) -> Callable[[str], Parsed] | None:
    """The version parser of a tool llmtp knows by this name (None: unknown)."""
    return _PARSERS.get(name) if name else None


# Where toolkits install themselves without touching PATH; CMake's FindCUDAToolkit and the HIP
# package look there too, so a toolkit found there is usable for a build.
TOOLKIT_DIRS: dict[str, tuple[str, ...]] = {
    "nvcc": ("/usr/local/cuda/bin",),
    "hipcc": ("/opt/rocm/bin",),
}
# The Metal shader compiler is reached through xcrun (it ships with Xcode, not on PATH).
METAL_FIND_ARGV = ["xcrun", "-sdk", "macosx", "--find", "metal"]
METAL_VERSION_ARGV = ["xcrun", "-sdk", "macosx", "metal", "--version"]


def version_tuple(version: str | None) -> tuple[int, ...] | None:
    """ "13.0.88" -> (13, 0, 88); None or no leading number -> None."""
    if not version:
        return None
    m = re.match(r"\d+(?:\.\d+)*", version)
    return tuple(int(p) for p in m.group(0).split(".")) if m else None
