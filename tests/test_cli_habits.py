"""Habits people bring from ollama and docker, and --help that reads whole: `ps`, `list`, `pull`, `rm` work
as aliases; `stop MODEL`; the client hint asks for a non-empty key; `setup` is first in --help and no
command's help line is cut."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from llmtp.cli.main import app
from llmtp.core.status_view import api_key_hint, drafts_enabled, instance_figures, mtp_words


def _help() -> str:
    env = dict(os.environ, COLUMNS="80")
    r = subprocess.run([sys.executable, "-m", "llmtp", "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0
    return r.stdout


def test_setup_is_first_and_help_lines_are_whole():
    text = _help()
    commands = text.split("Commands:", 1)[1]
    assert commands.split()[0] == "setup"
    assert "..." not in commands
    assert all(len(line) <= 80 for line in text.splitlines())
    # every visible command's whole first sentence appears (joined over its wrapped lines), not cut with ...
    import typer

    group = typer.main.get_command(app)
    joined = " ".join(commands.split())
    for name in group.list_commands(None):
        cmd = group.get_command(None, name)
        if cmd.hidden:
            continue
        whole = " ".join(cmd.get_short_help_str(limit=10_000).split())
        assert not whole.endswith("...") and whole.replace("- ", "-") in joined.replace("- ", "-"), name


def test_aliases_do_what_the_long_commands_do():
    runner = CliRunner()
    assert runner.invoke(app, ["list", "--json"]).stdout == runner.invoke(app, ["models", "list", "--json"]).stdout
    assert runner.invoke(app, ["ps", "--json"]).stdout == runner.invoke(app, ["status", "--json"]).stdout
    for alias in ("pull", "rm"):
        r = runner.invoke(app, [alias, "--help"])
        assert r.exit_code == 0 and f"Same as `llmtp models {alias}`" in r.stdout
    assert "ps" not in _help().split("Commands:", 1)[1].split()  # hidden: --help stays short


def test_client_hint_asks_for_a_non_empty_key():
    assert "pass any non-empty key" in api_key_hint(False)
    assert "/etc/llmtp/key" in api_key_hint(True, "/etc/llmtp/key")


def test_mtp_words_and_counters():
    assert mtp_words(False, None) == "off" and mtp_words(True, None) == "no drafts yet"
    assert mtp_words(True, 0.874) == "87%" and mtp_words(None, None) == "unknown"
    assert drafts_enabled(["llama-server", "--spec-type", "draft-mtp", "--spec-draft-n-max", "3"]) is True
    assert drafts_enabled(["llama-server", "-m", "x.gguf"]) is False and drafts_enabled([]) is None
    f = instance_figures(
        {
            "llamacpp:tokens_predicted_total": 21,
            "llamacpp:tokens_predicted_seconds_total": 0.346,
            "llamacpp:predicted_tokens_seconds": 0.0,
        }
    )  # the per-scrape gauge is ignored
    assert round(f.tokens_per_second, 1) == 60.7 and f.mtp_acceptance is None
    assert instance_figures({}).tokens_per_second is None
