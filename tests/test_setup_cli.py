"""`llmtp setup` on the command line, with the service's side effects replaced by the fakes."""

from __future__ import annotations

import json

import pytest
from test_setup_service import Fakes
from typer.testing import CliRunner

from llmtp.cli.main import app, run
from llmtp.services.setup import deps
from llmtp.services.setup import flow as svc


def test_json_then_human_second_run(tmp_path, monkeypatch):
    fakes = Fakes(tmp_path)
    monkeypatch.setattr(deps, "real_deps", lambda confirm=None: fakes.deps(confirm))
    runner = CliRunner()
    first = runner.invoke(app, ["setup", "--model", "qwen3.6-27b", "--no-serve", "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["changed"] is True
    assert [s["name"] for s in data["steps"]] == list(svc.STEPS)
    assert data["skipped"] == ["serve", "service"]
    assert "[1/6] detect the hardware" in first.stderr  # progress for people goes to stderr with --json

    second = runner.invoke(app, ["setup", "--model", "qwen3.6-27b", "--no-serve"])
    assert second.exit_code == 0, second.output
    assert second.stdout.rstrip().endswith("already set up: nothing changed")
    assert "  unchanged: reused the current build: b11434-cpu-aaaa (MTP upstream)" in second.stdout


def test_non_interactive_without_model_exits_2_with_the_fix(tmp_path, monkeypatch, capsys):
    fakes = Fakes(tmp_path)
    monkeypatch.setattr(deps, "real_deps", lambda confirm=None: fakes.deps(confirm))
    with pytest.raises(SystemExit) as exc:
        run(["setup", "--json"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: setup needs a model and cannot ask here (not a terminal). Pass --model ALIAS" in err


def test_unknown_source_is_refused():
    result = CliRunner().invoke(app, ["setup", "--source", "svn"])
    assert result.exit_code != 0
    assert "Unknown --source 'svn'" in str(result.exception)
