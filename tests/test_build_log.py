"""Build log reading: [n/N] progress and failure distillation on captured cmake/ninja logs."""

from __future__ import annotations

from pathlib import Path

from llmtp.core.buildlog import Progress, distill, parse_progress

FIX = Path(__file__).parent / "fixtures" / "build"


def test_progress_lines():
    assert parse_progress(
        "[25/216] Building CXX object ggml/src/CMakeFiles/ggml-cpu.dir/ggml-cpu/unary-ops.cpp.o"
    ) == Progress(25, 216, "Building CXX object ggml/src/CMakeFiles/ggml-cpu.dir/ggml-cpu/unary-ops.cpp.o")
    assert parse_progress("[ 42%] Linking CXX executable ../../bin/llama-server") == Progress(
        42, 100, "Linking CXX executable ../../bin/llama-server"
    )
    assert parse_progress("-- Configuring done") is None


def test_compile_error():
    d = distill((FIX / "ninja-compile-error.log").read_text())
    assert d.lines() == [
        "failed: CMakeFiles/llama-server.dir/broken.cpp.o",
        "/tmp/brokencxx/broken.cpp:4:12: error: ‘undeclared_name’ was not declared in this scope",
        "    4 |     return undeclared_name + v.size();",
    ]


def test_link_error():
    d = distill((FIX / "ninja-link-error.log").read_text())
    assert d.lines() == [
        "failed: llama-server",
        "broken.cpp:(.text+0x5): undefined reference to `missing_symbol()'",
        "collect2: error: ld returned 1 exit status",
    ]


def test_cmake_missing_vulkan():
    d = distill((FIX / "cmake-missing-vulkan.log").read_text())
    assert d.missing == ["Vulkan SDK not found: install libvulkan-dev glslc spirv-headers"]
    assert d.cmake_block == [
        "CMake Error at /usr/share/cmake-3.25/Modules/FindPackageHandleStandardArgs.cmake:230 (message):",
        "  Could NOT find Vulkan (missing: Vulkan_LIBRARY Vulkan_INCLUDE_DIR) (found",
        '  version "")',
    ]


def test_cuda_toolkit_without_cublas():
    # Captured here: the pinned tree configured with GGML_CUDA=ON against a bare nvcc 13.0 install.
    d = distill((FIX / "cmake-cuda-no-cublas.log").read_text())
    assert d.missing[0].startswith("cuBLAS not found next to nvcc")
    assert d.cmake_block[:3] == [
        "CMake Error at ggml/src/ggml-cuda/CMakeLists.txt:175 (target_link_libraries):",
        '  Target "ggml-cuda" links to:',
        "    CUDA::cublas",
    ]
    assert d.errors == []


def test_nvcc_errors():
    log = (
        "[3/90] Building CUDA object ggml/src/ggml-cuda/CMakeFiles/ggml-cuda.dir/mmq.cu.o\n"
        "nvcc fatal   : Unsupported gpu architecture 'compute_120'\n"
        '/src/ggml-cuda/k.cu(12): error: identifier "x" is undefined\n'
    )
    d = distill(log)
    assert d.errors == [
        "nvcc fatal   : Unsupported gpu architecture 'compute_120'",
        '/src/ggml-cuda/k.cu(12): error: identifier "x" is undefined',
    ]
    assert d.missing == ["this nvcc cannot compile for the requested GPU architecture: install a newer CUDA toolkit"]


def test_clean_log_has_nothing():
    assert distill("[1/1] Linking CXX executable bin/llama-server\n").lines() == []


def test_same_error_from_two_targets_is_shown_once():
    log = (FIX / "ninja-compile-error.log").read_text()
    d = distill(log + log)
    assert len(d.errors) == 2
