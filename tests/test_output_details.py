"""Output details: data is never read as rich markup, tables are not cut in pipes, every command that
changes something has --json, errors under --json are JSON, and shell completion is on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import typer
from typer.testing import CliRunner

from llmtp.cli.main import app


def _llmtp(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    # the installed script, as users run it: completion and `--help` hints use its name
    return subprocess.run(
        [str(Path(sys.executable).parent / "llmtp"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def test_models_show_prints_brackets_in_data_as_written(monkeypatch):
    from llmtp.services.models import catalog as model_catalog

    real = model_catalog.lookup

    def lookup(catalog, alias):
        entry = real(catalog, alias)
        return entry.model_copy(update={"description": "Q4 [default] and [bold]not bold[/bold] [/]"})

    monkeypatch.setattr(model_catalog, "lookup", lookup)
    r = CliRunner().invoke(app, ["models", "show", "smollm2-135m"])
    assert r.exit_code == 0, r.output
    assert "Q4 [default] and [bold]not bold[/bold] [/]" in r.stdout
    assert "  (default)" in r.stdout  # the default quant's own mark stays


def test_tables_are_not_cut_in_a_pipe():
    rows = json.loads(_llmtp("models", "list", "--json").stdout)
    out = _llmtp("models", "list").stdout  # stdout is a pipe here
    for r in rows:
        assert r["alias"] in out and r["name"] in out
    assert "…" not in out


# Commands that change something on disk, in a service or in a process: each must speak --json.
CHANGING = [
    "build",
    "builds use",
    "builds adopt",
    "builds rollback",
    "builds prune",
    "models pull",
    "serve",
    "stop",
    "run",
    "service install",
    "service uninstall",
    "service restart",
    "service stop",
    "setup",
    "tune",
    "upgrade",
    "verify",
]


def _command(path: str) -> click.Command:
    cmd = typer.main.get_command(app)
    for word in path.split():
        cmd = cmd.commands[word]
    return cmd


@pytest.mark.parametrize("path", CHANGING)
def test_every_changing_command_has_json(path):
    assert "--json" in [o for p in _command(path).params for o in getattr(p, "opts", [])]


def test_errors_under_json_are_json():
    r = _llmtp("plan", "no-such-model-anywhere", "--json")
    assert r.returncode == 2
    err = json.loads(r.stdout)
    assert set(err) == {"error", "hint", "exit_code", "details"} and err["exit_code"] == 2
    assert "no-such-model-anywhere" in err["error"] and "llmtp models list" in err["hint"]
    assert r.stderr.startswith("error: ")  # people still read the paragraph
    usage = _llmtp("status", "--json", "--bogus")
    assert usage.returncode == 2
    assert json.loads(usage.stdout) == {
        "error": "No such option: --bogus",
        "hint": "See `llmtp status --help`.",
        "exit_code": 2,
        "details": [],
    }
    plain = _llmtp("plan", "no-such-model-anywhere")  # without --json: no JSON on stdout
    assert plain.returncode == 2 and plain.stdout == ""


def test_json_after_double_dash_is_llama_servers():
    r = _llmtp("serve", "no-such-model-anywhere", "--", "--json")
    assert r.returncode != 0 and r.stdout == "" and r.stderr.startswith("error: ")


def test_shell_completion_is_on():
    assert "--install-completion" in _llmtp("--help").stdout
    env = dict(os.environ, _LLMTP_COMPLETE="complete_bash", COMP_WORDS="llmtp ser", COMP_CWORD="1")
    r = _llmtp(env=env)
    assert r.returncode == 0 and r.stdout.split() == ["serve", "service"]
