"""Reading a cmake/ninja/make log: progress from `[n/N]` lines, and the few lines that explain a failure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# ninja: `[123/456] Building CXX object common/CMakeFiles/common.dir/arg.cpp.o`
_NINJA = re.compile(r"^\[(\d+)/(\d+)\]\s*(.*)$")
# make:  `[ 42%] Building CXX object src/CMakeFiles/llama.dir/llama.cpp.o`
_MAKE = re.compile(r"^\[\s*(\d+)%\]\s*(.*)$")


@dataclass(frozen=True)
class Progress:
    done: int
    total: int  # 100 for make's percentages
    text: str


def parse_progress(line: str) -> Progress | None:
    m = _NINJA.match(line)
    if m:
        return Progress(int(m.group(1)), int(m.group(2)), m.group(3))
    m = _MAKE.match(line)
    if m:
        return Progress(int(m.group(1)), 100, m.group(2))
    return None


# gcc/clang: `/src/x.cpp:3:5: error: 'foo' was not declared in this scope`
_COMPILER_ERROR = re.compile(r"^\S.*?:\d+(?::\d+)?: (?:fatal )?error: ")
# nvcc: `/src/k.cu(12): error: identifier "x" is undefined`
_NVCC_ERROR = re.compile(r"^\S.*?\(\d+\): (?:catastrophic )?error: ")
_NVCC_FATAL = re.compile(r"^nvcc (?:fatal|error)\s*:")  # `nvcc fatal   : Unsupported gpu architecture 'compute_120'`
# ld: `/usr/bin/ld: x.o: in function ...: undefined reference to `foo'` / `collect2: error: ld returned 1 exit status`
_LINKER = re.compile(
    r"(undefined reference to|cannot find -l|ld returned \d+ exit status|ld: error:|"
    r"multiple definition of)"
)
_CMAKE_ERROR_START = re.compile(r"^CMake Error\b")
_FAILED = re.compile(r"^FAILED: ")  # ninja names the failing output

# Missing toolkit phrases CMake prints, and what to install (Debian/Ubuntu).
_MISSING: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"No CMAKE_CUDA_COMPILER could be found|Could NOT find CUDAToolkit|CUDA Toolkit not found"),
        "CUDA toolkit not found: install nvidia-cuda-toolkit (or NVIDIA's cuda-toolkit) and put nvcc on PATH",
    ),
    # `Target "ggml-cuda" links to:` / `    CUDA::cublas` / `but the target was not found.`
    (
        re.compile(r"^\s*CUDA::cublas"),
        "cuBLAS not found next to nvcc: install NVIDIA's libcublas-dev-X-Y (or cuda-libraries-dev-X-Y); "
        "Debian's nvidia-cuda-toolkit includes it",
    ),
    (
        re.compile(r"Could not find a package configuration file provided by \"(hip|hipblas|rocblas)\""),
        "ROCm HIP SDK not found: install rocm-hip-sdk (or hipcc, libhipblas-dev, librocblas-dev)",
    ),
    (re.compile(r"Could NOT find Vulkan"), "Vulkan SDK not found: install libvulkan-dev glslc spirv-headers"),
    (
        re.compile(r"No CMAKE_CXX_COMPILER could be found|No CMAKE_C_COMPILER could be found"),
        "C/C++ compiler not found: install g++ (build-essential)",
    ),
    (
        re.compile(r"CMAKE_MAKE_PROGRAM is not set|Could not find Ninja"),
        "build tool not found: install ninja-build (or make)",
    ),
    (
        re.compile(r"Unsupported gpu architecture '(compute_\w+)'"),
        "this nvcc cannot compile for the requested GPU architecture: install a newer CUDA toolkit",
    ),
    (
        re.compile(r"unsupported GNU version! gcc versions later than (\d+) are not supported"),
        "the host compiler is too new for this nvcc: install an older g++ and pass "
        "--cmake-arg CMAKE_CUDA_HOST_COMPILER=/usr/bin/g++-N, or a newer CUDA toolkit",
    ),
]


@dataclass
class Distilled:
    """The lines worth showing a person instead of the whole log."""

    errors: list[str] = field(default_factory=list)  # first compiler/linker error lines
    cmake_block: list[str] = field(default_factory=list)  # first `CMake Error` block
    missing: list[str] = field(default_factory=list)  # what to install
    failed_target: str | None = None

    def lines(self) -> list[str]:
        out = [f"missing: {m}" for m in self.missing]
        if self.failed_target:
            out.append(f"failed: {self.failed_target}")
        out += self.cmake_block + self.errors
        return out


def distill(log: str, max_errors: int = 8, max_block: int = 15) -> Distilled:
    """First compiler/linker errors (with one line of context each), the first CMake Error block,
    and any missing-toolkit diagnosis."""
    d = Distilled()
    lines = log.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not d.cmake_block and _CMAKE_ERROR_START.match(line):
            block = [line]
            j = i + 1
            # The block is indented text until the next unindented line that is not blank.
            while j < len(lines) and len(block) < max_block:
                nxt = lines[j]
                if nxt and not nxt.startswith((" ", "\t")) and not nxt.startswith("CMake Error"):
                    break
                if nxt.strip():
                    block.append(nxt.rstrip())
                j += 1
            d.cmake_block = block
        elif d.failed_target is None and _FAILED.match(line):
            d.failed_target = line[len("FAILED: ") :].strip()
        elif (
            len(d.errors) < max_errors
            and line.rstrip() not in d.errors
            and (
                _COMPILER_ERROR.match(line)
                or _NVCC_ERROR.match(line)
                or _NVCC_FATAL.match(line)
                or _LINKER.search(line)
            )
        ):
            # (the same source compiled for two targets fails twice with the same line: shown once)
            d.errors.append(line.rstrip())
            # gcc prints the offending source line (and caret) right after the message.
            if i + 1 < len(lines) and lines[i + 1].startswith(" ") and len(d.errors) < max_errors:
                d.errors.append(lines[i + 1].rstrip())
        for pattern, what in _MISSING:
            if pattern.search(line) and what not in d.missing:
                d.missing.append(what)
        i += 1
    return d
