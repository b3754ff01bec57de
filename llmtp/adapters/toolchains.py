"""Build tools on this machine and their versions, asked through the injected Runner."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from llmtp.adapters.runner import Runner
from llmtp.core.hardware import Tool
from llmtp.core.toolchain_versions import (
    METAL_FIND_ARGV,
    METAL_VERSION_ARGV,
    TOOL_SPECS,
    TOOLKIT_DIRS,
    ToolSpec,
    parse_metal,
)
from llmtp.errors import LlmtpError


def _version(runner: Runner, argv: list[str], spec_parse) -> tuple[str | None, str | None]:
    try:
        done = runner.run(argv, timeout=30)
    except LlmtpError:
        return None, None
    parsed = spec_parse(done.output)
    return parsed.version, parsed.family


def _locate(
    runner: Runner, spec: ToolSpec, toolkit_dirs: Mapping[str, tuple[str, ...]], notes: list[str]
) -> str | None:
    for exe in spec.executables:
        path = runner.which(exe)
        if path:
            return path
    for directory in toolkit_dirs.get(spec.name, ()):
        candidate = Path(directory) / spec.executables[0]
        if candidate.is_file() and os.access(candidate, os.X_OK):
            notes.append(f"{spec.name} found at {candidate} but not on PATH: add {directory} to PATH.")
            return str(candidate)
    return None


def find_toolchains(
    runner: Runner, os_name: str, toolkit_dirs: Mapping[str, tuple[str, ...]] = TOOLKIT_DIRS
) -> tuple[dict[str, Tool], list[str]]:
    """Every tool llmtp's builds may use, present or not (path None), with its version."""
    tools: dict[str, Tool] = {}
    notes: list[str] = []
    for spec in TOOL_SPECS:
        if os_name not in spec.platforms:
            continue
        path = _locate(runner, spec, toolkit_dirs, notes)
        version = family = None
        if path:
            version, family = _version(runner, [path, *spec.version_args], spec.parse)
        tools[spec.name] = Tool(name=spec.name, path=path, version=version, family=family)
    if os_name == "darwin":
        tools["metal"] = _metal(runner, tools["xcrun"])
    return tools, notes


def _metal(runner: Runner, xcrun: Tool) -> Tool:
    """The Metal shader compiler comes with Xcode (not the Command Line Tools alone)."""
    if not xcrun.path:
        return Tool(name="metal")
    try:
        found = runner.run(METAL_FIND_ARGV, timeout=30)
    except LlmtpError:
        return Tool(name="metal")
    path = found.stdout.strip() if found.returncode == 0 else ""
    if not path:
        return Tool(name="metal")
    version, _ = _version(runner, METAL_VERSION_ARGV, parse_metal)
    return Tool(name="metal", path=path, version=version)


def cuda_toolkit_root(nvcc_path: str) -> Path:
    """The CUDA toolkit an nvcc belongs to: the directory above its bin/ (links resolved)."""
    return Path(nvcc_path).resolve().parent.parent


def cublas_found(toolkit_root: Path, env: Mapping[str, str] = os.environ) -> bool:
    """Whether cuBLAS (shared or static) lies in `toolkit_root`, $CUDA_PATH, $CUDAToolkit_ROOT,
    /usr/local/cuda or the distribution's library dir: ggml-cuda links it, and a toolkit without it
    fails at CMake's generate step. The variables count because nvcc may be a wrapper script on PATH."""
    roots = [Path(toolkit_root)] + [
        Path(r) for r in (env.get("CUDA_PATH"), env.get("CUDAToolkit_ROOT"), "/usr/local/cuda") if r
    ]
    dirs = [d for r in roots for d in (r / "lib64", r / "lib", *r.glob("targets/*/lib"))]
    dirs += [Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu")]
    return any(any(d.glob("libcublas.so*")) or (d / "libcublas_static.a").is_file() for d in dirs if d.is_dir())
