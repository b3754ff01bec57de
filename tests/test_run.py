"""`llmtp run`: the stream parser on captured llama-server output, and the command against the real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmtp.adapters.ports import free_port
from llmtp.core.chat import StreamEvent, answer_stats, parse_sse_line

STREAM = Path(__file__).parent / "fixtures/llama/b11434-cpu/chat-stream.txt"


def test_parse_the_captured_stream():
    events = [e for e in map(parse_sse_line, STREAM.read_text(encoding="utf-8").splitlines()) if e is not None]
    assert events[-1] == StreamEvent(done=True)
    assert "".join(e.text for e in events) == ' !"#$%'  # the agree model counts up through the vocabulary
    [timings] = [e.timings for e in events if e.timings is not None]
    stats = answer_stats(timings)
    assert (stats.tokens, stats.drafted, stats.accepted, stats.mtp_acceptance) == (6, 3, 3, 1.0)
    assert stats.tokens_per_second > 0 and "MTP acceptance 100% (3/3 drafted)" in stats.line()


def test_parse_edge_cases():
    assert parse_sse_line("") is None and parse_sse_line(": keep-alive") is None
    with pytest.raises(ValueError, match="boom"):
        parse_sse_line('data: {"error": {"message": "boom"}}')
    with pytest.raises(ValueError):
        parse_sse_line("data: {not json")
    no_drafts = answer_stats({"predicted_n": 3, "predicted_per_second": 10.0})
    assert no_drafts.mtp_acceptance is None and no_drafts.line() == "3 tokens, 10.0 tok/s, no MTP drafts"
    assert answer_stats(None).line() == "tokens unknown, tok/s unknown, no MTP drafts"


def test_json_without_a_prompt_is_a_usage_error():
    r = subprocess.run(
        [sys.executable, "-m", "llmtp", "run", "x.gguf", "--json"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "--json needs a PROMPT" in r.stdout + r.stderr


@pytest.mark.llama
def test_run_starts_a_server_then_reuses_it(llama_bin_dir, tiny_models):
    port = free_port()
    env = dict(os.environ, LLMTP_PORT=str(port))
    base = [
        sys.executable,
        "-m",
        "llmtp",
        "run",
        str(tiny_models["agree"]),
        "--server",
        str(llama_bin_dir / "llama-server"),
        "--ctx",
        "512",
        "--max-tokens",
        "8",
    ]

    def llmtp_run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], env=env, capture_output=True, text=True, timeout=180, input=stdin)

    try:
        first = llmtp_run("a b c", "--json")
        assert first.returncode == 0, first.stderr
        assert f"starting one on port {port}" in first.stderr
        out = json.loads(first.stdout)
        assert out["started_server"] is True and out["port"] == port and out["answer"] == " !\"#$%&'"
        assert out["tokens"] == 8 and out["tokens_per_second"] > 0
        assert out["mtp_drafted"] > 0 and out["mtp_acceptance"] == 1.0  # the agree model: every draft accepted
        second = llmtp_run("a b c")
        assert second.returncode == 0, second.stderr
        assert f"using the llmtp server of {tiny_models['agree'].stem} on port {port}" in second.stderr
        assert second.stdout == " !\"#$%&'\n"  # streamed, then the stats on stderr
        assert "8 tokens" in second.stderr and "MTP acceptance 100%" in second.stderr
        chat = llmtp_run(stdin="hello\nand again\n\n")  # two turns, then an empty line ends
        assert chat.returncode == 0, chat.stderr
        assert chat.stderr.count("MTP acceptance") == 2 and chat.stdout.count("> ") == 3
    finally:
        subprocess.run([sys.executable, "-m", "llmtp", "stop", "--port", str(port)], env=env, timeout=60)


def test_run_pulls_a_missing_model_as_serve_does(monkeypatch):
    """`llmtp run ALIAS` for a model not on disk pulls it first (serve's plan_for_serve: ensure_model, then
    the launch plan again), then asks; --no-pull refuses instead."""
    from typer.testing import CliRunner

    from llmtp.cli.main import app
    from llmtp.errors import ModelNotDownloadedError, UsageError
    from llmtp.services.serve import launch

    calls: list = []

    class Planned(Exception):
        """The plan was resolved again after the pull: far enough for this test."""

    def resolve_launch(settings, request, deps=None):
        if not calls:
            raise ModelNotDownloadedError(f"{request.model} is not downloaded", "pull it")
        raise Planned(request.model)

    def ensure_model(settings, ref, *, allow, say, **kw):
        calls.append((ref, allow))
        if not allow:
            raise UsageError(f"{ref} is not downloaded and --no-pull was given", "drop --no-pull")

    monkeypatch.setattr(launch, "resolve_launch", resolve_launch)
    monkeypatch.setattr(launch, "ensure_model", ensure_model)  # both where serve looks them up
    r = CliRunner().invoke(app, ["run", "qwen3.6-27b", "hello"])
    assert isinstance(r.exception, Planned) and calls == [("qwen3.6-27b", True)]
    calls.clear()
    r = CliRunner().invoke(app, ["run", "qwen3.6-27b", "hello", "--no-pull"])
    assert isinstance(r.exception, UsageError) and calls == [("qwen3.6-27b", False)]
