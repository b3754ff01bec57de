"""Process groups and trees through psutil: who is in a group, stop it for good, who holds a port."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass

import psutil


def group_pids(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (zombies excluded: they are already dead)."""
    out = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            if os.getpgid(proc.pid) == pgid:
                out.append(proc.pid)
        except (ProcessLookupError, psutil.Error, PermissionError):
            continue
    return out


def signal_group(pgid: int, sig: int) -> bool:
    """Send `sig` to the group; False when the group is already gone."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False


def terminate_group(pgid: int, grace: float = 5.0, *, reap=None) -> list[int]:
    """SIGTERM the whole group, wait up to `grace` s, SIGKILL stragglers. Returns the pids killed hard.

    `reap` is called while waiting so a Popen child of ours does not linger as a zombie.
    """
    if not signal_group(pgid, signal.SIGTERM):
        return []
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if reap is not None:
            reap()
        if not group_pids(pgid):
            return []
        time.sleep(0.05)
    stragglers = group_pids(pgid)
    signal_group(pgid, signal.SIGKILL)
    procs = []
    for pid in stragglers:
        try:
            procs.append(psutil.Process(pid))
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=2)
    if reap is not None:
        reap()
    return stragglers


def descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def pid_alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass(frozen=True)
class PortHolder:
    pid: int | None  # None: another user's process we may not inspect
    name: str | None
    cmdline: str | None

    def describe(self) -> str:
        if self.pid is None:
            return "a process llmtp cannot inspect (another user's?)"
        return f"pid {self.pid} ({self.cmdline or self.name or '?'})"


def port_holder(port: int) -> PortHolder | None:
    """The process listening on TCP `port`, if any is visible."""
    try:
        conns = psutil.net_connections(kind="inet")
    except psutil.AccessDenied:
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return PortHolder(None, None, None)
            try:
                proc = psutil.Process(conn.pid)
                cmd = " ".join(proc.cmdline())
                return PortHolder(conn.pid, proc.name(), cmd[:200] or None)
            except psutil.Error:
                return PortHolder(conn.pid, None, None)
    return None
