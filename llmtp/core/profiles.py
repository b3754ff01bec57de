"""Build profiles: the validated model, hardware fill-in, effective CMake options, preflight checks.

Pure: callers read the TOML text and run the tools; this module only decides.
"""

from __future__ import annotations

import re
from typing import Literal

from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmtp.core.hardware import HardwareSnapshot
from llmtp.core.pin import parse_toml, validation_error
from llmtp.core.toolchain_versions import tool_parser
from llmtp.errors import ConfigError, ToolMissingError, UsageError

Backend = Literal["cpu", "cuda", "rocm", "metal", "vulkan"]
CmakeValue = bool | int | str

# Placeholders a profile may use as a [cmake] value; filled from the hardware snapshot.
NATIVE = "{native}"
CUDA_ARCHS = "{cuda_archs}"
GFX_TARGETS = "{gfx_targets}"
PLACEHOLDERS = (NATIVE, CUDA_ARCHS, GFX_TARGETS)

# --list-devices backend prefix that proves a GPU build sees its GPU ("CUDA0: ...").
DEVICE_PREFIX: dict[str, tuple[str, ...]] = {
    "cuda": ("CUDA",),
    "rocm": ("ROCm", "HIP"),
    "metal": ("MTL", "Metal"),
    "vulkan": ("Vulkan",),
    "cpu": (),
}


class ToolRequirement(BaseModel):
    """A tool a profile needs (its [[tools]] table): where to look, the oldest usable version, how to install.
    How a known tool's version is read is core.toolchain_versions' ToolSpec (detection and builds alike)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    commands: list[str] = Field(min_length=1)  # tried in order; the first found is used
    min_version: str | None = None
    version_args: list[str] = Field(default_factory=lambda: ["--version"])
    version_regex: str = r"(\d+\.\d+(?:\.\d+)?)"  # first group = the version (tools detection does not know)
    package: str | None = None  # Debian/Ubuntu package (or the platform's install command)
    hint: str | None = None
    optional: bool = False


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""  # the file stem; set by the loader
    description: str
    backend: Backend
    platforms: list[Literal["linux", "darwin", "windows"]]
    targets: list[str] = Field(min_length=1)
    optional_targets: list[str] = Field(default_factory=list)
    patch_set: str = ""  # a user set: <data dir>/patches/<patch_set>/series; "" = the shipped patches/series
    require_patches: bool = False  # a profile that only makes sense with its patches (cuda-mtp-branch)
    cmake: dict[str, CmakeValue] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)
    tools: list[ToolRequirement] = Field(default_factory=list)


def parse_profile(text: str, name: str, source: str) -> Profile:
    """Validate one profile file's text; errors name `source` and the key."""
    data = parse_toml(text, source, "build profile")
    try:
        profile = Profile.model_validate({**data, "name": name})
    except ValidationError as exc:
        raise validation_error(exc, source, "build profile") from exc
    for key, value in profile.cmake.items():
        if isinstance(value, str) and "{" in value and value not in PLACEHOLDERS:
            raise ConfigError(
                f"Invalid build profile {source}: key 'cmake.{key}': unknown placeholder {value!r}",
                f"Valid placeholders: {', '.join(PLACEHOLDERS)}.",
            )
    return profile


def cmake_value(value: CmakeValue) -> str:
    if isinstance(value, bool):
        return "ON" if value else "OFF"
    return str(value)


def cuda_arch_for_cmake(arch: str) -> str:
    """Blackwell consumer parts need the arch-specific `a` variant for their FP4 tensor cores,
    as upstream's own default list does (ggml/src/ggml-cuda/CMakeLists.txt: 120a-real, 121a-real)."""
    return f"{arch}a" if arch in ("120", "121") else arch


def cuda_archs(hw: HardwareSnapshot) -> list[str]:
    """Every NVIDIA GPU's arch (all GPUs, deduplicated, sorted numerically)."""
    archs = {g.cuda_arch for g in hw.gpus if g.vendor == "nvidia" and g.cuda_arch}
    return sorted(archs, key=lambda a: int(re.sub(r"\D", "", a) or 0))


