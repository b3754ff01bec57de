"""The user unit under a real (private) `systemd --user` manager: install, readiness, both kinds of crash,
`llmtp status`, uninstall. The manager and its rules are tests/systemd_bed.py's."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil
import pytest
from systemd_cli import Llmtp, complete, health, llama_servers, wait_until

from llmtp.adapters.ports import free_port

pytestmark = [pytest.mark.systemd, pytest.mark.llama, pytest.mark.slow]
UNIT = "llmtp.service"


def _llmtp(user_manager, run_dir: Path) -> Llmtp:
    env = user_manager.env()
    env["LLMTP_HOME"] = str(run_dir / "llmtp-home")
    return Llmtp(env)


def _drop_in(user_manager, run_dir: Path) -> Path:
    """The person's drop-in (llmtp seeds it, never overwrites it) sends the output to a file: the private
    manager has no journald."""
    out = run_dir / "unit-output.log"
    dropin = user_manager.unit_dir / f"{UNIT}.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "override.conf").write_text(f"[Service]\nStandardOutput=append:{out}\nStandardError=inherit\n")
    return out


def _state_files(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "llmtp-home").rglob("serve-*.json"))


def test_user_unit_lifecycle(user_manager, systemd_run_dir, llama_bin_dir, tiny_models):
    llmtp = _llmtp(user_manager, systemd_run_dir)
    port = free_port()
    output = _drop_in(user_manager, systemd_run_dir)
    llmtp("builds", "adopt", str(llama_bin_dir))
    llmtp("service", "install", str(tiny_models["agree"]), "--port", str(port), "--ctx", "512")
    unit_file = user_manager.unit_dir / UNIT
    assert unit_file.is_file()

    # Type=notify: `enable --now` returned only once the unit was active, and llmtp sends READY=1 only after
    # /health answered, so the server answers at the first try.
    assert user_manager.show(UNIT, "ActiveState") == "active"
    assert health(port) == 200
    assert complete(port)["content"]
    main = int(user_manager.show(UNIT, "MainPID"))
    cmd = psutil.Process(main).cmdline()
    assert cmd[cmd.index("-m") : cmd.index("-m") + 3] == ["-m", "llmtp", "serve"]
    [server] = llama_servers(main)
    llmtp.note(f"(systemd: ActiveState=active MainPID={main}; llama-server pid {server.pid}; /health 200)")

    # kill -9 llama-server: the supervisor (still the unit's main process) starts a new one.
    os.kill(server.pid, signal.SIGKILL)
    llmtp.note(f"$ kill -9 {server.pid}   # llama-server")
    new = wait_until("a new llama-server", lambda: [p for p in llama_servers(main) if p.pid != server.pid])[0]
    wait_until("health after the supervisor's restart", lambda: health(port) == 200)
    assert int(user_manager.show(UNIT, "MainPID")) == main
    assert user_manager.show(UNIT, "NRestarts") == "0"
    llmtp.note(f"(supervisor restarted llama-server: new pid {new.pid}; MainPID still {main}; NRestarts=0)")

    # kill -9 the supervisor: systemd restarts the unit (Restart=on-failure, RestartSec=5), and KillMode=mixed
    # takes the orphaned llama-server with it.
    os.kill(main, signal.SIGKILL)
    llmtp.note(f"$ kill -9 {main}   # the llmtp supervisor")
    wait_until(
        "the old llama-server gone",
        lambda: not psutil.pid_exists(new.pid) or psutil.Process(new.pid).status() == psutil.STATUS_ZOMBIE,
        timeout=30,
    )
    main2 = wait_until(
        "systemd's restart",
        lambda: (
            user_manager.show(UNIT, "ActiveState") == "active"
            and int(user_manager.show(UNIT, "MainPID") or 0) not in (0, main)
            and int(user_manager.show(UNIT, "MainPID"))
        ),
        timeout=120,
    )
    assert user_manager.show(UNIT, "NRestarts") == "1"
    wait_until("health after systemd's restart", lambda: health(port) == 200)
    llmtp.note(f"(systemd restarted the unit: MainPID {main2}, NRestarts=1; /health 200)")

    status = json.loads(llmtp("status", "--json").stdout)
    [entry] = [e for e in status if e["port"] == port]
    [server2] = llama_servers(main2)
    assert (entry["llmtp_pid"], entry["server_pid"], entry["state"]) == (main2, server2.pid, "ready")
    llmtp("status")
    assert "active (running)" in llmtp("service", "status").stdout

    # A reinstall with another port: the running unit is restarted onto the new unit (enable --now alone
    # would leave the old process serving the old port).
    port2 = free_port()
    while port2 == port:
        port2 = free_port()
    llmtp("service", "install", str(tiny_models["agree"]), "--port", str(port2), "--ctx", "512")
    main3 = int(user_manager.show(UNIT, "MainPID"))
    assert main3 != main2 and health(port2) == 200 and health(port) is None
    [server3] = llama_servers(main3)
    assert not psutil.pid_exists(server2.pid)
    main2, server2, port = main3, server3, port2

    # llmtp's events reached the unit's StandardOutput (the drop-in): the first start, the supervisor's
    # restart of llama-server, and systemd's restart of the unit.
    events = output.read_text()
    for pid in (server.pid, new.pid, server3.pid):
        assert f"[ready] ready (pid {pid})" in events, events

    # `service stop`: no process and no serve record left; the unit stays installed.
    llmtp("service", "stop")
    assert user_manager.show(UNIT, "ActiveState") == "inactive"
    assert user_manager.show(UNIT, "Result") == "success"
    assert not psutil.pid_exists(main2) and not psutil.pid_exists(server2.pid)
    assert _state_files(systemd_run_dir) == []
    assert unit_file.is_file()

    # `service uninstall`: no unit file, and systemd no longer knows the unit; the person's drop-in stays.
    llmtp("service", "uninstall")
    assert not unit_file.exists()
    assert user_manager.show(UNIT, "LoadState") == "not-found"
    assert (user_manager.unit_dir / f"{UNIT}.d" / "override.conf").is_file()
    assert _state_files(systemd_run_dir) == []
    llmtp.save("user unit: install, crash, restart, stop, uninstall")


def test_a_set_of_models_is_one_user_unit(user_manager, systemd_run_dir, llama_bin_dir, tiny_models):
    """`service install A B` writes one unit whose `llmtp serve A B` runs the router: READY once it listens, each
    model answering by its name, `service stop` leaving no router and no child."""
    llmtp = _llmtp(user_manager, systemd_run_dir)
    port = free_port()
    _drop_in(user_manager, systemd_run_dir)
    llmtp("builds", "adopt", str(llama_bin_dir))
    agree, plain = str(tiny_models["agree"]), str(tiny_models["plain"])
    llmtp("service", "install", agree, plain, "--port", str(port), "--ctx", "512", "--models-max", "1")
    assert user_manager.show(UNIT, "ActiveState") == "active" and health(port) == 200
    main = int(user_manager.show(UNIT, "MainPID"))
    cmd = psutil.Process(main).cmdline()
    assert cmd[cmd.index("serve") : cmd.index("serve") + 3] == ["serve", agree, plain]
    for model in (tiny_models["agree"].stem, tiny_models["plain"].stem):
        assert complete(port, model=model)["content"]
    [entry] = [e for e in json.loads(llmtp("status", "--json").stdout) if e["port"] == port]
    assert entry["kind"] == "router" and [m["state"] for m in entry["models"]] == ["unloaded", "loaded"]  # max 1
    tree = [p.pid for p in psutil.Process(main).children(recursive=True)]
    assert len(tree) == 2  # the router and the one model it keeps loaded
    llmtp("service", "stop")
    assert user_manager.show(UNIT, "ActiveState") == "inactive"
    assert not [p for p in [main, *tree] if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    llmtp("service", "uninstall")
    assert _state_files(systemd_run_dir) == []
