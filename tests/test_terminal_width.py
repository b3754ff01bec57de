"""What a user types back (alias, port, pid, URL, path, build id) is never cut in a terminal of 80 or 100
columns: status, models list (catalog and --local), config show, plan (reasons, --compare), builds list.
Each is rendered by the command's own code into a rich Console of that width."""

from __future__ import annotations

import re

import pytest
from rich.console import Console
from typer.testing import CliRunner

import llmtp.cli._out as out
from llmtp.cli.main import app

WIDTHS = (80, 100)


def _render(renderable, width: int) -> str:
    con = Console(width=width, record=True, file=open("/dev/null", "w"), highlight=False, soft_wrap=True)
    con.print(renderable)
    return con.export_text()


def _lines_fit(text: str, width: int) -> None:
    assert all(len(line) <= width for line in text.splitlines()), text


def _whole(text: str, *words: str) -> None:
    """Each word appears on one line, as a token of its own (not cut with an ellipsis nor folded)."""
    tokens = set(re.split(r"[\s,;()]+", text))
    for w in words:
        assert w in tokens, f"{w!r} not whole in:\n{text}"
    assert "…" not in text


@pytest.fixture
def console_of_width(monkeypatch):
    """The CLI's console() with a fixed width, as a terminal of that size gives it."""
    consoles = []

    def make(width):
        def console(stderr=False, markup=True):
            con = Console(
                width=width, record=True, markup=markup, highlight=False, soft_wrap=True, file=open("/dev/null", "w")
            )
            consoles.append(con)
            return con

        monkeypatch.setattr(out, "console", console)
        return consoles

    return make


def _status_entries() -> list[dict]:
    base = {
        "kind": "server",
        "llmtp_pid": 3216547,
        "server_pid": 3216602,
        "uptime_s": 16.0,
        "restarts": 0,
        "build": "b11434-cpu-9bea9361",
        "rpc": [],
        "rss_bytes": 300 << 20,
        "vram_bytes": None,
        "api_key_required": False,
        "api_key_file": None,
        "ui_url": "http://127.0.0.1:18080/",
        "mtp_live": {"state": "unknown", "detail": "too few", "fix": None},
    }
    return [
        {
            **base,
            "port": 18080,
            "state": "ready",
            "model": "/m/Qwen3.6-35B-A3B-MTP-Q4_K_M.gguf",
            "model_name": "qwen3.6-35b-a3b",
            "tokens_per_second": 21 / 0.346,
            "mtp": "100%",
            "openai_base_url": "http://127.0.0.1:18080/v1",
            "base_url": "http://127.0.0.1:18080",
            "last_request": {"tokens": 12, "tokens_per_second": 44.3, "mtp_acceptance": None},
        },
        {
            **base,
            "port": 18081,
            "state": "restarting",
            "model": "/m/SmolLM2-135M-Instruct.Q4_1.gguf",
            "model_name": "smollm2-135m",
            "tokens_per_second": None,
            "mtp": "off",
            "llmtp_pid": 3216999,
            "openai_base_url": "http://192.168.100.200:18081/v1",
            "base_url": "http://192.168.100.200:18081",
            "last_request": None,
            "api_key_required": True,
            "api_key_file": "/etc/llmtp/key",
        },
        {
            **base,
            "port": 18082,
            "state": "failed",
            "model": "/m/gone.gguf",
            "model_name": "gemma-4-31b",
            "llmtp_pid": None,
            "server_pid": None,
            "uptime_s": None,
            "tokens_per_second": None,
            "mtp": "-",
            "openai_base_url": None,
            "base_url": "http://127.0.0.1:18082",
            "last_request": None,
            "reason": "llama-server keeps failing (3 crashes in 60 s); last failure: exited with code 1",
            "details": ["gguf_init_from_file: failed to open GGUF file '/m/gone.gguf'"],
        },
    ]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("wide", [False, True])
def test_status_keeps_ports_models_urls_and_pids_whole(width, wide):
    from llmtp.cli.status import render_status

    con = Console(width=width, record=True, markup=False, highlight=False, soft_wrap=True, file=open("/dev/null", "w"))
    render_status(con, _status_entries(), wide=wide)
    text = con.export_text()
    _lines_fit(text, width)
    _whole(
        text,
        "18080",
        "18081",
        "18082",
        "qwen3.6-35b-a3b",
        "smollm2-135m",
        "gemma-4-31b",
        "http://127.0.0.1:18080/v1",
        "http://192.168.100.200:18081/v1",
    )
    if wide:
        _whole(text, "3216547", "3216602", "3216999")
    assert text.count("http://127.0.0.1:18080/v1") == 1  # the URL once, in its row
    assert "pass any non-empty key" in " ".join(text.split()) and "off" in text.split()
    assert "failed" in text.split() and "exited with code 1" in text