def gpus_without_cuda_code(options: dict[str, str], hw: HardwareSnapshot | None) -> list[str]:
    """NVIDIA GPUs a CUDA build cannot run on: no cubin it can load and no PTX it can JIT.

    CUDA rules: a cubin for sm_XY runs on sm_XZ with Z >= Y (same major; not the `a`/`f` specific
    variants); PTX for compute_N JIT-compiles for any GPU >= N. `86` means both, `86-real` the cubin,
    `86-virtual` the PTX. `native`, `all`, `all-major` cover the GPUs by construction.
    """
    spec = options.get("CMAKE_CUDA_ARCHITECTURES", "").strip()
    if hw is None or not spec or spec in ("native", "all", "all-major"):
        return []
    cubins: list[tuple[int, bool]] = []  # (arch, arch-specific variant)
    ptx: list[int] = []
    for entry in filter(None, (e.strip() for e in spec.split(";"))):
        m = re.fullmatch(r"(\d+)([af]?)(?:-(real|virtual))?", entry)
        if m is None:
            continue
        arch, specific, kind = int(m.group(1)), bool(m.group(2)), m.group(3)
        if kind != "virtual":
            cubins.append((arch, specific))
        if kind != "real" and not specific:
            ptx.append(arch)
    missing = []
    for gpu in hw.gpus:
        if gpu.vendor != "nvidia" or not gpu.cuda_arch:
            continue
        n = int(re.sub(r"\D", "", gpu.cuda_arch))
        runs = any(a == n or (not sp and a // 10 == n // 10 and a <= n) for a, sp in cubins)
        if not runs and not any(a <= n for a in ptx):
            missing.append(f"{gpu.name} (sm_{n})")
    return missing


def gfx_targets(hw: HardwareSnapshot) -> list[str]:
    return sorted({g.gfx_target for g in hw.gpus if g.vendor == "amd" and g.gfx_target})


def parse_cmake_args(args: list[str]) -> dict[str, str]:
    """`--cmake-arg KEY=VALUE` (a leading -D is tolerated) into a dict, later ones winning."""
    out: dict[str, str] = {}
    for arg in args:
        text = arg[2:] if arg.startswith("-D") else arg
        key, sep, value = text.partition("=")
        key = key.split(":", 1)[0].strip()  # KEY:BOOL=ON -> KEY
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise UsageError(f"Bad --cmake-arg {arg!r}", "Use KEY=VALUE, e.g. --cmake-arg GGML_CUDA_FA_QUANTS=all.")
        out[key] = value
    return out


def cmake_on(value: str | None) -> bool:
    """A CMake option value that switches the option on, as llmtp reads its effective options."""
    return (value or "").upper() in ("ON", "1", "TRUE", "YES")


def effective_cmake_options(
    profile: Profile,
    hw: HardwareSnapshot | None,
    *,
    native: bool,
    overrides: dict[str, str] | None = None,
    provenance: dict[str, str] | None = None,
    cpu_flags: list[str] | None = None,
) -> dict[str, str]:
    """The profile's options with placeholders filled, provenance added, then overrides applied.

    `native`: building for this machine (GGML_NATIVE=ON, arch from its own GPUs). `hw` None means
    nothing was detected; a placeholder that needs detection then fails unless overridden.
    `cpu_flags`: this CPU's ISA flags when `hw` is None (a native build needs them, see NO_AMX).
    """
    overrides = overrides or {}
    out: dict[str, str] = {}
    for key, value in profile.cmake.items():
        if key in overrides:
            continue
        if value == NATIVE:
            out[key] = "ON" if native else "OFF"
        elif value == CUDA_ARCHS:
            archs = cuda_archs(hw) if hw else []
            if not archs:
                raise UsageError(
                    f"Profile {profile.name} needs CMAKE_CUDA_ARCHITECTURES but no NVIDIA GPU "
                    "with a known compute capability was detected",
                    "Pass --cmake-arg CMAKE_CUDA_ARCHITECTURES=89 (8.9 -> 89; ';' between several).",
                )
            out[key] = ";".join(cuda_arch_for_cmake(a) for a in archs)
        elif value == GFX_TARGETS:
            targets = gfx_targets(hw) if hw else []
            if not targets:
                raise UsageError(
                    f"Profile {profile.name} needs GPU_TARGETS but no AMD GPU with a known gfx target was detected",
                    "Pass --cmake-arg GPU_TARGETS=gfx1100 (';' between several).",
                )
            out[key] = ";".join(targets)
        else:
            out[key] = cmake_value(value)
    if cpu_flags is None:
        cpu_flags = hw.cpu.flags if hw is not None else []
    native_off = overrides.get("GGML_NATIVE", "").upper() in ("OFF", "0", "FALSE", "NO")
    if native and not native_off and AMX_FLAG in cpu_flags:
        for key in ("CMAKE_C_FLAGS", "CMAKE_CXX_FLAGS"):
            if key not in overrides:
                out[key] = f"{out.get(key, '')} {NO_AMX}".strip()
    for key, value in (provenance or {}).items():
        if key not in overrides:
            out[key] = value
    out.update(overrides)
    return out


# A native build on a CPU with AMX compiles ggml's AMX kernels (-march=native defines __AMX_INT8__).
# In b11434 they die of SIGILL (`tilezero` in tinygemm_kernel_amx) on the first quantized matmul:
# seen on an AMX Xeon with a Q4_1 model, while a standalone AMX program runs on the same machine.
# AVX-512/VNNI kernels serve those types instead; `--cmake-arg CMAKE_CXX_FLAGS=...` puts AMX back.
AMX_FLAG = "amx_tile"
NO_AMX = "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"


def cmake_configure_argv(
    cmake: str,
    source_dir: str,
    build_dir: str,
    options: dict[str, str],
    *,
    generator: str | None,
    launcher: str | None = None,
) -> list[str]:
    argv = [cmake, "-S", source_dir, "-B", build_dir]
    if generator:
        argv += ["-G", generator]
    if launcher:
        # ccache in front of every compiler: an unchanged translation unit is not compiled twice.
        for lang in ("C", "CXX", "CUDA"):
            if f"CMAKE_{lang}_COMPILER_LAUNCHER" not in options:
                argv.append(f"-DCMAKE_{lang}_COMPILER_LAUNCHER={launcher}")
    argv += [f"-D{k}={v}" for k, v in options.items()]
    return argv


def cmake_build_argv(cmake: str, build_dir: str, targets: list[str], jobs: int) -> list[str]:
    return [cmake, "--build", build_dir, "-j", str(jobs), "--target", *targets]


def build_jobs(cores: int | None, available_ram_bytes: int | None, per_job_bytes: int = 1 << 30) -> int:
    """One job per core, but no more than free RAM / ~1 GiB (llama.cpp's largest TUs peak near that)."""
    jobs = max(1, cores or 1)
    if available_ram_bytes is not None:
        jobs = min(jobs, max(1, available_ram_bytes // per_job_bytes))
    return jobs


# --- preflight ----------------------------------------------------------------------------------


def parse_tool_version(output: str, regex: str, name: str | None = None) -> str | None:
    """A tool's version from its `--version` output: the parser `llmtp detect` uses for a tool it knows
    (core.toolchain_versions: nvcc's banner, compilers, ...), else the profile's `regex` (first group).
    `cmake version 3.25.1` -> "3.25.1"; `Cuda compilation tools, release 13.0, V13.0.48` -> "13.0.48"."""
    parse = tool_parser(name)
    if parse is not None:
        return parse(output).version
    m = re.search(regex, output)
    return m.group(1) if m else None


def _version_lt(a: str, b: str) -> bool:
    try:
        return Version(a) < Version(b)
    except InvalidVersion:
        return False  # unparseable: do not refuse on a guess


# NVIDIA CUDA toolkit support per GPU arch. Source: NVIDIA CUDA Toolkit release notes
# (11.1 added sm_86; 11.8 added sm_89 and sm_90; 12.8 added sm_100 and sm_120; 12.9 sm_121;
# 13.0 removed offline compilation for sm_50..sm_72, i.e. Maxwell, Pascal and Volta), and
# upstream's ggml/src/ggml-cuda/CMakeLists.txt comments (86 needs 11.1, 89/90 need 11.8, 120 needs 12.8).
CUDA_ARCH_MIN_TOOLKIT: dict[int, str] = {
    86: "11.1",
    87: "11.4",
    89: "11.8",
    90: "11.8",
    100: "12.8",
    101: "12.8",
    120: "12.8",
    121: "12.9",
}
CUDA_ARCH_MAX_TOOLKIT_EXCLUSIVE: dict[int, str] = dict.fromkeys((50, 52, 53, 60, 61, 62, 70, 72), "13.0")


def cuda_arch_problems(nvcc_version: str, archs: list[str]) -> list[str]:
    """Why this nvcc cannot compile for these archs (empty: it can)."""
    problems = []
    for arch in archs:
        digits = re.match(r"\d+", arch)
        if not digits:
            continue  # "native", "all": nvcc decides
        n = int(digits.group(0))
        need = CUDA_ARCH_MIN_TOOLKIT.get(n)
        if need and _version_lt(nvcc_version, need):
            problems.append(f"nvcc {nvcc_version} cannot target sm_{n}: CUDA >= {need} is needed")
        drop = CUDA_ARCH_MAX_TOOLKIT_EXCLUSIVE.get(n)
        if drop and not _version_lt(nvcc_version, drop):
            problems.append(
                f"nvcc {nvcc_version} dropped sm_{n}: CUDA {drop} and later no longer compile for it; use CUDA 12.x"
            )
    return problems


class FoundTool(BaseModel):
    name: str
    path: str | None = None
    version: str | None = None


def preflight_problems(
    profile: Profile, found: dict[str, FoundTool], options: dict[str, str], os_name: str
) -> list[ToolMissingError]:
    """Everything that would make this build fail before it starts, each with the fix."""
    errors: list[ToolMissingError] = []
    if os_name not in profile.platforms:
        errors.append(
            ToolMissingError(
                f"Profile {profile.name} does not build on {os_name}",
                f"It supports {', '.join(profile.platforms)}; pick another --profile.",
            )
        )
    for spec in profile.tools:
        tool = found.get(spec.name)
        install = (
            f"Install it: apt install {spec.package}"
            if spec.package and " " not in spec.package
            else (f"Install it: {spec.package}" if spec.package else "Install it")
        )
        install += f" ({spec.hint})." if spec.hint else "."
        if tool is None or tool.path is None:
            if not spec.optional:
                errors.append(
                    ToolMissingError(f"{spec.name} not found (looked for {', '.join(spec.commands)})", install)
                )
            continue
        if spec.min_version and tool.version and _version_lt(tool.version, spec.min_version):
            errors.append(
                ToolMissingError(
                    f"{spec.name} {tool.version} at {tool.path} is too old: {spec.min_version} or newer is needed",
                    install,
                )
            )
    nvcc = found.get("nvcc")
    archs = options.get("CMAKE_CUDA_ARCHITECTURES")
    if nvcc and nvcc.version and archs and profile.backend == "cuda":
        for problem in cuda_arch_problems(nvcc.version, archs.split(";")):
            errors.append(
                ToolMissingError(
                    f"CUDA toolkit too old or too new for the GPU: {problem}",
                    "Install a CUDA toolkit that supports every GPU here, or set "
                    "--cmake-arg CMAKE_CUDA_ARCHITECTURES to the archs you need.",
                )
            )
    return errors
