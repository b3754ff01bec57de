"""argv for llama-server, built for the dialect of the captured b11434 --help (and hand-made old ones)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from llmtp.core.argv import build_server_argv
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.probe import parse_help
from llmtp.errors import ServeError, UsageError

HELP = Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt"


def _caps_from_help(text: str) -> Capabilities:
    flags, enums = parse_help(text)
    return Capabilities(flags=flags, enums=enums)


@pytest.fixture(scope="module")
def caps() -> Capabilities:
    return _caps_from_help(HELP.read_text(encoding="utf-8"))


def _spec(**kw) -> LaunchSpec:
    return LaunchSpec(model="/m/q.gguf", port=8081, **kw)


def test_fixture_caps_look_like_b11434(caps):
    assert caps.mtp_dialect == "upstream"
    assert caps.enums["-fa"] == ["on", "off", "auto"]


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({}, "/bin/llama-server -m /m/q.gguf --host 127.0.0.1 --port 8081 --metrics"),
        ({"metrics": False}, "/bin/llama-server -m /m/q.gguf --host 127.0.0.1 --port 8081"),
        (
            {
                "n_gpu_layers": 99,
                "ctx_size": 16384,
                "cache_type_k": "q8_0",
                "cache_type_v": "q8_0",
                "flash_attn": "on",
                "metrics": False,
            },
            "/bin/llama-server -m /m/q.gguf --host 127.0.0.1 --port 8081 -ngl 99 -c 16384 -ctk q8_0 -ctv q8_0 -fa on",
        ),
        (
            {"n_gpu_layers": "auto", "metrics": False},
            "/bin/llama-server -m /m/q.gguf --host 127.0.0.1 --port 8081 -ngl auto",
        ),
        (
            {"n_cpu_moe": 12, "parallel": 1, "threads": 8, "fit": "off", "metrics": False},
            "/bin/llama-server -m /m/q.gguf --host 127.0.0.1 --port 8081 --n-cpu-moe 12 -np 1 -t 8 --fit off",
        ),
        (
            {"mtp": MtpSettings(enabled=True, n_max=2), "parallel": 1},
            "/bin/llama-server -m /m/q.gguf --host 127.0.0.1 --port 8081 -np 1 --spec-type draft-mtp "
            "--spec-draft-n-max 2 --metrics",
        ),
        (
            {
                "mtp": MtpSettings(
                    enabled=True,
                    n_max=3,
                    n_min=1,
                    p_min=0.5,
                    extra_types=["ngram-mod"],
                    draft_model="/m/mtp-g.gguf",
                    draft_ngl=99,
                ),
                "metrics": False,
            },
            "/bin/llama-server -m /m/q.gguf --host 127.0.0.1 --port 8081 --spec-type draft-mtp,ngram-mod "
            "--spec-draft-n-max 3 --spec-draft-n-min 1 --spec-draft-p-min 0.5 -md /m/mtp-g.gguf --spec-draft-ngl 99",
        ),
        # a quantized cache: the draft context's KV gets the same types (it defaults to f16)
        (
            {
                "mtp": MtpSettings(enabled=True, n_max=3),
                "cache_type_k": "q4_0",
                "cache_type_v": "q8_0",
                "metrics": False,
            },
            "/bin/llama-server -m /m/q.gguf --host 127.0.0.1 --port 8081 -ctk q4_0 -ctv q8_0 --spec-type draft-mtp "
            "--spec-draft-n-max 3 -ctkd q4_0 -ctvd q8_0",
        ),
        (
            {
                "host": "0.0.0.0",
                "api_key_file": "/etc/llmtp/key",
                "log_file": "/s/l.log",
                "seed": 7,
                "metrics": False,
                "extra_args": ["--jinja", "--temp=0.6"],
            },
            "/bin/llama-server -m /m/q.gguf --host 0.0.0.0 --port 8081 --api-key-file /etc/llmtp/key "
            "--log-file /s/l.log -s 7 --jinja --temp=0.6",
        ),
    ],
)
def test_upstream_dialect(caps, kw, expected):
    assert shlex.join(build_server_argv("/bin/llama-server", caps, _spec(**kw))) == expected


def test_branch_dialect():
    caps = Capabilities(flags=["-m", "--host", "--port", "--mtp", "--mtp-draft-tokens"])
    argv = build_server_argv("s", caps, _spec(metrics=False, mtp=MtpSettings(enabled=True, n_max=4)))
    assert argv == [
        "s",
        "-m",
        "/m/q.gguf",
        "--host",
        "127.0.0.1",
        "--port",
        "8081",
        "--mtp",
        "1",
        "--mtp-draft-tokens",
        "4",
    ]


def test_branch_dialect_refuses_a_sidecar():
    caps = Capabilities(flags=["-m", "--host", "--port", "--mtp", "--mtp-draft-tokens"])
    with pytest.raises(ServeError, match="no MTP sidecar"):
        build_server_argv("s", caps, _spec(mtp=MtpSettings(enabled=True, draft_model="/x.gguf")))


def test_mtp_on_a_binary_without_it():
    caps = Capabilities(
        flags=["-m", "--host", "--port", "--spec-type"], enums={"--spec-type": ["none", "draft-simple"]}
    )
    with pytest.raises(ServeError, match="neither `--spec-type draft-mtp` nor `--mtp`"):
        build_server_argv("s", caps, _spec(mtp=MtpSettings(enabled=True)))


def test_unknown_stacked_type(caps):
    with pytest.raises(ServeError, match="speculative type\\(s\\) ngram-bogus"):
        build_server_argv("s", caps, _spec(mtp=MtpSettings(enabled=True, extra_types=["ngram-bogus"])))


def test_old_boolean_flash_attn():
    caps = Capabilities(flags=["-m", "--host", "--port", "-fa", "--flash-attn"])
    assert build_server_argv("s", caps, _spec(metrics=False, flash_attn="on"))[-1] == "-fa"
    assert "-fa" not in build_server_argv("s", caps, _spec(metrics=False, flash_attn="off"))


def test_metrics_left_out_when_unknown():
    caps = Capabilities(flags=["-m", "--host", "--port"])
    assert build_server_argv("s", caps, _spec()) == ["s", "-m", "/m/q.gguf", "--host", "127.0.0.1", "--port", "8081"]


def test_missing_flag_for_a_requested_feature():
    caps = Capabilities(flags=["-m", "--host", "--port"])
    with pytest.raises(ServeError, match="does not accept --n-cpu-moe / -ncmoe"):
        build_server_argv("s", caps, _spec(n_cpu_moe=4))


def test_dense_ffn_on_the_cpu_in_each_dialect(caps):
    # b11434 lists `-ncffn, --n-cpu-ffn N`; -ngl all keeps the output head and the MTP layer on the GPU
    argv = build_server_argv("s", caps, _spec(n_gpu_layers=66, n_cpu_ffn=9, metrics=False))
    assert argv == ["s", "-m", "/m/q.gguf", "--host", "127.0.0.1", "--port", "8081", "-ngl", "66", "--n-cpu-ffn", "9"]
    # a binary with -ot but no --n-cpu-ffn gets the same tensors by name (one pattern, one argv item)
    older = Capabilities(flags=["-m", "--host", "--port", "-ngl", "-ot", "--override-tensor"])
    argv = build_server_argv("s", older, _spec(n_gpu_layers=66, n_cpu_ffn=3, metrics=False))
    assert argv[-4:] == ["-ngl", "66", "-ot", r"blk\.(0|1|2)\.ffn_(up|down|gate)\.=CPU"]
    import re

    pattern = re.compile(argv[-1].split("=")[0])
    assert [
        n
        for n in (
            "blk.0.ffn_up.weight",
            "blk.2.ffn_down.weight",
            "blk.12.ffn_gate.weight",
            "blk.1.attn_q.weight",
            "blk.1.ffn_up_exps.weight",
            "blk.20.ffn_up.weight",
        )
        if pattern.search(n)
    ] == ["blk.0.ffn_up.weight", "blk.2.ffn_down.weight"]
    with pytest.raises(ServeError, match="does not accept -ot / --override-tensor \\(needed for dense FFN weights"):
        build_server_argv("s", Capabilities(flags=["-m", "--host", "--port"]), _spec(n_cpu_ffn=2))
    # zero or unset: nothing to move
    assert "--n-cpu-ffn" not in build_server_argv("s", caps, _spec(n_cpu_ffn=0))


@pytest.mark.parametrize(
    "extra",
    [
        ["-md", "x.gguf"],
        ["--model-draft=x.gguf"],
        ["--spec-type", "ngram-mod"],
        ["--draft-max", "4"],
        ["--spec-draft-n-max", "5"],
        ["--mtp", "1"],
    ],
)
def test_pass_through_conflicting_with_mtp_is_refused(caps, extra):
    name = extra[0].split("=")[0]
    with pytest.raises(UsageError, match=f"pass-through flag {name} conflicts with MTP"):
        build_server_argv("s", caps, _spec(mtp=MtpSettings(enabled=True), extra_args=extra))


def test_pass_through_spec_flags_allowed_without_mtp(caps):
    argv = build_server_argv("s", caps, _spec(metrics=False, extra_args=["--spec-type", "ngram-mod"]))
    assert argv[-2:] == ["--spec-type", "ngram-mod"]


def test_api_key_on_argv_is_refused(caps):
    with pytest.raises(UsageError, match="--api-key after `--`: it sets an API key on the command line"):
        build_server_argv("s", caps, _spec(extra_args=["--api-key", "secret"]))
