"""systemd unit / launchd plist rendering, escaping, systemd-analyze verify, install and drop-ins."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.adapters.runner import Completed
from llmtp.cli.main import app
from llmtp.core.unit import systemd_environment, systemd_exec_arg, systemd_exec_line
from llmtp.services import service as svc
from llmtp.settings import load_settings


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


@pytest.mark.parametrize("arg, word", [
    ("/m/model.gguf", "/m/model.gguf"),
    ("/m/50%.gguf", "/m/50%%.gguf"),
    ("$HOME/m.gguf", "$$HOME/m.gguf"),
    ("/m/my model.gguf", '"/m/my model.gguf"'),
    ('a"b', '"a\\"b"'),
    ("back\\slash", '"back\\\\slash"'),
    (";", '";"'),
    ("%h$USER x", '"%%h$$USER x"'),
])
def test_exec_arg_escaping(arg, word):
    assert systemd_exec_arg(arg) == word


def test_environment_escaping():
    assert systemd_environment("LLMTP_DATA_DIR", '/d/50% "x"') == 'Environment="LLMTP_DATA_DIR=/d/50%% \\"x\\""'


def _settings():
    return load_settings().settings


def _unit(system: bool, model: str = "/srv/models/q.gguf", args=("--port", "8081")) -> str:
    return svc.render_unit(_settings(), svc.ServiceRequest(model=model, serve_args=list(args), system=system))


def _lines(text: str, key: str) -> list[str]:
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(key + "=")]


def test_user_unit(llmtp_home):
    text = _unit(False, args=("--port", "8081", "--", "--jinja"))
    s = _settings()
    assert _lines(text, "ExecStart") == [systemd_exec_line(
        [sys.executable, "-m", "llmtp", "serve", "/srv/models/q.gguf", "--port", "8081", "--foreground", "--", "--jinja"])]
    assert _lines(text, "Restart") == ["on-failure"]
    assert _lines(text, "StartLimitBurst") == ["5"]
    assert _lines(text, "ReadWritePaths") == [str(s.state_dir)]
    assert _lines(text, "EnvironmentFile") == [f"-{s.config_dir}/service.env"]
    assert _lines(text, "ProtectHome") == ["read-only"]
    assert _lines(text, "WantedBy") == ["default.target"]
    assert _lines(text, "User") == [] and "$" not in text.replace("$$", "")


def test_system_unit():
    text = _unit(True)
    assert _lines(text, "User") == ["llmtp"]
    assert _lines(text, "SupplementaryGroups") == ["render video"]
    assert _lines(text, "ReadWritePaths") == ["/var/lib/llmtp"]
    assert 'Environment="LLMTP_STATE_DIR=/var/lib/llmtp"' in text.splitlines()
    assert _lines(text, "WantedBy") == ["multi-user.target"]
    for key in ("NoNewPrivileges", "PrivateTmp"):
        assert _lines(text, key) == ["yes"]
    assert _lines(text, "ProtectSystem") == ["strict"]


def _verify(path: Path, user: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    argv = ["systemd-analyze", *(["--user"] if user else []), "verify", str(path)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
@pytest.mark.parametrize("system", [False, True])
def test_units_pass_systemd_analyze_verify(tmp_path, system):
    # A model path with every character systemd treats specially.
    path = tmp_path / ("sys" if system else "user") / "llmtp.service"
    path.parent.mkdir()
    path.write_text(_unit(system, model='/m/50% $HOME "q" x.gguf'))
    r = _verify(path, not system, tmp_path)
    assert r.returncode == 0, r.stderr
    # and the check does catch a broken quote
    path.write_text(path.read_text().replace("--foreground", '--foreground "'))
    assert _verify(path, not system, tmp_path).returncode != 0


def test_install_reload_enable_and_dropin_preserved(tmp_path):
    runner = FakeRunner()
    req = svc.ServiceRequest(model="/srv/q.gguf", serve_args=["--port", "8081"])
    first = svc.install(_settings(), req, runner, unit_dir=tmp_path)
    assert first.override_created
    assert runner.calls == [["systemctl", "--user", "daemon-reload"],
                            ["systemctl", "--user", "enable", "--now", "llmtp.service"]]
    custom = '[Service]\nEnvironment="CUDA_VISIBLE_DEVICES=1"\n'
    first.override_path.write_text(custom)
    # "upgrade": the unit changes, the person's drop-in does not
    (tmp_path / "llmtp.service").write_text("old unit from a previous version\n")
    second = svc.install(_settings(), svc.ServiceRequest(model="/srv/q.gguf", serve_args=["--port", "9000"]),
                         runner, unit_dir=tmp_path)
    assert not second.override_created and f"kept {second.override_path}" in second.actions
    assert second.override_path.read_text() == custom
    assert "--port 9000" in (tmp_path / "llmtp.service").read_text()
    actions = svc.uninstall(_settings(), runner, unit_dir=tmp_path)
    assert actions[1] == f"removed {tmp_path / 'llmtp.service'}"
    assert not (tmp_path / "llmtp.service").exists() and second.override_path.read_text() == custom
    assert runner.calls[-2:] == [["systemctl", "--user", "disable", "--now", "llmtp.service"],
                                 ["systemctl", "--user", "daemon-reload"]]


def test_system_install_creates_the_user(tmp_path):
    runner = FakeRunner(fail={"id -u": 1, "getent group": 0})
    svc.install(_settings(), svc.ServiceRequest(model="/srv/q.gguf", system=True), runner, unit_dir=tmp_path)
    assert ["useradd", "--system", "--user-group", "--home-dir", "/var/lib/llmtp", "--no-create-home",
            "--shell", "/usr/sbin/nologin", "--groups", "render,video", "llmtp"] in runner.calls
    assert ["systemctl", "enable", "--now", "llmtp.service"] in runner.calls


def test_launchd_plist_parses():
    text = svc.launchd_plist(_settings(), svc.ServiceRequest(model="/m/a&b <x>.gguf", serve_args=["--port", "8081"]))
    data = plistlib.loads(text.encode())
    assert data["ProgramArguments"] == [sys.executable, "-m", "llmtp", "serve", "/m/a&b <x>.gguf", "--port", "8081",
                                        "--foreground"]
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["EnvironmentVariables"]["LLMTP_STATE_DIR"] == str(_settings().state_dir)


def test_cli_dry_run_prints_the_unit(tmp_path):
    r = CliRunner().invoke(app, ["service", "install", "/srv/q.gguf", "--port", "8081", "--dry-run",
                                 "--unit-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert r.stdout == _unit(False, model="/srv/q.gguf")
    assert list(tmp_path.iterdir()) == []


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
    from llmtp.services.service import UNIT, restart_if_running, unit_state
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
