"""Several models on one port, pure and fast: the preset written from each model's argv, the refusals, how many
fit together, the CLI's split of `serve A B -- flags`, and the router's log read as one model at a time (a real
log of `llmtp serve A B` on the test bed, tests/fixtures/server-logs/router-b11434-two-tiny.log)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.cli._serve_options import split_models
from llmtp.cli.main import app
from llmtp.core.logview import view
from llmtp.core.plan_types import MemoryBreakdown
from llmtp.core.router import RouterModel, check_names, models_that_fit, preset_ini, preset_keys, router_argv
from llmtp.errors import UsageError

FIXTURES = Path(__file__).parent / "fixtures" / "server-logs"
ARGV = [
    "/b/llama-server",
    "-m",
    "/m/agree.gguf",
    "-a",
    "agree",
    "--host",
    "127.0.0.1",
    "--port",
    "8080",
    "-c",
    "4096",
    "-ctk",
    "f16",
    "-ctv",
    "f16",
    "-fa",
    "on",
    "-np",
    "1",
    "--spec-type",
    "draft-mtp",
    "--spec-draft-n-max",
    "3",
    "--metrics",
    "-lv",
    "4",
    "--seed",
    "-1",
    "--no-webui",
]  # noqa: SIM905 - one command line, as a person reads it


def test_preset_keys_are_the_argv_without_what_the_router_owns():
    keys = preset_keys("agree", ARGV)
    assert keys == [
        ("m", "/m/agree.gguf"),
        ("c", "4096"),
        ("ctk", "f16"),
        ("ctv", "f16"),
        ("fa", "on"),
        ("np", "1"),
        ("spec-type", "draft-mtp"),
        ("spec-draft-n-max", "3"),
        ("metrics", "true"),
        ("lv", "4"),
        ("seed", "-1"),  # a negative number is a value, not a flag
    ]


@pytest.mark.parametrize(
    "argv, match",
    [
        (["/b/llama-server", "-m", "/m/a;b.gguf"], "cannot be written"),
        (["/b/llama-server", "-m", "/m/a#b.gguf"], "cannot be written"),
        (["/b/llama-server", "-ot", "a=CPU", "-ot", "b=CPU"], "given twice"),
        (["/b/llama-server", "stray"], "follows no flag"),
    ],
)
def test_what_a_preset_cannot_carry_is_refused(argv, match):
    with pytest.raises(UsageError, match=match):
        preset_keys("x", argv)


def test_names_must_be_unique_and_fit_a_section_header():
    check_names(["agree", "qwen3.6-27b", "org/repo:Q4_K_M"])
    with pytest.raises(UsageError, match="named twice"):
        check_names(["agree", "plain", "agree"])
    for bad in ("a]b", "a b", "", ";x"):
        with pytest.raises(UsageError, match="cannot name a router preset section"):
            check_names([bad])


def test_preset_ini_has_a_section_per_model_and_shared_keys():
    text = preset_ini(
        [RouterModel("agree", tuple(ARGV)), RouterModel("plain", ("/b/llama-server", "-m", "/m/plain.gguf"))],
        [("sleep-idle-seconds", "600")],
    )
    lines = text.splitlines()
    assert "version = 1" in lines and lines.index("[*]") < lines.index("[agree]") < lines.index("[plain]")
    assert "sleep-idle-seconds = 600" in lines and "m = /m/plain.gguf" in lines
    assert not any(line.startswith(("host", "port", "a =", "no-webui")) for line in lines)


def test_router_argv_carries_only_what_the_router_owns():
    argv = router_argv("/b/llama-server", "/s/router-8080.ini", models_max=2, host="0.0.0.0", port=8080,
                       api_key_file="/k", ui=False)  # fmt: skip
    assert argv == ["/b/llama-server", "--models-preset", "/s/router-8080.ini", "--models-max", "2", "--host",
                    "0.0.0.0", "--port", "8080", "--api-key-file", "/k", "--no-webui"]  # fmt: skip


def _mem(device: str, weights: int, budget: int) -> MemoryBreakdown:
    return MemoryBreakdown(device=device, weights=weights, budget=budget)


def test_models_that_fit_takes_the_largest_together_on_each_device():
    gib = 2**30
    gpu = [[_mem("GPU", 10 * gib, 24 * gib)], [_mem("GPU", 8 * gib, 24 * gib)], [_mem("GPU", 5 * gib, 24 * gib)]]
    assert models_that_fit(["a", "b", "c"], gpu).models_max == 3  # 23 GiB of 24
    tight = [[_mem("GPU", 14 * gib, 24 * gib)], [_mem("GPU", 12 * gib, 24 * gib)], [_mem("GPU", 2 * gib, 24 * gib)]]
    fit = models_that_fit(["a", "b", "c"], tight)
    assert fit.models_max == 1 and "one at a time" in fit.reason and "GPU" in fit.reason  # 14 + 12 > 24
    alone = models_that_fit(["big", "b"], [[_mem("GPU", 30 * gib, 24 * gib)], [_mem("GPU", gib, 24 * gib)]])
    assert alone.models_max == 0 and "big alone does not fit GPU" in alone.reason
    # a device only one model uses limits nothing when that model fits it
    mixed = [[_mem("GPU", 10 * gib, 24 * gib), _mem("CPU", gib, 8 * gib)], [_mem("GPU", 10 * gib, 24 * gib)]]
    assert models_that_fit(["a", "b"], mixed).models_max == 2


def test_serve_splits_more_models_from_the_pass_through_flags():
    assert split_models("a", None) == (["a"], [])
    assert split_models("a", ["b", "c"]) == (["a", "b", "c"], [])
    assert split_models("a", ["b", "--temp", "0.7"]) == (["a", "b"], ["--temp", "0.7"])
    assert split_models("a", ["--embeddings"]) == (["a"], ["--embeddings"])


def test_the_router_log_reads_as_one_model_at_a_time():
    shown = view((FIXTURES / "router-b11434-two-tiny.log").read_text().splitlines())
    agree, plain = "llmtp-qwen35-tiny-agree-45ef9988f921", "llmtp-qwen35-tiny-plain-3c264954c929"
    texts = [s.text for s in shown]
    assert f"{agree}: loading (llama-server on port 58031)" in texts
    assert any(t.startswith(f"{agree}: request 0:") and "MTP 11/11 drafts accepted" in t for t in texts), texts
    assert any(t.startswith(f"{plain}: request 0:") and "MTP" not in t for t in texts), texts
    assert f"{agree}: llama-server exited with status 0" in texts
    assert not [s for s in shown if s.level == "error"], [s for s in shown if s.level == "error"]
    started = next(s.at for s in shown if s.text.startswith(f"{agree}: loading"))
    request = next(s for s in shown if s.text.startswith(f"{agree}: request 0"))
    assert started is not None and 0 <= request.at - started < 60  # the child's stamps count from its spawn


def _deps():
    from test_serve_cli import _caps

    from llmtp.core.plan_types import GiB, PlanHardware
    from llmtp.services.serve.launch_plan import LaunchDeps

    return LaunchDeps(probe=lambda p: _caps(), hardware=PlanHardware(ram_bytes=8 * GiB, backend="cpu"))


def _router(models, **request):
    from llmtp.core.launch_plan import LaunchRequest
    from llmtp.services.serve.router import resolve_router
    from llmtp.settings import load_settings

    base = LaunchRequest(model=str(models[0]), server="/bin/llama-server", **request)
    return resolve_router(load_settings().settings, [str(m) for m in models], base, deps=_deps())


def test_set_options_are_refused_with_one_model(tiny_models):
    r = CliRunner().invoke(app, ["serve", str(tiny_models["agree"]), "--models-max", "2", "--dry-run"])
    assert isinstance(r.exception, UsageError) and "for several models on one port" in str(r.exception)


@pytest.mark.parametrize(
    "request_, match",
    [({"alias": "x"}, "--alias names one served model"), ({"rpc": "127.0.0.1:50052"}, "through RPC workers")],
)
def test_one_model_options_are_refused_for_a_set(tiny_models, request_, match):
    with pytest.raises(UsageError, match=match):
        _router([tiny_models["agree"], tiny_models["plain"]], **request_)


def test_the_same_model_twice_is_refused(tiny_models):
    with pytest.raises(UsageError, match="named twice"):
        _router([tiny_models["agree"], tiny_models["agree"]])


def test_a_set_plans_each_model_as_serve_would(tiny_models):
    from test_serve_cli import _prepare

    plan = _router([tiny_models["agree"], tiny_models["plain"]], ctx=512, port=18123)
    assert plan.names == (tiny_models["agree"].stem, tiny_models["plain"].stem) and plan.models_max == 2
    for model, one in zip((tiny_models["agree"], tiny_models["plain"]), plan.plans, strict=True):
        assert one.argv == _prepare(model, ctx=512, port=18123).argv  # the very argv `serve MODEL` runs
    assert plan.argv[plan.argv.index("--port") + 1] == "18123" and plan.preset_path.endswith("router-18123.ini")
    assert "spec-type = draft-mtp" in plan.preset.split(f"[{tiny_models['plain'].stem}]")[0]
    assert "spec-type" not in plan.preset.split(f"[{tiny_models['plain'].stem}]")[1]


def test_a_named_set_in_config_expands(tiny_models):
    from llmtp.services.serve.router import expand_sets
    from llmtp.settings import load_settings

    config = load_settings().settings.config_file
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f'[sets]\ndesk = ["{tiny_models["agree"]}", "{tiny_models["plain"]}"]\n')
    settings = load_settings().settings
    assert expand_sets(settings, ["desk", "x"]) == [str(tiny_models["agree"]), str(tiny_models["plain"]), "x"]
    from llmtp.core.launch_plan import LaunchRequest
    from llmtp.services.serve.router import resolve_router

    base = LaunchRequest(model="desk", server="/bin/llama-server", ctx=512)
    plan = resolve_router(settings, ["desk"], base, deps=_deps())
    assert plan.names == (tiny_models["agree"].stem, tiny_models["plain"].stem) and plan.models_max == 2


def test_a_set_unit_runs_serve_with_every_model_and_the_set_options(tiny_models):
    from test_serve_cli import _prepare

    from llmtp.core.launch_plan import LaunchRequest
    from llmtp.services.units.serve_unit import ServiceRequest, service_argv, validate
    from llmtp.settings import load_settings

    agree, plain = str(tiny_models["agree"]), str(tiny_models["plain"])
    launch = LaunchRequest(model=agree, server="/bin/llama-server", ctx=512, extra=("--temp", "0.5"))
    req = ServiceRequest(launch=launch, more=(plain,), set_args=("--models-max", "1"))
    plan = _prepare(tiny_models["agree"], ctx=512, extra=("--temp", "0.5"))
    argv = service_argv(req, plan, agree, None)
    assert (
        argv[argv.index("serve") : argv.index("serve") + 3] == ["serve", agree, plain] and "--alias" not in argv
    )  # each model keeps its own name
    assert argv[argv.index("--models-max") + 1] == "1" and argv[-3:] == ["--", "--temp", "0.5"]
    assert argv.index("--foreground") < argv.index("--")
    with pytest.raises(UsageError, match="named twice"):  # validate runs the set's own checks
        validate(load_settings().settings, ServiceRequest(launch=launch, more=(agree,)), deps=_deps())


def test_one_models_lines_of_a_router_log():
    from llmtp.core.logview import LogView

    agree = "llmtp-qwen35-tiny-agree-45ef9988f921"
    lines = (FIXTURES / "router-b11434-two-tiny.log").read_text().splitlines(keepends=True)
    view = LogView()
    mine, raw_mine = view.only(agree), view.raw_only(agree)
    digest = [s for line in lines for s in view.feed(line) if mine(s)]
    assert digest and all(s.text.startswith(f"{agree}: ") for s in digest)
    raw = [line for line in lines if raw_mine(line)]
    assert raw and all(line.startswith("[58031] ") for line in raw)  # the port the router gave agree