@pytest.mark.parametrize("width", WIDTHS)
def test_status_default_is_one_row_per_server_at_80_columns(width):
    from llmtp.cli.status import render_status

    con = Console(width=width, record=True, markup=False, highlight=False, soft_wrap=True, file=open("/dev/null", "w"))
    render_status(con, _status_entries()[:2])
    rows = [line for line in con.export_text().splitlines() if re.match(r"\s*1808\d ", line)]
    assert len(rows) == 2  # a table, not the block layout, and no row wrapped onto a second port line


@pytest.mark.parametrize("width", WIDTHS)
def test_models_list_keeps_every_alias_whole(width, console_of_width):
    from llmtp.services.models.catalog import load_catalog

    cons = console_of_width(width)
    r = CliRunner().invoke(app, ["models", "list"])
    assert r.exit_code == 0, r.output
    text = cons[-1].export_text()
    _lines_fit(text, width)
    _whole(text, *load_catalog().models)


@pytest.mark.parametrize("width", WIDTHS)
def test_local_models_keep_alias_and_path_whole(width):
    from llmtp.cli.models import local_table
    from llmtp.services.models.local import LocalModel

    path = (
        "/root/.cache/huggingface/hub/models--unsloth--Qwen3.6-35B-A3B-MTP-GGUF/snapshots/"
        "0123456789abcdef0123456789abcdef01234567/Qwen3.6-35B-A3B-MTP-UD-Q4_K_M.gguf"
    )
    rows = [
        LocalModel(
            alias="qwen3.6-35b-a3b",
            repo="unsloth/Qwen3.6-35B-A3B-MTP-GGUF",
            quant="Q4_K_M",
            size_bytes=20 << 30,
            path=path,
            mtp_heads=1,
        ),
        LocalModel(alias=None, repo=None, quant="Q8_0", size_bytes=1 << 30, path="/srv/models/mine.gguf", mtp_heads=0),
    ]
    text = _render(local_table(rows), width)
    _whole(text, "qwen3.6-35b-a3b", path, "/srv/models/mine.gguf")


@pytest.mark.parametrize("width", WIDTHS)
def test_config_show_keeps_names_and_paths_whole(width, console_of_width, llmtp_home):
    from llmtp.settings import load_settings

    cons = console_of_width(width)
    r = CliRunner().invoke(app, ["config", "show"])
    assert r.exit_code == 0, r.output
    text = "".join(c.export_text() for c in cons)
    s = load_settings().settings
    _whole(text, *list(s.model_dump()), str(s.data_dir), str(s.state_dir), str(s.config_file))


@pytest.mark.parametrize("width", WIDTHS)
def test_builds_list_keeps_ids_and_times_whole(width):
    from llmtp.cli.build import builds_table

    rows = [
        {
            "id": f"b11434-{p}-9bea9361",
            "current": p == "cpu",
            "status": "ok",
            "failure": None,
            "profile": p,
            "source": "pypi",
            "ref": "11434",
            "mtp": "upstream",
            "rpc": False,
            "ui": "prebuilt",
            "finished_at": "2026-12-07T08:50:36",
        }
        for p in ("cpu", "vulkan", "cuda-sm89")
    ]
    rows.append({"id": "b11401-cuda-00000000", "current": False, "status": "broken", "failure": "bin/ is missing"})
    text = _render(builds_table(rows), width)
    _lines_fit(text, width)
    _whole(text, "*b11434-cpu-9bea9361", "b11434-vulkan-9bea9361", "b11401-cuda-00000000")
    assert text.count("2026-12-07 08:50:36") == 3  # never wrapped inside the timestamp


@pytest.mark.parametrize("width", WIDTHS)
def test_plan_reasons_wrap_at_words_and_compare_fits_100(width, console_of_width):
    cons = console_of_width(width)
    r = CliRunner().invoke(app, ["plan", "qwen3.6-27b", "--ram-bw", "20"])
    assert r.exit_code == 0, r.output
    text = "".join(c.export_text() for c in cons)
    _lines_fit(text, width)
    words = set(re.split(r"\s+", " ".join(r.output.split())))
    for line in text.splitlines():  # every word of a wrapped line is a word of the unwrapped text
        assert set(line.split()) <= words | set(text.split()), line
    assert "quanti" not in text.split() and "VRAM" not in text and "GPU" not in text
    if width == 100:
        cons.clear()
        r = CliRunner().invoke(app, ["plan", "qwen3.6-27b", "--compare", "--ram-bw", "20"])
        assert r.exit_code == 0, r.output
        text = "".join(c.export_text() for c in cons)
        _lines_fit(text, 100)
        assert "?" not in text.split()  # stated RAM bandwidth: every CPU candidate has a speed
        _whole(text, "IQ3_XXS", "*Q5_K_M", "Q8_0", "BF16")


def test_wrap_breaks_at_words_and_keeps_long_words():
    url = "http://127.0.0.1:8080/v1/a-very-long-path-that-is-longer-than-the-line-itself-and-more"
    lines = out.wrap("reasons break mid-word quantized to keep it " + url + " end", 30, indent=4)
    assert "    " + url in lines and all(line.startswith("    ") for line in lines[1:])
    assert "quantized" in " ".join(lines).split()
