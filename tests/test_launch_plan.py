"""One launch plan: for a CPU build, GPUs read from captured NVML and sysfs fixtures, an RPC split, tuned
draft settings and user overrides, the command line of `plan --argv`, of a foreground serve, of what the
installed unit launches and of verify's MTP arm are one and the same (the port aside).

Each row drives the real CLI commands; only the machine is replaced: the current build (the pinned
build's captured --help), the GPUs (the NVML and amdgpu sysfs adapters reading their fixtures), the RPC
workers' --list-devices, and the process start (nothing is launched)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_detect_nvml import fake_pynvml, load
from test_verify_service import fake_launcher
from typer.testing import CliRunner

from llmtp.cli.main import app
from llmtp.core.capabilities import Capabilities, Device
from llmtp.core.launch import MtpSettings
from llmtp.core.launch_plan import LaunchRequest, argv_without_address, plan_of_spec, serve_args
from llmtp.core.plan_types import GiB
from llmtp.core.probe import parse_help, parse_list_devices
from llmtp.settings import load_settings

FIX = Path(__file__).parent / "fixtures"
HELP = FIX / "llama/b11434-cpu/server-help.txt"
SYSFS = FIX / "sysfs"
# `llama-server --rpc 127.0.0.1:50071,127.0.0.1:50072 --list-devices` of the pinned build on a CPU client
# (two loopback CPU workers report host RAM; the line format as captured, docs: ../shared facts)
RPC_DEVICES = (
    "Available devices:\n  RPC0: 127.0.0.1:50071 (24105 MiB, 24105 MiB free)\n"
    "  RPC1: 127.0.0.1:50072 (24105 MiB, 20000 MiB free)\n"
)


@dataclass
class Row:
    name: str
    devices: list[Device]  # what the build's --list-devices showed (its backend)
    nvml: str | None = None  # fixture of tests/fixtures/nvml
    sysfs: str | None = None  # fixture of tests/fixtures/sysfs
    rpc: bool = False
    tuned: MtpSettings | None = None
    overrides: list[str] = field(default_factory=list)


ROWS = [
    Row("cpu", devices=[]),
    Row(
        "cuda-two-gpus-r550",
        devices=[Device(id="CUDA0", backend="CUDA", name="NVIDIA GeForce RTX 4090")],
        nvml="two-gpus-r550.json",
    ),
    Row(
        "cuda-r470-no-v2-memory", devices=[Device(id="CUDA0", backend="CUDA", name="x")], nvml="one-gpu-r470-no-v2.json"
    ),
    Row(
        "rocm-rx7900xtx", devices=[Device(id="ROCm0", backend="ROCm", name="AMD Radeon RX 7900 XTX")], sysfs="rx7900xtx"
    ),
    Row(
        "vulkan-apu-phoenix",
        devices=[Device(id="Vulkan0", backend="Vulkan", name="AMD Radeon 780M")],
        sysfs="apu-phoenix",
    ),
    Row("rpc-split", devices=[], rpc=True),
    Row("tuned-draft-settings", devices=[], tuned=MtpSettings(enabled=True, n_max=2, p_min=0.1)),
    Row("tuned-off", devices=[], tuned=MtpSettings(enabled=False)),
    Row(
        "user-overrides-cpu",
        devices=[],
        tuned=MtpSettings(enabled=True, n_max=2),
        overrides=[
            "-c",
            "2048",
            "--cache-type",
            "q8_0",
            "--threads",
            "2",
            "--draft-n-max",
            "4",
            "--draft-p-min",
            "0.05",
            "--alias",
            "my-model",
        ],
    ),
    Row(
        "user-overrides-gpu",
        devices=[Device(id="CUDA0", backend="CUDA", name="x")],
        nvml="two-gpus-r550.json",
        overrides=["--ctx", "3072", "--gpu-layers", "2", "--no-mtp", "--parallel", "2"],
    ),
    # --clients: two users on a GPU keep MTP with two slots (published crossover 2); four turn it off
    Row(
        "clients-2-gpu",
        devices=[Device(id="CUDA0", backend="CUDA", name="NVIDIA GeForce RTX 4090")],
        nvml="two-gpus-r550.json",
        overrides=["--clients", "2"],
    ),
    Row(
        "clients-4-gpu",
        devices=[Device(id="CUDA0", backend="CUDA", name="NVIDIA GeForce RTX 4090")],
        nvml="two-gpus-r550.json",
        overrides=["--clients", "4"],
    ),
]


def _caps(devices: list[Device]) -> Capabilities:
    flags, enums = parse_help(HELP.read_text(encoding="utf-8"))
    return Capabilities(flags=flags, enums=enums, devices=devices)


@pytest.fixture
def machine(row: Row, tiny_models, tmp_path, monkeypatch):
    """The machine of `row`: the current build, its GPUs, the RPC workers; and no process ever starts."""
    from llmtp.adapters import amd_sysfs, cpuinfo, nvml
    from llmtp.adapters.server_process import ServerProcess
    from llmtp.services.build import installed
    from llmtp.services.rpc import cluster as rpc
    from llmtp.services.stores import mtp_settings
    from llmtp.services.units import staging
    from llmtp.services.verify import ab_plan

    server = tmp_path / "build" / "bin" / "llama-server"
    server.parent.mkdir(parents=True)
    server.write_text("#!/bin/sh\n")
    server.chmod(0o755)
    build = SimpleNamespace(
        id="b11434-test-0000",
        server=server,
        bin_dir=server.parent,
        manifest=SimpleNamespace(capabilities=_caps(row.devices), profile="cpu"),
    )
    monkeypatch.setattr(installed, "current_build", lambda settings: build)
    gpus = nvml.read_nvidia_gpus(fake_pynvml(load(row.nvml))) if row.nvml else ([], [])
    amd = amd_sysfs.read_amd_gpus(SYSFS / row.sysfs, None) if row.sysfs else ([], [])
    monkeypatch.setattr(nvml, "read_nvidia_gpus", lambda *a, **k: gpus)
    monkeypatch.setattr(amd_sysfs, "read_amd_gpus", lambda *a, **k: amd)
    monkeypatch.setattr(cpuinfo, "memory", lambda *a, **k: (32 * GiB, 16 * GiB))
    monkeypatch.setattr(
        rpc, "reachable_endpoints", lambda text: __import__("llmtp.core.rpc").core.rpc.parse_endpoints(text)
    )
    monkeypatch.setattr(rpc, "list_devices", lambda server, endpoints, runner: parse_list_devices(RPC_DEVICES))
    monkeypatch.setattr(ServerProcess, "start", lambda self: self)  # a launch records its argv, starts nothing
    monkeypatch.setattr(staging, "_runtime_paths", lambda: ["/usr/bin/python3"])
    monkeypatch.setattr(staging, "PRIVATE_TMP", ())  # the test's LLMTP_HOME lives under /tmp
    monkeypatch.setattr(ab_plan, "_machine_gpus", lambda: (len(gpus[0]) + len(amd[0]), None))
    model = tiny_models["agree"]
    if row.tuned is not None:
        settings = load_settings().settings
        mtp_settings.save(settings, mtp_settings.model_key(model), row.tuned)
    args = [*row.overrides, *(["--rpc", "127.0.0.1:50071,127.0.0.1:50072"] if row.rpc else [])]
    return str(model), args


def _ok(result) -> dict:
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.stdout)


def plan_argv(model: str, args: list[str]) -> list[str]:
    return _ok(CliRunner().invoke(app, ["plan", model, *args, "--argv", "--json"]))["argv"]


def foreground_argv(model: str, args: list[str], monkeypatch) -> list[str]:
    """What `llmtp serve MODEL --foreground` launches: the supervised target's first launch."""
    from llmtp.services.serve import foreground

    seen = []
    monkeypatch.setattr(foreground, "supervise", lambda target, **kw: seen.append(target.launch(target.first).argv))
    result = CliRunner().invoke(app, ["serve", model, *args, "--foreground"])
    assert result.exit_code == 0, (result.output, result.exception)
    [argv] = seen
    return argv


