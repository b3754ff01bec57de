"""`llmtp inspect` on small GGUF files written here: human and JSON output, and clean failures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from llmtp.cli.main import app, run
from llmtp.errors import ModelFileError
from llmtp.testbed.tiny_models import write_model

runner = CliRunner()


def write_llama(path: Path) -> Path:
    """A 2-layer llama-shaped GGUF with F16 matrices and no MTP heads."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(2048)
    w.add_file_type(int(gguf.LlamaFileType.MOSTLY_F16))
    w.add_tensor("token_embd.weight", np.zeros((10, 64), dtype=np.float16))
    w.add_tensor("output_norm.weight", np.ones(64, dtype=np.float32))
    for il in range(2):
        w.add_tensor(f"blk.{il}.attn_q.weight", np.zeros((64, 64), dtype=np.float16))
        w.add_tensor(f"blk.{il}.attn_norm.weight", np.ones(64, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def mtp_model(tmp_path) -> Path:
    return write_model(tmp_path / "tiny-agree.gguf", "agree")


def test_inspect_json_reports_mtp_heads_and_hybrid_layout(mtp_model):
    result = runner.invoke(app, ["inspect", str(mtp_model), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["arch"] == "qwen35"
    assert (data["block_count"], data["nextn_predict_layers"], data["trunk_layers"]) == (3, 1, 2)
    assert data["has_mtp_heads"] is True and data["mtp_arch"] is True
    assert data["recurrent_layers"] == [0] and data["attention_layers"] == [1]
    # tiny size: 1 KV head of 32 dims for K and V on the one attention layer.
    assert data["kv_bytes_per_token"] == {"f16": 128, "q8_0": 68, "q4_0": 36}
    assert data["file_size_bytes"] == mtp_model.stat().st_size
    assert data["quant"] == "F32"
    assert sum(data["layer_weight_bytes"]) + data["other_weight_bytes"] == sum(data["tensor_types"].values())


def test_inspect_human_output_matches_json(mtp_model):
    result = runner.invoke(app, ["inspect", str(mtp_model)])
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[0]: line for line in result.output.splitlines()}
    assert "yes (1 nextn layer)" in lines["MTP heads"]
    assert "3 (2 trunk + 1 nextn)" in lines["blocks"]
    assert "f16 128 B, q8_0 68 B, q4_0 36 B" in lines["KV per token"]
    assert "qwen35 (MTP graph upstream)" in lines["architecture"]


def test_inspect_plain_llama_file(tmp_path):
    path = write_llama(tmp_path / "llama.gguf")
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["arch"], data["quant"], data["has_mtp_heads"], data["mtp_arch"]) == ("llama", "F16", False, False)
    assert data["param_count"] == 640 + 64 + 2 * (4096 + 64)
    # 2 KV heads * (16 + 16) dims * 2 bytes * 2 layers
    assert data["kv_bytes_per_token"]["f16"] == 256
    assert data["tensor_types"] == {"F16": 640 * 2 + 2 * 4096 * 2, "F32": 3 * 256}


def _fails(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err  # one line, no traceback
    return err


@pytest.mark.parametrize("cut", [3, 100, 2000, -1])
def test_truncated_file_exits_2(mtp_model, tmp_path, capsys, cut):
    data = mtp_model.read_bytes()
    short = tmp_path / "short.gguf"
    short.write_bytes(data[:cut])  # -1: only the last byte of tensor data is missing
    err = _fails(["inspect", str(short)], capsys)
    assert err.startswith("error: ") and "truncated" in err


def test_non_gguf_missing_and_directory_exit_2(tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a model\n")
    assert "not a GGUF file" in _fails(["inspect", str(text)], capsys)
    assert "model file not found" in _fails(["inspect", str(tmp_path / "missing.gguf")], capsys)
    assert "not a file" in _fails(["inspect", str(tmp_path)], capsys)


def test_error_is_a_model_file_error_for_cli_runner(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path / "missing.gguf")])
    assert isinstance(result.exception, ModelFileError)
    assert result.exception.exit_code == 2
