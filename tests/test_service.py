"""systemd unit / launchd plist rendering, escaping, systemd-analyze verify, install and drop-ins."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from systemd_analyze import exposure, needs_systemd_analyze, skip_if_installed_in_private_tmp, verify

from llmtp.adapters import shipped
from llmtp.adapters.runner import Completed
from llmtp.core.launch_plan import LaunchRequest
from llmtp.core.unit import systemd_environment, systemd_exec_arg, systemd_exec_line
from llmtp.errors import UsageError
from llmtp.services.serve.command_line import SAFE_PATH
from llmtp.services.units import launchd, staging
from llmtp.services.units import serve_unit as svc
from llmtp.settings import load_settings


@pytest.mark.parametrize(
    "arg, word",
    [
        ("/m/model.gguf", "/m/model.gguf"),
        ("/m/50%.gguf", "/m/50%%.gguf"),
        ("$HOME/m.gguf", "$$HOME/m.gguf"),
        ("/m/my model.gguf", '"/m/my model.gguf"'),
        ('a"b', '"a\\"b"'),
        ("back\\slash", '"back\\\\slash"'),
        (";", '";"'),
        ("%h$USER x", '"%%h$$USER x"'),
    ],
)
def test_exec_arg_escaping(arg, word):
    assert systemd_exec_arg(arg) == word


def test_environment_escaping():
    assert systemd_environment("LLMTP_DATA_DIR", '/d/50% "x"') == 'Environment="LLMTP_DATA_DIR=/d/50%% \\"x\\""'


def _settings():
    return load_settings().settings


@pytest.fixture(autouse=True)
def _llmtp_outside_home(monkeypatch):
    """A checkout under /home must not fail the system-unit tests: where llmtp runs from is
    checked on its own (test_system_unit_refuses_llmtp_installed_in_a_home)."""
    monkeypatch.setattr(staging, "_runtime_paths", lambda: ["/usr/bin/python3"])
    monkeypatch.setattr(staging, "PRIVATE_TMP", ())  # the test files live under /tmp: checked on their own below


HELP = Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt"


def _caps(devices=()):
    from llmtp.core.capabilities import Capabilities, Device
    from llmtp.core.probe import parse_help

    flags, enums = parse_help(HELP.read_text(encoding="utf-8"))
    devs = None if devices is None else [Device(id=f"{b}0", backend=b, name="x") for b in devices]
    return Capabilities(flags=flags, enums=enums, devices=devs)


def _prepare(req: svc.ServiceRequest, model: Path, *, devices=(), server: Path | None = None):
    """svc.validate (serve's resolve_launch) with the build, probe, hardware and tune record replaced."""
    from llmtp.core.plan_types import GiB, PlanHardware
    from llmtp.services.serve.launch_plan import LaunchDeps

    if server is None:  # an installed build: its bin dir is what a system unit stages
        server = model.parent / "build" / "bin" / "llama-server"
        server.parent.mkdir(parents=True, exist_ok=True)
        server.write_bytes(b"\x7fELF")
        server.chmod(0o755)
    build = SimpleNamespace(
        id="b11434-cpu-12345678", server=server, manifest=SimpleNamespace(capabilities=_caps(devices))
    )
    deps = LaunchDeps(
        current_build=lambda s: build,
        probe=lambda p: _caps(devices),
        tune_record=lambda p: None,
        hardware=PlanHardware(ram_bytes=8 * GiB, backend="cpu"),
    )
    return svc.validate(_settings(), req, deps)


def _req(model: str, *, system: bool = False, extra=(), **launch) -> svc.ServiceRequest:
    return svc.ServiceRequest(launch=LaunchRequest(model=model, extra=tuple(extra), **launch), system=system)


@pytest.fixture
def model(tmp_path, tiny_models) -> Path:
    """A real tiny GGUF (the planner reads its header) under a directory of its own."""
    import shutil

    m = tmp_path / "models" / "q.gguf"
    m.parent.mkdir()
    shutil.copyfile(tiny_models["agree"], m)
    return m


def _plan(req, model, **kw):
    return svc.plan_install(_settings(), req, _prepare(req, model, **kw))


def _unit(system: bool, model: Path, extra=(), **req_kw) -> str:
    req = _req(str(model), port=8081, extra=list(extra), system=system, **req_kw)
    return _plan(req, model).text


def _lines(text: str, key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(key + "=")]


def test_user_unit(model):
    text = _unit(False, model, extra=("--jinja",))
    s = _settings()
    assert _lines(text, "ExecStart") == [
        systemd_exec_line(
            [
                sys.executable,
                *SAFE_PATH,
                "-m",
                "llmtp",
                "serve",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                "8081",
                "--alias",
                "q",
                "--foreground",
                "--",
                "--jinja",
            ]
        )
    ]
    assert _lines(text, "Type") == ["notify"] and _lines(text, "NotifyAccess") == ["main"]
    assert _lines(text, "Restart") == ["on-failure"]
    assert _lines(text, "StartLimitBurst") == ["5"]
    assert _lines(text, "ReadWritePaths") == [f"{s.state_dir} {s.data_dir} {s.cache_dir}"]
    assert _lines(text, "EnvironmentFile") == [f"-{s.config_dir}/service.env"]
    assert _lines(text, "ProtectHome") == ["read-only"]
    assert _lines(text, "WantedBy") == ["default.target"]
    assert _lines(text, "User") == [] and "$" not in text.replace("$$", "").replace("$NOTIFY_SOCKET", "")


def test_unit_keeps_the_alias_clients_see(model):
    text = _unit(False, model, alias="my model")
    assert _lines(text, "ExecStart") == [
        systemd_exec_line(
            [
                sys.executable,
                *SAFE_PATH,
                "-m",
                "llmtp",
                "serve",
                str(model),
                "--host",
                "127.0.0.1",
                "--port",
                "8081",
                "--alias",
                "my model",
                "--foreground",
            ]
        )
    ]
    with pytest.raises(UsageError, match="comma"):
        _unit(False, model, alias="a,b")


def test_system_unit_serves_from_system_paths(model):
    text = _unit(True, model)
    assert _lines(text, "User") == ["llmtp"]
    assert _lines(text, "SupplementaryGroups") == []  # a CPU unit opens no GPU node
    assert _lines(text, "StateDirectory") == ["llmtp/state"]
    assert _lines(text, "ReadWritePaths") == ["/var/lib/llmtp/state /var/cache/llmtp"]
    assert 'Environment="LLMTP_STATE_DIR=/var/lib/llmtp/state"' in text.splitlines()
    assert 'Environment="LLMTP_MODELS_DIR=/var/lib/llmtp/models"' in text.splitlines()
    assert _lines(text, "WantedBy") == ["multi-user.target"]
    assert _lines(text, "ProtectHome") == ["yes"]
    # nothing the service needs lives where ProtectHome=yes hides it (the test home is under /tmp)
    assert str(model) not in text and str(_settings().data_dir) not in text
    exec_start = _lines(text, "ExecStart")[0]
    assert "serve /var/lib/llmtp/models/q.gguf " in exec_start
    assert "--server /var/lib/llmtp/builds/b11434-cpu-12345678/llama-server" in exec_start


def test_system_unit_hardening(model):
    text = _unit(True, model)
    for key in (
        "NoNewPrivileges",
        "PrivateTmp",
        "LockPersonality",
        "MemoryDenyWriteExecute",
        "RestrictNamespaces",
        "PrivateDevices",
        "RestrictRealtime",
        "ProtectKernelTunables",
    ):
        assert _lines(text, key) == ["yes"], key
    assert _lines(text, "ProtectSystem") == ["strict"]
    assert _lines(text, "UMask") == ["0077"]
    assert _lines(text, "CapabilityBoundingSet") == [""]
    assert _lines(text, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6"]
    assert _lines(text, "SystemCallFilter")[0] == "@system-service"


@pytest.mark.parametrize(
    "devices, allowed",
    [
        ((), []),
        (("CPU",), []),
        (("CUDA", "CPU"), ["char-nvidia-frontend", "char-nvidia-uvm", "char-nvidia-caps"]),
        (("ROCm",), ["char-kfd", "char-drm"]),
        (None, ["char-nvidia-frontend", "char-nvidia-uvm", "char-nvidia-caps", "char-kfd", "char-drm"]),
    ],
)
def test_gpu_device_nodes(model, devices, allowed):
    user = _plan(_req(str(model)), model, devices=devices).text
    assert _lines(user, "DeviceAllow") == [] and _lines(user, "DevicePolicy") == []
    assert _lines(user, "PrivateDevices") == ([] if allowed else ["yes"])
    req = _req(str(model), system=True)
    text = _plan(req, model, devices=devices).text
    assert _lines(text, "DeviceAllow") == [f"{g} rw" for g in allowed]
    if allowed:
        assert _lines(text, "DevicePolicy") == ["closed"] and _lines(text, "PrivateDevices") == []
        assert _lines(text, "MemoryDenyWriteExecute") == []  # not tested with GPU drivers
    else:
        assert _lines(text, "PrivateDevices") == ["yes"] and _lines(text, "MemoryDenyWriteExecute") == ["yes"]


@pytest.mark.parametrize(
    "field, value",
    [
        ("model", "/m/x.gguf\nExecStartPre=evil"),
        ("model", "/m/x\r.gguf"),
        ("extra", ["--chat-template", "a\nExecStartPre=/bin/evil"]),
        ("extra", ["--chat-template", "x\x1b[2J"]),
    ],
)
def test_control_characters_are_refused(tmp_path, tiny_models, field, value):
    model = tmp_path / ("x.gguf" if field != "model" else value.rsplit("/", 1)[1])
    shutil.copyfile(tiny_models["agree"], model)
    req = _req(str(model), **({"extra": value} if field == "extra" else {}))
    with pytest.raises(UsageError, match="control character"):
        _plan(req, model)


@pytest.mark.parametrize("name, value", [("LLMTP_DATA_DIR", "/d\n[Service]"), ("BAD NAME", "x")])
def test_environment_values_and_names_are_checked(name, value):
    from llmtp.core.unit import UnitSpec, render_systemd

    spec = UnitSpec(
        scope="user", exec_argv=["/bin/true"], environment={name: value}, environment_file="/e", read_write_paths=["/s"]
    )
    with pytest.raises(UsageError):
        render_systemd(shipped.template_text("llmtp.service"), spec)


@pytest.mark.parametrize("path", ["/s p/x", "/a\\b", "relative/x", '/q"x'])
def test_path_settings_refuse_what_they_cannot_quote(path):
    from llmtp.core.unit import UnitSpec, render_systemd

    spec = UnitSpec(scope="user", exec_argv=["/bin/true"], environment_file="/e", read_write_paths=[path])
    with pytest.raises(UsageError, match="systemd path setting"):
        render_systemd(shipped.template_text("llmtp.service"), spec)


def test_system_unit_refuses_home_paths(model, tmp_path):
    key = tmp_path / "key"
    key.write_text("k\n")
    key.chmod(0o600)
    req = _req(str(model), system=True, host="0.0.0.0", api_key_file="/home/alice/key")
    import dataclasses

    prepared = _prepare(_req(str(model), host="0.0.0.0", api_key_file=str(key)), model)
    prepared = dataclasses.replace(prepared, spec=prepared.spec.model_copy(update={"api_key_file": "/home/alice/key"}))
    with pytest.raises(UsageError, match="cannot read the API key file /home/alice/key"):
        svc.plan_install(_settings(), req, prepared)
    prepared = dataclasses.replace(
        _prepare(_req(str(model)), model), build_id=None, server="/home/alice/llama/llama-server"
    )
    with pytest.raises(UsageError, match="cannot run /home/alice/llama/llama-server"):
        svc.plan_install(_settings(), _req(str(model), system=True, server="/x"), prepared)


def test_system_unit_refuses_llmtp_installed_in_a_home(model, monkeypatch):
    monkeypatch.setattr(staging, "_runtime_paths", lambda: ["/usr/bin/python3", "/home/alice/.venv"])
    req = _req(str(model), system=True)
    with pytest.raises(UsageError, match="cannot run llmtp from /home/alice/.venv"):
        _plan(req, model)
    assert _plan(_req(str(model)), model).text  # a user unit runs from home, fine


@pytest.mark.parametrize("system", [False, True])
def test_files_in_tmp_are_refused(model, monkeypatch, system):
    monkeypatch.setattr(staging, "PRIVATE_TMP", ("/tmp/", "/var/tmp/"))
    assert str(model).startswith("/tmp/")  # the test's model and build live there
    with pytest.raises(UsageError, match="PrivateTmp=yes gives it a /tmp"):
        _plan(_req(str(model), system=system), model)


def test_install_validates_as_serve_does(model, tmp_path):
    with pytest.raises(UsageError, match="Binding to 0.0.0.0 exposes the server"):
        _prepare(_req(str(model), host="0.0.0.0"), model)
    with pytest.raises(UsageError, match="[Mm]odel file not found"):
        _prepare(_req(str(tmp_path / "missing.gguf")), model)
    with pytest.raises(UsageError, match="--api-key after `--`"):
        _prepare(_req(str(model), extra=["--api-key", "SECRET"]), model)


def _odd_model(tmp_path, tiny_models) -> Path:
    # A model path with every character systemd treats specially in ExecStart=.
    m = tmp_path / '50% $HOME "q" x.gguf'
    shutil.copyfile(tiny_models["agree"], m)
    return m


@needs_systemd_analyze
@pytest.mark.parametrize("system, devices", [(False, ()), (True, ()), (True, ("CUDA",)), (True, None)])
def test_units_pass_systemd_analyze_verify(tmp_path, tiny_models, system, devices):
    model = _odd_model(tmp_path, tiny_models)
    path = tmp_path / ("sys" if system else "user") / "llmtp.service"
    path.parent.mkdir()
    path.write_text(_plan(_req(str(model), system=system), model, devices=devices).text)
    r = verify(path, not system, tmp_path)
    assert r.returncode == 0 and str(path) not in r.stderr, r.stderr  # no warning about our unit
    # and the check does catch a broken quote
    path.write_text(path.read_text().replace("--foreground", '--foreground "'))
    assert verify(path, not system, tmp_path).returncode != 0


@needs_systemd_analyze
@pytest.mark.parametrize(
    "system, devices, limit",
    [(False, (), 6.0), (False, ("CUDA",), 6.0), (True, (), 4.5), (True, ("CUDA",), 4.5), (True, None, 4.5)],
)
def test_security_exposure(tmp_path, tiny_models, system, devices, limit):
    model = _odd_model(tmp_path, tiny_models)
    path = tmp_path / "llmtp.service"
    path.write_text(_plan(_req(str(model), system=system), model, devices=devices).text)
    score = exposure(path, not system, tmp_path)
    assert score <= limit
    # the figure moves with the hardening: without it the same unit scores far worse
    bare = "\n".join(
        ln
        for ln in path.read_text().splitlines()
        if not ln.startswith(
            (
                "SystemCallFilter",
                "CapabilityBoundingSet",
                "RestrictAddressFamilies",
                "ProtectSystem",
                "RestrictNamespaces",
                "PrivateDevices",
            )
        )
    )
    path.write_text(bare + "\n")
    assert exposure(path, not system, tmp_path) > score + 1


class FakeRunner:
    def __init__(self, fail: dict[str, int] | None = None):
        self.calls: list[list[str]] = []
        self.fail = fail or {}

    def which(self, name):
        return f"/usr/bin/{name}"

    def run(self, argv, *, cwd=None, env=None, timeout=60):
        argv = [str(a) for a in argv]
        self.calls.append(argv)
        return Completed(argv, self.fail.get(" ".join(argv[:2]), 0), "", "")

    def stream(self, argv, *, on_line, log, cwd=None, env=None):
        self.calls.append(list(argv))
        return 0


def _install(req, model, runner, unit_dir, **kw):
    return svc.install(_settings(), req, runner, plan=_plan(req, model), unit_dir=unit_dir, **kw)


def first_plan_paths(req, model) -> list[str]:
    return _plan(req, model).unit.read_write_paths


def test_install_reload_enable_and_dropin_preserved(tmp_path, model):
    runner = FakeRunner()
    unit_dir = tmp_path / "units"
    req = _req(str(model), port=8081)
    old = os.umask(0o077)
    try:
        first = _install(req, model, runner, unit_dir)
    finally:
        os.umask(old)
    assert (unit_dir / "llmtp.service").stat().st_mode & 0o777 == 0o644
    assert all(Path(p).is_dir() for p in first_plan_paths(req, model))  # ReadWritePaths= must exist
    assert first.override_created
    assert runner.calls == [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "is-active", "llmtp.service"],
        ["systemctl", "--user", "enable", "--now", "llmtp.service"],
    ]
    custom = '[Service]\nEnvironment="CUDA_VISIBLE_DEVICES=1"\n'
    first.override_path.write_text(custom)
    # "upgrade": the unit changes, the person's drop-in does not
    (unit_dir / "llmtp.service").write_text("old unit from a previous version\n")
    second = _install(_req(str(model), port=9000), model, runner, unit_dir)
    assert not second.override_created and f"kept {second.override_path}" in second.actions
    assert second.override_path.read_text() == custom
    assert "--port 9000" in (unit_dir / "llmtp.service").read_text()
    actions = svc.uninstall(_settings(), runner, unit_dir=unit_dir)
    assert actions[1] == f"removed {unit_dir / 'llmtp.service'}"
    assert not (unit_dir / "llmtp.service").exists() and second.override_path.read_text() == custom
    assert runner.calls[-2:] == [
        ["systemctl", "--user", "disable", "--now", "llmtp.service"],
        ["systemctl", "--user", "daemon-reload"],
    ]


def test_system_install_creates_the_user_and_stages_the_model(tmp_path, model):
    runner = FakeRunner(fail={"id -u": 1, "getent group": 0})
    build = tmp_path / "build" / "bin"
    build.mkdir(parents=True)
    (build / "llama-server").write_bytes(b"\x7fELF")
    (build / "llama-server").chmod(0o755)
    (build / "libggml.so").write_bytes(b"lib")
    (build / "libggml.so").chmod(0o644)
    model.chmod(0o600)  # not readable by the llmtp user: copied, never linked
    req = _req(str(model), system=True)
    plan = svc.plan_install(_settings(), req, _prepare(req, model, server=build / "llama-server"))
    root = tmp_path / "root"
    seen = []
    result = svc.install(
        _settings(),
        req,
        runner,
        plan=plan,
        unit_dir=tmp_path / "units",
        root=root,
        on_progress=lambda stage, done, total: seen.append((stage.source.name, done, total)),
    )
    assert [
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        "/var/lib/llmtp",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--groups",
        "render,video",
        "llmtp",
    ] in runner.calls
    assert ["systemctl", "enable", "--now", "llmtp.service"] in runner.calls
    staged = root / "var/lib/llmtp/models/q.gguf"
    assert staged.read_bytes() == model.read_bytes() and staged.stat().st_mode & 0o777 == 0o644
    size = model.stat().st_size
    assert not staged.samefile(model) and ("q.gguf", size, size) in seen
    assert f"copied {model} -> /var/lib/llmtp/models/q.gguf" in result.actions
    server = root / "var/lib/llmtp/builds/b11434-cpu-12345678/llama-server"
    assert server.samefile(build / "llama-server")  # world-readable and executable: a hard link
    assert (
        f"linked {build / 'llama-server'} -> /var/lib/llmtp/builds/b11434-cpu-12345678/llama-server" in result.actions
    )
    again = svc.install(_settings(), req, runner, plan=plan, unit_dir=tmp_path / "units", root=root)
    assert "kept /var/lib/llmtp/models/q.gguf" in again.actions


class NoRenderGroup(FakeRunner):
    """A host without udev's `render` group (a minimal Debian, a container)."""

    def run(self, argv, *, cwd=None, env=None, timeout=60):
        done = super().run(argv, cwd=cwd, env=env, timeout=timeout)
        missing = [str(a) for a in argv] == ["getent", "group", "render"]
        return Completed(done.argv, 2 if missing else done.returncode, "", "")


def test_gpu_system_unit_names_only_the_groups_the_host_has(tmp_path, model):
    req = _req(str(model), system=True)
    plan = _plan(req, model, devices=("CUDA",))
    assert _lines(plan.text, "SupplementaryGroups") == ["render video"]
    runner = NoRenderGroup(fail={"id -u": 1})
    svc.install(_settings(), req, runner, plan=plan, unit_dir=tmp_path / "units", root=tmp_path / "root")
    # systemd would refuse to start a unit naming a missing group (216/GROUP, seen in the nspawn test)
    assert _lines((tmp_path / "units" / "llmtp.service").read_text(), "SupplementaryGroups") == ["video"]
    assert [
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        "/var/lib/llmtp",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--groups",
        "video",
        "llmtp",
    ] in runner.calls


def test_system_install_needs_root(model, tmp_path, monkeypatch):
    req = _req(str(model), system=True)
    plan = _plan(req, model)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    runner = FakeRunner()
    with pytest.raises(UsageError, match="needs root"):
        svc.install(_settings(), req, runner, plan=plan, unit_dir=tmp_path / "units")
    assert runner.calls == [] and not (tmp_path / "units").exists()


def test_launchd_plist_parses(tmp_path, tiny_models):
    model = tmp_path / "a&b <x>.gguf"
    shutil.copyfile(tiny_models["agree"], model)
    req = _req(str(model), port=8081)
    text = launchd.launchd_plist(_settings(), req, _prepare(req, model))
    data = plistlib.loads(text.encode())
    assert data["ProgramArguments"] == [
        sys.executable,
        *SAFE_PATH,
        "-m",
        "llmtp",
        "serve",
        str(model),
        "--host",
        "127.0.0.1",
        "--port",
        "8081",
        "--alias",
        "a&b <x>",
        "--foreground",
    ]
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["EnvironmentVariables"]["LLMTP_STATE_DIR"] == str(_settings().state_dir)


def _llmtp(llmtp_home, *args):
    env = {**os.environ, "LLMTP_HOME": str(llmtp_home)}
    return subprocess.run([sys.executable, "-m", "llmtp", *args], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize(
    "extra, instead",
    [
        (["--api-key", "SECRET"], "--api-key-file FILE"),
        (["--host", "0.0.0.0"], "--host ADDR"),
        (["--path", "/"], "serve files"),
    ],
)
def test_cli_install_refuses_pass_through(llmtp_home, tmp_path, model, extra, instead):
    unit_dir = tmp_path / "units"
    r = _llmtp(llmtp_home, "service", "install", str(model), "--unit-dir", str(unit_dir), "--no-start", "--", *extra)
    assert r.returncode == 2, r.stderr
    assert instead in r.stderr and "Traceback" not in r.stderr
    assert not unit_dir.exists()  # nothing written, the key never lands in a unit


@pytest.mark.llama
def test_cli_dry_run_validates_and_prints_the_unit(tmp_path, llama_bin_dir, tiny_models):
    import conftest

    # not under /tmp, which the unit's PrivateTmp=yes would hide (install refuses that); a dry run
    # writes nothing there but the capability cache of the test-bed binary
    llmtp_home = conftest.testbed_cache_dir() / "service-cli-home"
    server = llama_bin_dir / "llama-server"
    unit_dir = tmp_path / "units"
    model = tiny_models["agree"]
    base = ["service", "install", "--server", str(server), "--unit-dir", str(unit_dir), "--dry-run"]
    r = _llmtp(llmtp_home, *base, str(model), "--port", "8081", "--ctx", "1024")
    skip_if_installed_in_private_tmp(r)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("# Generated by `llmtp service install`")
    # the unit pins the served name (the file stem for a path), so clients see one name whoever started it
    alias = f"--alias {model.stem}"
    assert f"serve {model} --host 127.0.0.1 --port 8081 --ctx 1024 {alias} --server {server} --foreground" in r.stdout
    assert not unit_dir.exists()
    # the same refusals as `llmtp serve`: an open bind without a key, a model that is not there
    r = _llmtp(llmtp_home, *base, str(model), "--host", "0.0.0.0")
    assert r.returncode == 2 and "without an API key" in r.stderr, r.stderr
    r = _llmtp(llmtp_home, *base, str(tmp_path / "missing.gguf"))
    assert r.returncode == 2 and "missing.gguf" in r.stderr and "Traceback" not in r.stderr, r.stderr


class _StateRunner:
    """Answers `systemctl is-active` with a fixed state and records every call."""

    def __init__(self, state: str):
        self.state = state
        self.calls: list[list[str]] = []

    def run(self, argv, **kw):
        from llmtp.adapters.runner import Completed

        self.calls.append(list(argv))
        out = self.state + "\n" if "is-active" in argv else ""
        return Completed(list(argv), 0, out, "")


def test_unit_state_and_restart_if_running(tmp_path):
    from llmtp.services.units.serve_unit import UNIT, restart_if_running, unit_state
    from llmtp.settings import load_settings

    settings = load_settings().settings
    dirs = {False: tmp_path / "user", True: tmp_path / "system"}
    idle = _StateRunner("active")
    assert unit_state(settings, idle, unit_dirs=dirs) is None
    assert restart_if_running(settings, idle, unit_dirs=dirs) is False
    assert idle.calls == []

    (tmp_path / "system").mkdir()
    (tmp_path / "system" / UNIT).write_text("[Unit]\n")
    active = _StateRunner("active")
    assert unit_state(settings, active, unit_dirs=dirs) == "active"
    assert restart_if_running(settings, active, unit_dirs=dirs) is True
    assert ["systemctl", "restart", UNIT] in active.calls  # system scope: no --user

    failed = _StateRunner("failed")
    assert restart_if_running(settings, failed, unit_dirs=dirs) is False
    assert not any("restart" in c for c in failed.calls)


def test_setup_installs_through_the_same_checks(monkeypatch, model, tmp_path):
    """`llmtp setup --service` installs via validate -> plan_install -> install, like the CLI."""
    from llmtp.services.setup import deps as setup

    seen = {}
    prepared = _prepare(_req(str(model), port=8099), model)
    monkeypatch.setattr(svc, "validate", lambda settings, req: prepared)
    monkeypatch.setattr(sys, "platform", "linux")

    def install(settings, req, runner, *, plan, **kw):
        seen["req"], seen["plan"] = req, plan
        return svc.InstallResult(tmp_path / "u", tmp_path / "o", True, ["wrote u"])

    monkeypatch.setattr(svc, "install", install)
    assert setup._install_service(_settings(), str(model), "127.0.0.1", 8099) == ["wrote u"]
    assert (seen["req"].launch.host, seen["req"].launch.port) == ("127.0.0.1", 8099)
    assert "--port 8099" in seen["plan"].text


@pytest.mark.skipif(
    not os.path.isdir("/dev/shm") or os.stat("/dev/shm").st_dev == os.stat(tempfile.gettempdir()).st_dev,
    reason="needs /dev/shm on another filesystem than the temp dir",
)
def test_stage_copies_across_filesystems(tmp_path):
    """A world-readable file on another filesystem cannot be hard-linked: it is copied, with progress."""
    from llmtp.adapters.stage import link_or_copy

    src = tmp_path / "m.gguf"
    src.write_bytes(os.urandom(3 * 2**20))
    src.chmod(0o644)
    dst_dir = Path(tempfile.mkdtemp(dir="/dev/shm"))
    try:
        seen = []
        assert link_or_copy(src, dst_dir / "m.gguf", lambda d, t: seen.append((d, t))) == "copied"
        assert (dst_dir / "m.gguf").read_bytes() == src.read_bytes() and seen[-1] == (3 * 2**20, 3 * 2**20)
        assert [p.name for p in dst_dir.iterdir()] == ["m.gguf"]  # no partial file left behind
        assert link_or_copy(src, tmp_path / "linked.gguf") == "linked"  # same filesystem: a link
    finally:
        shutil.rmtree(dst_dir)


def test_stage_puts_the_file_a_symlink_points_at(tmp_path):
    """An adopted build's bin/ holds symlinks into its owner's tree: staged as the files themselves (os.link on
    Linux would hard-link the symlink, which the system unit then cannot follow into a home directory)."""
    from llmtp.adapters.stage import link_or_copy

    real = tmp_path / "home" / "build" / "llama-server"
    real.parent.mkdir(parents=True)
    real.write_bytes(b"\x7fELF")
    real.chmod(0o755)
    link = tmp_path / "adopted" / "llama-server"
    link.parent.mkdir()
    link.symlink_to(real)
    dst = tmp_path / "var" / "llama-server"
    assert link_or_copy(link, dst) == "linked"
    assert not dst.is_symlink() and dst.samefile(real)


def test_user_unit_dir_follows_xdg_config_home(tmp_path, monkeypatch):
    """Where `systemctl --user` looks first: $XDG_CONFIG_HOME/systemd/user, else ~/.config/systemd/user."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert svc.default_unit_dir(_settings(), False) == tmp_path / "cfg" / "systemd" / "user"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert svc.default_unit_dir(_settings(), False) == tmp_path / "home" / ".config" / "systemd" / "user"
    assert svc.default_unit_dir(_settings(), True) == Path("/etc/systemd/system")


def test_unit_carries_a_pinned_mtp_setting(model):
    """`service install --no-mtp-guard` pins the served MTP setting in the unit, as `serve --no-mtp-guard` does
    (the guard's switch is an option of the launch request, so the unit's serve gets it)."""
    assert "--no-mtp-guard" in _lines(_unit(False, model, mtp_guard=False), "ExecStart")[0]
    assert "mtp-guard" not in _lines(_unit(False, model), "ExecStart")[0]  # the setting decides
