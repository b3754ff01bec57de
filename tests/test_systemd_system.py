"""The system unit under a real systemd: `llmtp service install --system` inside a systemd-nspawn container
(tests/systemd_bed.py), laid out as on a host (/var/lib/llmtp), started under its full hardening with the real
test-bed llama-server."""

from __future__ import annotations

import re
import time

import pytest
from systemd_bed import CONTAINER_PYTHON
from systemd_cli import complete, health, wait_until

from llmtp.adapters.ports import free_port

pytestmark = [pytest.mark.systemd, pytest.mark.llama, pytest.mark.slow]
UNIT = "llmtp.service"
HOME = {"LLMTP_HOME": "/root/llmtp-home"}  # the installer's own llmtp home, inside the container


def _llmtp(container, *args: str):
    return container.run([CONTAINER_PYTHON, "-m", "llmtp", *args], env=HOME, timeout=600, check=True)


def _exposure(text: str) -> float:
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", text)
    assert m, text
    return float(m.group(1))


def _main_pid(container) -> int:
    return int(container.show(UNIT, "MainPID"))


def test_system_unit_runs_hardened(container, llama_bin_dir, tiny_models):
    port = free_port()
    _llmtp(container, "builds", "adopt", str(llama_bin_dir))
    out = _llmtp(
        container, "service", "install", "--system", str(tiny_models["agree"]), "--port", str(port), "--ctx", "512"
    ).stdout
    assert "/var/lib/llmtp/models/" in out and "/var/lib/llmtp/builds/" in out, out

    # enable --now returned once READY=1 came, which llmtp sends after /health answered.
    assert container.show(UNIT, "ActiveState") == "active", container.systemctl("status", UNIT).stdout
    assert health(port) == 200
    assert complete(port)["content"]
    main = _main_pid(container)
    user = container.show(UNIT, "User")
    assert user == "llmtp"
    # The whole hardening is live: the properties systemd applied, and the seccomp filter on the processes.
    props = container.systemctl(
        "show",
        UNIT,
        "-p",
        "MemoryDenyWriteExecute,NoNewPrivileges,ProtectSystem,ProtectHome,PrivateTmp,PrivateDevices,RestrictNamespaces",
    ).stdout
    for line in (
        "MemoryDenyWriteExecute=yes",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
    ):
        assert line in props, props
    pids = container.run(["sh", "-c", f"cat /sys/fs/cgroup/systemd/system.slice/{UNIT}/cgroup.procs"]).stdout.split()
    comms = {p: container.run(["cat", f"/proc/{p}/comm"]).stdout.strip() for p in pids}
    assert "llama-server" in comms.values(), comms
    for p in pids:
        status = container.run(["cat", f"/proc/{p}/status"]).stdout
        assert re.search(r"^Seccomp:\s+2$", status, re.M), (comms[p], status)  # filter mode
        assert re.search(r"^NoNewPrivs:\s+1$", status, re.M), (comms[p], status)

    # Writes the unit must not make fail; the one it must make works (in its own mount namespace, as its user).
    uid = container.run(["id", "-u", "llmtp"]).stdout.strip()
    gid = container.run(["id", "-g", "llmtp"]).stdout.strip()

    def as_unit(*argv: str):
        return container.run(["nsenter", "-t", str(main), "-m", "-S", uid, "-G", gid, *argv])

    denied = as_unit("sh", "-c", "touch /var/lib/llmtp/models/x; touch /usr/x; touch /etc/llmtp-x; ls /root")
    assert denied.stderr.count("Read-only file system") == 3, denied.stderr
    assert "Permission denied" in denied.stderr or denied.stdout.strip() == "", denied  # ProtectHome=yes
    allowed = as_unit("sh", "-c", "touch /var/lib/llmtp/state/probe && rm /var/lib/llmtp/state/probe")
    assert allowed.returncode == 0, allowed.stderr

    # systemd-analyze on the live unit scores what the offline check of the installed file scores.
    live = _exposure(container.run(["systemd-analyze", "security", "--no-pager", UNIT]).stdout)
    offline = _exposure(
        container.run(["systemd-analyze", "security", "--offline=true", f"/etc/systemd/system/{UNIT}"]).stdout
    )
    assert live == offline, (live, offline)
    print(f"system unit: exposure live {live} = offline {offline}")

    # llmtp's own lines reached journald.
    journal = container.run(["journalctl", "-u", UNIT, "--no-pager", "-o", "cat"]).stdout
    assert "ready" in journal.lower(), journal[-2000:]

    # A clean stop, well within TimeoutStopSec=30: SIGTERM to llmtp, which stops llama-server.
    t = time.monotonic()
    container.systemctl("stop", UNIT, timeout=60)
    took = time.monotonic() - t
    assert took < 30, took
    print(f"system unit: stop took {took:.2f}s (TimeoutStopSec=30)")
    assert container.show(UNIT, "ActiveState") == "inactive"
    assert container.show(UNIT, "Result") == "success"
    wait_until("port released", lambda: health(port) is None, timeout=10)
    _llmtp(container, "service", "uninstall", "--system")
    assert container.run(["test", "-e", f"/etc/systemd/system/{UNIT}"]).returncode == 1
