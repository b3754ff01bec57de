"""Failure lines distilled from captured llama-server logs (b11434)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmtp.core.logscan import classify, meaningful_lines

FIX = Path(__file__).parent / "fixtures/llama/b11434-cpu"


def _read(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


def test_mtp_on_plain_model():
    text = _read("serve-mtp-on-plain.log")
    assert classify(text) == "mtp_missing"
    assert meaningful_lines(text) == [
        "llama_init_from_model: context type MTP requested but model doesn't contain MTP layers",
        "common_speculative_init_result: failed to create MTP context",
        "srv    load_model: failed to create MTP context",
        "srv  llama_server: exiting due to model loading error",
    ]


def test_bad_argument():
    text = _read("serve-bad-arg.log")
    assert classify(text) == "bad_argument"
    assert meaningful_lines(text) == ["error: invalid argument: --bogus-flag"]


def test_missing_model_is_deduplicated_and_bounded():
    lines = meaningful_lines(_read("serve-missing-model.log"), limit=3)
    assert lines[0] == "gguf_init_from_file: failed to open GGUF file '/nonexist.gguf' (No such file or directory)"
    assert len(lines) == 3 and len(set(lines)) == 3


@pytest.mark.parametrize(
    "line, kind",
    [
        (
            "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB on device 0: cudaMalloc failed: out of memory",
            "oom",
        ),
        ("/src/ggml-cuda.cu:88: CUDA error", "crash"),
        ("/src/ggml.c:1234: GGML_ASSERT(x) failed", "crash"),
        ("nothing to see", "unknown"),
    ],
)
def test_classify(line, kind):
    assert classify("0.00.001.000 I srv load\n" + line) == kind


def test_exit_description_names_the_signal_and_what_sigill_means():
    from llmtp.core.logscan import exit_description

    assert exit_description(1) == "code 1"
    assert exit_description(-9) == "SIGKILL (code -9)"
    assert exit_description(-4).startswith("SIGILL (illegal instruction: the build uses CPU instructions")
    assert "llmtp build --portable" in exit_description(-4)
