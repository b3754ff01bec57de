"""`--clients N`: one slot per concurrent user and MTP on only up to the measured crossover (core/concurrency.py),
through plan, serve --dry-run, the settings and the serve words a unit runs; and for real on the test bed: two
clients answered at once, and draft-mtp with two slots accepting every draft of the agree model."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
from test_serve_plan import SERVER, _caps, _gpu
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app
from llmtp.core import concurrency as cc
from llmtp.core.concurrency import Measurement, crossover, plan_clients
from llmtp.core.launch_plan import LaunchRequest, serve_args
from llmtp.core.plan_types import GiB, PlanHardware

# a CPU table of the bench's shape: MTP pays alone, breaks even at 2, loses at 4
CPU = (Measurement("cpu", 1, 1.6, "bench"), Measurement("cpu", 2, 0.97, "bench"), Measurement("cpu", 4, 0.8, "bench"))


def test_the_crossover_is_the_last_count_where_mtp_held():
    assert crossover("cpu", CPU) == cc.Crossover(2, "bench")  # 0.97x is within the 5% noise band: a tie
    dip = (Measurement("cpu", 1, 1.5, "a"), Measurement("cpu", 2, 0.9, "a"), Measurement("cpu", 4, 1.2, "b"))
    assert crossover("cpu", dip).clients == 1  # a loss at 2 ends it, whatever 4 showed
    assert crossover("gpu", CPU) == cc.Crossover(1, "")  # no figures for the backend: one stream only


def test_the_published_gpu_figures_put_the_crossover_at_two():
    gpu = [m for m in cc.MEASURED if m.backend == "gpu"]
    assert [(m.clients, round(m.ratio, 2)) for m in gpu] == [(1, 1.5), (2, 1.0), (4, 0.84)]
    assert crossover("gpu").clients == 2 and "Tanguille/cluster#3261" in crossover("gpu").source


def test_plan_clients_slots_and_mtp():
    one = plan_clients(1, on_gpu=True)
    assert (one.parallel, one.mtp) == (1, True) and one.mtp_reason.startswith("kept for one client")
    two = plan_clients(2, on_gpu=True)
    assert (two.parallel, two.mtp) == (2, True)
    four = plan_clients(4, on_gpu=True)
    assert (four.parallel, four.mtp) == (4, False)
    assert four.mtp_reason.startswith(
        "with 4 concurrent clients drafts cost more than they save (measured crossover 2 on GPU: Tanguille"
    )
    assert plan_clients(3, on_gpu=True).mtp is False  # between measured counts: no gain is extrapolated
    shared = plan_clients(4, on_gpu=True, parallel=2)  # --parallel wins: two decode at once, MTP still pays
    assert (shared.parallel, shared.mtp) == (2, True)
    assert shared.slots_reason == "given with --parallel (4 client(s) share 2 slot(s))"
    cpu = plan_clients(4, on_gpu=False, table=CPU)
    assert not cpu.mtp and "measured crossover 2 on CPU: bench" in cpu.mtp_reason
    unmeasured = plan_clients(2, on_gpu=False, table=())
    assert not unmeasured.mtp and "no concurrency figures for CPU yet" in unmeasured.mtp_reason
    with pytest.raises(ValueError):
        plan_clients(0, on_gpu=True)


def test_serve_args_carry_clients():
    words = serve_args(LaunchRequest(model="m", clients=4, parallel=2))
    assert words == ["serve", "m", "--parallel", "2", "--clients", "4"]


@pytest.fixture
def gpu_plan(tiny_models, monkeypatch):
    """`plan TINY --server S --argv --json ARGS` on a 12 GiB GPU with the pinned build's --help."""
    monkeypatch.setattr("llmtp.services.serve.launch_plan.cached_capabilities", lambda p, d: _caps())
    monkeypatch.setattr("llmtp.services.serve.launch_plan.hardware_for_build", lambda caps, **kw: _gpu(12 * 1024))

    def run(*args: str, command: tuple[str, ...] = ("plan",), tail: tuple[str, ...] = ("--argv",)) -> dict:
        argv = [*command, str(tiny_models["agree"]), "--server", str(SERVER), *args, *tail, "--json"]
        r = CliRunner().invoke(app, argv)
        assert r.exit_code == 0, (r.output, r.exception)
        data = json.loads(r.stdout)
        data["slots"] = data["argv"][data["argv"].index("-np") + 1]
        data["why"] = {d["what"]: (d["value"], d["reason"]) for d in data["reasons"]}
        return data

    return run