def unit_argv(model: str, args: list[str]) -> list[str]:
    """What the installed unit launches: its ExecStart (`llmtp serve ... --foreground`) resolved by serve."""
    data = _ok(CliRunner().invoke(app, ["service", "install", model, *args, "--dry-run", "--json"]))
    [exec_start] = [ln.split("=", 1)[1] for ln in data["unit"].splitlines() if ln.startswith("ExecStart=")]
    command = shlex.split(exec_start.replace("$$", "$").replace("%%", "%"))
    at = command.index("-m")
    assert command[at : at + 3] == ["-m", "llmtp", "serve"] and command[1:at] in ([], ["-P"])
    serve = [a for a in command[at + 2 :] if a != "--foreground"]
    cut = serve.index("--") if "--" in serve else len(serve)
    return _ok(CliRunner().invoke(app, [*serve[:cut], "--dry-run", "--json", *serve[cut:]]))["argv"]


def verify_mtp_argv(model: str, args: list[str], monkeypatch) -> list[str]:
    """verify's MTP arm: what its launcher was handed, and what the report says it ran."""
    from llmtp.services.verify import ab_plan

    launch = fake_launcher()
    monkeypatch.setattr(ab_plan, "real_launcher", lambda *a, **k: launch)
    data = json.loads(
        CliRunner().invoke(app, ["verify", model, *[a for a in args if a != "--no-mtp"], "--quick", "--json"]).stdout
    )
    launched = [list(arm.argv) for arm in launch.specs if arm.mtp.enabled]
    assert launched and all(a == launched[0] for a in launched)
    assert data["arms"]["mtp"] == launched[0]
    plain = [list(arm.argv) for arm in launch.specs if not arm.mtp.enabled]
    assert plain and "--spec-type" not in plain[0] and data["arms"]["plain"] == plain[0]
    return launched[0]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_plan_serve_unit_and_verify_run_one_command_line(row, machine, monkeypatch):
    model, args = machine
    planned = argv_without_address(plan_argv(model, args))
    assert argv_without_address(foreground_argv(model, args, monkeypatch)) == planned
    assert argv_without_address(unit_argv(model, args)) == planned
    if "--spec-type" not in planned:
        return  # the plan serves without MTP (--no-mtp, tune, --clients): verify's MTP arm turns it on, by design
    assert argv_without_address(verify_mtp_argv(model, args, monkeypatch)) == planned


