"""The planner's FFN spill on the real llama-server: the argv llmtp builds (--n-cpu-ffn, or the -ot
pattern for binaries without it) loads the tiny MTP model with layer 0's dense FFN weights in a CPU
buffer, and it answers the same greedy text, drafting with its MTP layer.

The test bed is a CPU build, so every buffer is in RAM either way; what this shows is that llama-server
accepts the flags as built, that they select exactly the FFN tensors of the named layers (its -v log
names each overridden tensor), and that MTP still runs.
"""

from __future__ import annotations

import re

import pytest
from llama_server import llama_server

from llmtp.adapters.gguf_file import read_model_info
from llmtp.adapters.runner import SubprocessRunner
from llmtp.core.argv import build_server_argv
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.services.build.installed import probe_binary

pytestmark = pytest.mark.llama

PROMPT = "Hello world, the"
MTP = ["--spec-type", "draft-mtp", "--spec-draft-n-max", "3"]
# `tensor blk.0.ffn_up.weight (0 MiB f32) buffer type overridden to CPU` (llama-model-loader.cpp, debug level)
OVERRIDDEN = re.compile(r"tensor (\S+) \(\d+ MiB \w+\) buffer type overridden to CPU")


@pytest.fixture(scope="module")
def caps(llama_bin_dir):
    return probe_binary(llama_bin_dir, SubprocessRunner())


@pytest.mark.parametrize("dialect", ["--n-cpu-ffn", "-ot"])
def test_ffn_of_one_layer_on_the_cpu_loads_and_answers(llama_bin_dir, tiny_models, tmp_path, caps, dialect):
    model = tiny_models["agree"]
    if dialect == "-ot":  # a binary that has -ot but not --n-cpu-ffn
        caps = caps.model_copy(update={"flags": [f for f in caps.flags if f not in ("--n-cpu-ffn", "-ncffn")]})
    info = read_model_info(model)
    spec = LaunchSpec(
        model=str(model),
        port=1,
        n_gpu_layers=info.block_count + 1,
        n_cpu_ffn=1,
        mtp=MtpSettings(enabled=True, n_max=3),
        metrics=False,
    )
    argv = build_server_argv(str(llama_bin_dir / "llama-server"), caps, spec)
    assert dialect in argv
    extra = argv[argv.index("-ngl") :]  # the helper sets -m, --host and --port itself
    with llama_server(llama_bin_dir, model, tmp_path / "plain.log", MTP) as srv:
        reference = srv.complete(PROMPT, 24)
    with llama_server(llama_bin_dir, model, tmp_path / "ffn.log", [*extra, "-v"]) as srv:
        out = srv.complete(PROMPT, 24)
        log = srv.log()
    assert out["content"] == reference["content"] and out["timings"]["predicted_n"] == 24
    assert out["timings"]["draft_n"] > 0  # the MTP layer still drafts
    moved = set(OVERRIDDEN.findall(log))
    assert moved == {"blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight"}
