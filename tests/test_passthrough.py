"""Pass-through flags after `--`: what llmtp owns or what changes exposure is refused (core/passthrough)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmtp.core.argv import build_server_argv
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec
from llmtp.core.passthrough import _ALWAYS, _PLAN_SET, flag_name, refused_passthrough
from llmtp.core.probe import parse_help
from llmtp.errors import UsageError

HELP = Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt"


def _help_groups() -> list[list[str]]:
    """Spelling groups of every option line of the b11434 --help, e.g. ['-c', '--ctx-size']."""
    groups = []
    for line in HELP.read_text(encoding="utf-8").splitlines():
        if not line.startswith("-"):
            continue
        # `-c,    --ctx-size N`: spaces after a comma align columns, they do not end the head
        head = re.split(r"\s{2,}", re.sub(r",\s+(?=-)", ", ", line.strip()), maxsplit=1)[0]
        names = [t.rstrip(",") for t in head.split() if t.rstrip(",").startswith("-")]
        groups.append([n for n in names if re.fullmatch(r"-{1,2}[A-Za-z][\w-]*", n)])
    return groups


@pytest.mark.parametrize(
    "extra, flag, instead",
    [
        (["--host", "0.0.0.0"], "--host", "--host ADDR"),
        (["--host=0.0.0.0"], "--host", "--host ADDR"),
        (["--port", "9"], "--port", "--port N"),
        (["--port=9"], "--port", "--port N"),
        (["--path", "/"], "--path", "does not serve files"),
        (["--api-key", "SECRET"], "--api-key", "--api-key-file FILE"),
        (["--api_key", "SECRET"], "--api-key", "--api-key-file FILE"),  # llama.cpp reads `_` as `-`
        (["--api-key-file", "/k"], "--api-key-file", "--api-key-file FILE"),
        (["--ssl-key-file", "k.pem"], "--ssl-key-file", "reverse proxy"),
        (["--ssl-cert-file", "c.pem"], "--ssl-cert-file", "reverse proxy"),
        (["--webui-config", "{}"], "--webui-config", "web UI"),
        (["--no-webui"], "--no-webui", "llmtp serve --no-ui"),
        (["--ui"], "--ui", "llmtp serve --no-ui"),
        (["--tools", "all"], "--tools", "does not expose tools"),
        (["-m", "/x.gguf"], "-m", "MODEL argument"),
        (["--model", "/x.gguf"], "--model", "MODEL argument"),
        (["-hf", "org/repo"], "-hf", "MODEL argument"),
        (["-c", "4096"], "-c", "--ctx N"),
        (["--ctx-size", "4096"], "--ctx-size", "--ctx N"),
        (["--ctx_size", "4096"], "--ctx-size", "--ctx N"),
        (["-ngl", "99"], "-ngl", "llmtp plan MODEL"),
        (["--n-gpu-layers", "99"], "--n-gpu-layers", "llmtp plan MODEL"),
        (["-np", "4"], "-np", "--parallel N"),
        (["--log-file", "/tmp/x"], "--log-file", "llmtp logs"),
        (["--metrics"], "--metrics", "turns --metrics on itself"),
        (["-a", "mymodel"], "-a", "serve MODEL --alias NAME"),  # llmtp sets --alias itself now
        (["--alias", "x"], "--alias", "serve MODEL --alias NAME"),
        (["--jinja", "--host", "::"], "--host", "--host ADDR"),  # found after an allowed flag
    ],
)
def test_refused(extra, flag, instead):
    r = refused_passthrough(extra)
    assert r is not None and r.flag == flag
    assert instead in r.hint and r.arg in r.message


@pytest.mark.parametrize(
    "extra",
    [
        [],
        ["--jinja"],
        ["--temp", "0.6"],
        ["--temp=0.6"],
        ["-lv", "3"],
        ["-ctk", "q8_0"],
        ["--threads", "4"],
        ["--cors-origins", "localhost"],
        ["--chat-template-file", "/t.jinja"],
    ],
)
def test_allowed(extra):
    assert refused_passthrough(extra) is None


@pytest.mark.parametrize(
    "ours, extra",
    [
        (["-ctk", "q8_0"], ["--cache-type-k", "f16"]),
        (["--threads", "4"], ["-t", "8"]),
        (["-fa", "on"], ["--flash_attn", "off"]),
        (["--fit", "off"], ["-fit", "on"]),
    ],
)
def test_plan_set_flags_refused_only_when_llmtp_sets_them(ours, extra):
    assert refused_passthrough(extra) is None
    r = refused_passthrough(extra, ["/bin/llama-server", "-m", "/m.gguf", *ours])
    assert r is not None and "already sets" in r.message and "llmtp plan MODEL" in r.hint


def test_flag_name():
    assert flag_name("--api_key=x") == "--api-key"
    assert flag_name("-ctk") == "-ctk" and flag_name("-no_x") == "-no_x"  # `_` mapped only after `--`


def test_every_refused_spelling_exists_in_b11434_and_no_alias_is_missed():
    groups = _help_groups()
    flags, _ = parse_help(HELP.read_text(encoding="utf-8"))
    table = [s for names, _, _ in _ALWAYS for s in names] + [s for g in _PLAN_SET for s in g]
    assert [s for s in table if s not in flags] == []
    for group in groups:  # one spelling refused: every alias of it is refused the same way
        hit = [s for s in group if s in table]
        if hit:
            assert set(group) <= set(table), group


def test_serve_argv_refuses_a_plan_set_flag_given_again():
    flags, enums = parse_help(HELP.read_text(encoding="utf-8"))
    caps = Capabilities(flags=flags, enums=enums)
    spec = LaunchSpec(model="/m/q.gguf", port=8081, cache_type_k="q8_0", extra_args=["--cache-type-k", "f16"])
    with pytest.raises(UsageError, match="already sets -ctk / --cache-type-k"):
        build_server_argv("s", caps, spec)
    spec = LaunchSpec(model="/m/q.gguf", port=8081, extra_args=["--cache-type-k", "f16"])
    assert build_server_argv("s", caps, spec)[-2:] == ["--cache-type-k", "f16"]


def _llmtp(llmtp_home, *args):
    import os
    import subprocess
    import sys

    env = {**os.environ, "LLMTP_HOME": str(llmtp_home)}
    return subprocess.run([sys.executable, "-m", "llmtp", *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    "extra, instead",
    [
        (["--host", "0.0.0.0"], "--host ADDR"),
        (["--host=0.0.0.0"], "--host ADDR"),
        (["--path", "/"], "serve files"),
        (["--api-key", "SECRET"], "--api-key-file FILE"),
        (["--port", "1"], "--port N"),
    ],
)
def test_serve_refuses_before_planning(llmtp_home, tmp_path, extra, instead):
    # no build, no model: the refusal comes first, as a usage error (exit 2), not a traceback
    r = _llmtp(llmtp_home, "serve", str(tmp_path / "none.gguf"), "--dry-run", "--", *extra)
    assert r.returncode == 2, r.stderr
    assert "Refusing the pass-through flag" in r.stderr and instead in r.stderr
    assert "Traceback" not in r.stderr and "SECRET" not in r.stdout


@pytest.mark.llama
def test_the_table_matches_the_real_test_bed_binary(llama_bin_dir):
    """The captured --help is what the pinned binary prints: the refused spellings exist there too."""
    import subprocess

    out = subprocess.run([str(llama_bin_dir / "llama-server"), "--help"], capture_output=True, text=True, timeout=60)
    flags, _ = parse_help(out.stdout + out.stderr)
    table = [s for names, _, _ in _ALWAYS for s in names] + [s for g in _PLAN_SET for s in g]
    assert [s for s in table if s not in flags] == []