def test_plan_clients_4_turns_mtp_off_with_the_reason(gpu_plan):
    data = gpu_plan("--clients", "4")
    assert data["slots"] == "4" and "--spec-type" not in data["argv"]
    value, reason = data["why"]["MTP"]
    assert value == "off" and reason.startswith("with 4 concurrent clients drafts cost more than they save")
    assert data["why"]["--parallel"][1].startswith("one slot per concurrent client (--clients 4)")
    assert data["warnings"] == []


def test_plan_clients_1_and_2_keep_mtp(gpu_plan):
    for n in ("1", "2"):
        data = gpu_plan("--clients", n)
        assert data["slots"] == n and data["argv"][data["argv"].index("--spec-type") + 1] == "draft-mtp"
        assert "kept for" in data["why"]["MTP"][1]


def test_explicit_parallel_and_no_mtp_win_over_clients(gpu_plan):
    data = gpu_plan("--clients", "4", "--parallel", "2")
    assert data["slots"] == "2" and "--spec-type" in data["argv"]
    data = gpu_plan("--clients", "1", "--no-mtp")
    assert data["slots"] == "1" and "--spec-type" not in data["argv"]
    assert data["why"]["MTP"] == ("off", "--no-mtp given")


def test_serve_dry_run_and_the_setting(gpu_plan, monkeypatch):
    data = gpu_plan("--clients", "4", command=("serve",), tail=("--dry-run",))
    assert data["slots"] == "4" and "--spec-type" not in data["argv"]
    monkeypatch.setenv("LLMTP_CLIENTS", "4")  # config.toml's `clients`, through the same settings
    assert gpu_plan()["slots"] == "4"
    assert gpu_plan("--clients", "1")["slots"] == "1"  # the flag wins over the setting


def test_without_clients_mtp_keeps_one_slot_and_says_how_to_ask(gpu_plan):
    data = gpu_plan("--parallel", "4")
    assert data["slots"] == "1" and "--spec-type" in data["argv"]
    assert data["warnings"] == [
        "--parallel 4 ignored: parallel slots with MTP are slower in aggregate "
        "(`--clients 4` plans slots and MTP for that many users)"
    ]


def test_memory_is_planned_for_every_slot(tiny_models):
    """The recurrent state is per sequence: four slots plan four (the tiny qwen35 has Gated DeltaNet layers)."""
    from llmtp.core.plan import make_plan
    from llmtp.core.plan_types import PlanRequest
    from llmtp.services.models.catalog import read_model_info

    info = read_model_info(tiny_models["agree"])
    hw = PlanHardware(ram_bytes=8 * GiB, backend="cpu")
    one = make_plan(info, hw, PlanRequest(no_mtp=True, clients=plan_clients(1, on_gpu=False)))
    four = make_plan(info, hw, PlanRequest(parallel=4, clients=plan_clients(4, on_gpu=False, table=CPU)))
    assert not four.mtp.enabled and four.parallel == 4
    assert four.memory[0].recurrent_state == 4 * one.memory[0].recurrent_state > 0