@pytest.mark.parametrize(
    "row", [r for r in ROWS if r.tuned is not None and not r.tuned.enabled or r.overrides], ids=lambda r: r.name
)
def test_verify_of_a_plan_without_mtp_measures_it_with_mtp_and_the_plain_arm_is_the_plan(row, machine, monkeypatch):
    """A plan that serves without MTP (tune found nothing faster; --no-mtp is not a verify option): the
    plain arm is exactly that plan, and the MTP arm is it with draft-mtp on."""
    model, args = machine
    args = [a for a in args if a != "--no-mtp"]
    from llmtp.services.verify import ab_plan

    launch = fake_launcher()
    monkeypatch.setattr(ab_plan, "real_launcher", lambda *a, **k: launch)
    data = json.loads(CliRunner().invoke(app, ["verify", model, *args, "--quick", "--json"]).stdout)
    planned = argv_without_address(plan_argv(model, args))
    plain = [list(a.argv) for a in launch.specs if not a.mtp.enabled]
    if "--spec-type" not in planned:
        assert argv_without_address(plain[0]) == planned
    else:
        assert argv_without_address(data["arms"]["mtp"]) == planned


@pytest.mark.parametrize("row", [ROWS[0]], ids=["cpu"])
def test_the_unit_pins_host_port_and_the_served_name(row, machine):
    """The unit asks `llmtp serve` for the same launch: its words parse back into an equal request."""
    model, _ = machine
    data = _ok(CliRunner().invoke(app, ["service", "install", model, "-c", "2048", "--dry-run", "--json"]))
    [exec_start] = [ln.split("=", 1)[1] for ln in data["unit"].splitlines() if ln.startswith("ExecStart=")]
    command = shlex.split(exec_start)
    words = command[command.index("llmtp") + 1 :]  # after `python [-P] -m llmtp`
    assert words[:2] == ["serve", model] and "--foreground" in words
    assert words[words.index("--alias") + 1] == Path(model).stem  # the served name, pinned
    request = LaunchRequest(model=model, host="127.0.0.1", port=8080, ctx=2048, alias=Path(model).stem)
    assert [w for w in words if w != "--foreground"] == serve_args(request)


def test_serve_args_round_trip():
    request = LaunchRequest(
        model="qwen3.6-27b",
        host="0.0.0.0",
        port=9000,
        ctx=4096,
        parallel=2,
        no_mtp=True,
        cache_type="q8_0",
        gpu_layers="all",
        threads=4,
        draft_n_max=2,
        draft_p_min=0.1,
        alias="q",
        api_key_file="/etc/k",
        rpc="h:1",
        server="/opt/llama-server",
        ui=False,
        extra=("--jinja",),
    )
    words = serve_args(request)
    assert words[-2:] == ["--", "--jinja"] and "--no-ui" in words and "--no-mtp" in words
    from llmtp.cli import _serve_options as o

    values = dict(zip(words[2:-4:2], words[3:-4:2]))  # flag -> value, in _VALUE_FLAGS order
    assert o.gpu_layers_value(values["--gpu-layers"]) == "all" and values["--ctx"] == "4096"


def test_plan_variants_never_change_the_plan(tiny_models):
    spec = plan_of_spec(
        __import__("llmtp.core.launch", fromlist=["LaunchSpec"]).LaunchSpec(
            model=str(tiny_models["agree"]), port=1, mtp=MtpSettings(enabled=True)
        ),
        _caps([]),
    )
    trial = spec.with_mtp(MtpSettings(enabled=True, n_max=5))
    assert spec.argv[spec.argv.index("--spec-draft-n-max") + 1] == "3"
    assert trial.argv[trial.argv.index("--spec-draft-n-max") + 1] == "5"
    assert argv_without_address(spec.variant(port=2).argv) == argv_without_address(spec.argv)


@pytest.mark.parametrize("row", [r for r in ROWS if r.name == "user-overrides-cpu"], ids=["user-overrides-cpu"])
def test_status_shows_the_plan_the_server_runs(row, machine, monkeypatch, tmp_path):
    """What a foreground serve records for `llmtp status` (--json: `plan`) is the plan's own reasons,
    tune's and the overrides' included, as `plan --argv --json` gives them."""
    from llmtp.services.serve import foreground

    model, args = machine
    seen = []
    monkeypatch.setattr(foreground, "supervise", lambda target, **kw: seen.append(target))
    assert CliRunner().invoke(app, ["serve", model, *args, "--foreground"]).exit_code == 0
    reasons = _ok(CliRunner().invoke(app, ["plan", model, *args, "--argv", "--json"]))["reasons"]
    assert list(seen[0].plan) == reasons
    assert {"what": "-t", "value": "2", "reason": "given with --threads"} in reasons
