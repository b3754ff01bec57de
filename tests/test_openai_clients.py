"""OpenAI clients without guesswork: `serve --alias`, the base URL and key facts, and the README's
"Use it from your tools" commands run as written against a real served model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_serve_cli import _prepare
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app
from llmtp.core.launch import alias_problem, default_alias
from llmtp.errors import UsageError

README = Path(__file__).resolve().parent.parent / "README.md"


def test_default_alias_is_the_llmtp_alias_else_the_file_stem():
    assert default_alias("/models/Qwen3.6-27B-Q4_K_M.gguf", None) == "Qwen3.6-27B-Q4_K_M"
    assert default_alias("/models/x.gguf", "qwen3.6-27b") == "qwen3.6-27b"
    assert default_alias("/m/a,b.GGUF", None) == "a_b"  # llama-server would split at the comma


@pytest.mark.parametrize(
    "name, why", [("", "empty"), ("  ", "empty"), ("a,b", "comma"), ("a\nb", "control"), ("x" * 129, "longer than 128")]
)
def test_bad_alias_is_refused_with_the_reason(tiny_models, name, why):
    assert why in alias_problem(name)
    with pytest.raises(UsageError, match=why):
        _prepare(tiny_models["agree"], alias=name)


def test_serve_passes_the_alias(tiny_models):
    model = tiny_models["agree"]
    argv = _prepare(model).argv_list
    assert argv[argv.index("-a") + 1] == model.stem  # a path: the file stem
    argv = _prepare(model, alias="my-model").argv_list
    assert argv[argv.index("-a") + 1] == "my-model"


def test_alias_after_double_dash_names_the_llmtp_way(tiny_models):
    with pytest.raises(UsageError) as exc:
        _prepare(tiny_models["agree"], extra=("--alias", "x"))
    assert "serve MODEL --alias NAME" in exc.value.hint


def _llmtp(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmtp", *args]


@pytest.mark.llama
def test_openai_package_against_a_served_model(llama_bin_dir, tiny_models, tmp_path):
    openai = pytest.importorskip("openai")
    port = free_port()
    key_file = tmp_path / "key"
    key_file.write_text("sk-test-key\n")
    key_file.chmod(0o600)
    r = subprocess.run(
        _llmtp(
            "serve",
            str(tiny_models["agree"]),
            "--server",
            str(llama_bin_dir / "llama-server"),
            "--port",
            str(port),
            "--ctx",
            "512",
            "--alias",
            "tiny-agree",
            "--api-key-file",
            str(key_file),
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    runner = CliRunner()
    try:
        base = f"http://127.0.0.1:{port}/v1"
        assert (started["openai_base_url"], started["model_name"], started["api_key_required"]) == (
            base,
            "tiny-agree",
            True,
        )
        [entry] = json.loads(runner.invoke(app, ["status", "--json"]).stdout)
        assert (entry["openai_base_url"], entry["model_name"], entry["api_key_required"]) == (base, "tiny-agree", True)
        human = runner.invoke(app, ["status"]).stdout
        row = next(line for line in human.splitlines() if line.startswith(str(port)))
        assert row.split()[2] == "tiny-agree" and row.split()[-1] == base  # model name and base URL, once
        assert f"API key: one from {key_file}" in " ".join(human.split())

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base, api_key="wrong", max_retries=0).models.list()
        client = openai.OpenAI(base_url=base, api_key="sk-test-key", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == ["tiny-agree"]
        messages = [{"role": "user", "content": "a b c"}]
        done = client.chat.completions.create(model="tiny-agree", messages=messages, max_tokens=8, temperature=0)
        assert done.choices[0].message.content and done.usage.completion_tokens == 8
        pieces = [
            c.choices[0].delta.content or ""
            for c in client.chat.completions.create(
                model="tiny-agree", messages=messages, max_tokens=8, temperature=0, stream=True
            )
            if c.choices
        ]
        assert len([p for p in pieces if p]) > 1  # more than one chunk: it really streamed
        assert "".join(pieces) == done.choices[0].message.content  # greedy: the same answer either way
    finally:
        runner.invoke(app, ["stop", "--port", str(port)])


def _json_objects(text: str) -> list[dict]:
    decoder, out, i = json.JSONDecoder(), [], 0
    while i < len(text.rstrip()):
        obj, i = decoder.raw_decode(text, i)
        out.append(obj)
        while i < len(text) and text[i].isspace():
            i += 1
    return out


def _blocks(lang: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Use it from your tools")
    section = text[start : text.index("\n## ", start + 3)]
    return re.findall(rf"```{lang}\n(.*?)\n```", section, re.DOTALL)


def test_the_readme_section_names_base_url_key_and_clients():
    [shell], [python] = _blocks("bash"), _blocks("python")
    assert "http://127.0.0.1:8080/v1" in shell and 'base_url="http://127.0.0.1:8080/v1"' in python
    assert "stream=True" in python and "models.list()" in python
    text = README.read_text(encoding="utf-8")
    assert "Open WebUI" in text and "Continue" in text


@pytest.mark.llama
def test_readme_commands_run_as_written(llama_bin_dir, demo_models_dir):
    """The section's commands, verbatim but for the port (8080 may be taken on a shared machine), against
    the test bed's build and the demo model (fetched once per machine into demo_models_dir)."""
    pytest.importorskip("openai")
    from test_setup_e2e import install_testbed_build

    from llmtp.settings import load_settings

    install_testbed_build(load_settings().settings, llama_bin_dir)
    [shell], [python] = _blocks("bash"), _blocks("python")
    port = free_port()
    env = dict(
        os.environ,
        LLMTP_PORT=str(port),
        LLMTP_MODELS_DIR=str(demo_models_dir),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    try:
        sh = subprocess.run(
            ["bash", "-e", "-c", shell.replace(":8080", f":{port}")],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
        assert sh.returncode == 0, sh.stdout + sh.stderr
        assert 'OpenAI clients: model "smollm2-135m"; API key: none needed, but pass any non-empty key' in sh.stdout
        assert f"OpenAI base URL: http://127.0.0.1:{port}/v1" in sh.stdout
        models, chat = _json_objects(sh.stdout[sh.stdout.index("{") :])  # curl adds no newline between them
        assert [m["id"] for m in models["data"]] == ["smollm2-135m"]
        assert chat["choices"][0]["message"]["content"] and chat["usage"]["completion_tokens"] > 0
        py = subprocess.run(
            [sys.executable, "-c", python.replace(":8080", f":{port}")],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert py.returncode == 0, py.stderr
        first, answer = py.stdout.split("\n", 1)
        assert first == "['smollm2-135m']" and answer.strip()
    finally:
        subprocess.run(_llmtp("stop", "--port", str(port)), env=env, capture_output=True, timeout=60)