def _llmtp(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmtp", *args]


def _serve_and_ask_twice(llama_bin_dir, model, *flags: str) -> tuple[dict, list[dict], list[str]]:
    """`llmtp serve MODEL FLAGS` in the background, two completions sent at once, then stop."""
    from llmtp.adapters.http import LlamaClient

    port = str(free_port())
    r = subprocess.run(
        _llmtp("serve", str(model), "--server", str(llama_bin_dir / "llama-server"), "--port", port, "--ctx", "1024")
        + [*flags, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    try:
        argv = psutil.Process(json.loads(r.stdout)["server_pid"]).cmdline()  # what really runs
        with LlamaClient(f"http://127.0.0.1:{port}", timeout=120) as client:
            props = client.props()
            with ThreadPoolExecutor(2) as pool:
                ask = [pool.submit(client.completion, text, n_predict=24) for text in ("a b c", "x y z w")]
                answers = [f.result() for f in ask]
    finally:
        CliRunner().invoke(app, ["stop", "--port", port])
    return props, answers, argv


@pytest.mark.llama
def test_serve_clients_2_answers_two_at_once(llama_bin_dir, tiny_models):
    props, answers, argv = _serve_and_ask_twice(llama_bin_dir, tiny_models["agree"], "--clients", "2")
    assert props["total_slots"] == 2 and argv[argv.index("-np") + 1] == "2"
    assert [a["timings"]["predicted_n"] for a in answers] == [24, 24]
    mtp = crossover("cpu").clients >= 2  # what the rule decides for two clients on this CPU build
    assert ("--spec-type" in argv) == mtp
    assert all(bool(a["timings"].get("draft_n")) == mtp for a in answers)


@pytest.mark.llama
def test_draft_mtp_with_two_slots_accepts_every_draft(llama_bin_dir, tiny_models):
    """b11434 keeps speculative state per sequence: two slots decoding at once with draft-mtp do not read each
    other's hidden rows (the failure unsloth#8172 describes) - the agree model's drafts are all accepted."""
    props, answers, argv = _serve_and_ask_twice(
        llama_bin_dir, tiny_models["agree"], "--clients", "1", "--parallel", "2"
    )
    assert props["total_slots"] == 2 and "draft-mtp" in argv
    for a in answers:
        t = a["timings"]
        assert t["predicted_n"] == 24 and t["draft_n"] > 0 and t["draft_n_accepted"] == t["draft_n"]


def test_clients_out_of_range_stops_at_the_edge(tiny_models, monkeypatch):
    from llmtp.errors import ConfigError

    r = CliRunner().invoke(app, ["plan", str(tiny_models["agree"]), "--clients", "0"])
    assert r.exit_code == 2 and "--clients" in r.output
    monkeypatch.setenv("LLMTP_CLIENTS", "1000")
    r = CliRunner().invoke(app, ["plan", str(tiny_models["agree"])])
    assert isinstance(r.exception, ConfigError) and "clients" in r.exception.message


def test_verify_warns_about_slots_with_mtp_only_past_the_crossover():
    from llmtp.core import verify as v

    kw = dict(temperatures=[], mtp_enabled=True, kv_buffers=None, build_has_gpu=True, machine_gpus=1)
    assert v.warnings_for(parallel=2, **kw) == []  # what `--clients 2` serves on a GPU
    [warning] = v.warnings_for(parallel=3, **kw)
    assert warning.startswith("parallel slots 3 with MTP: slower in aggregate past 2 concurrent client(s)")
    assert v.warnings_for(parallel=None, **kw)[0].startswith("parallel slots auto (4) with MTP")


def test_a_set_plans_every_model_for_the_clients(tiny_models):
    """`serve A B --clients N` (or the setting, for a set in config.toml): each model's own plan takes the rule."""
    from test_serve_cli import _caps as cli_caps

    from llmtp.services.serve.launch_plan import LaunchDeps
    from llmtp.services.serve.router import resolve_router
    from llmtp.settings import load_settings

    models = [str(tiny_models["agree"]), str(tiny_models["plain"])]
    deps = LaunchDeps(probe=lambda p: cli_caps(), hardware=_gpu(12 * 1024), tune_record=lambda p: None)
    for clients, mtp in ((2, True), (4, False)):
        base = LaunchRequest(model=models[0], server="/bin/llama-server", ctx=1024, clients=clients)
        plan = resolve_router(load_settings().settings, models, base, deps=deps)
        for one in plan.plans:
            assert one.argv[one.argv.index("-np") + 1] == str(clients)
        agree = plan.preset.split(f"[{tiny_models['plain'].stem}]")[0]
        assert ("spec-type = draft-mtp" in agree) == mtp
