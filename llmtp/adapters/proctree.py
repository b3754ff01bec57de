"""Process groups and trees through psutil: who is in a group, stop it for good, who holds a port,
and whether a recorded pid is still the very process that was recorded (pids are reused)."""

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
    """Send `sig` to the group; False when the group is already gone. Callers prove the group's
    leader is theirs first (a Popen child not yet reaped, or `matches` on a record)."""
    if pgid <= 1:  # killpg(0) is our own group, killpg(1) init's; -1 would be everything
        raise ValueError(f"refusing to signal process group {pgid}")
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
    if not stragglers:  # emptied at the last moment: its id may be free for reuse already
        return []
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


def stop_child_group(proc, grace: float = 5.0) -> None:  # noqa: ANN001 - a subprocess.Popen of ours
    """Stop the group led by our child `proc` (started with start_new_session) and reap it. Not yet
    reaped, its pid (= its group id) cannot have been reused; once reaped, the id stays reserved
    only while someone is still in its group, so the group is signalled only then."""
    if proc.poll() is None or group_pids(proc.pid):
        terminate_group(proc.pid, grace, reap=proc.poll)


def pid_alive(pid: int) -> bool:
    if pid <= 0:  # psutil.Process(0) is the kernel's idle task on Linux: never "ours"
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# psutil derives create_time from the boot time, which Linux recomputes from the wall clock and which
# can move by a second after a clock step: a pid reused within the same second with the very same
# command line is not a case that exists in practice.
_CREATE_TIME_SLACK_S = 1.0


@dataclass(frozen=True)
class Identity:
    """What proves a pid is still the process seen earlier: its start time and its command line."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...]


def identity(pid: int, *, child_of: int | None = None) -> Identity | None:
    """The identity of live process `pid`; None when it is gone, a zombie, unreadable, or (with
    `child_of`) not a child of that pid: how a caller proves the pid it records is its own child."""
    if pid <= 1:
        return None
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if child_of is not None and proc.ppid() != child_of:
                return None
            return Identity(pid, proc.create_time(), tuple(proc.cmdline()))
    except psutil.Error:
        return None


def matches(recorded: Identity) -> psutil.Process | None:
    """The live process when `recorded` still describes it (pid > 1, same start time, same command
    line), else None: a stale record whose pid is gone or now belongs to someone else."""
    now = identity(recorded.pid)
    if now is None or now.cmdline != tuple(recorded.cmdline):
        return None
    if abs(now.create_time - recorded.create_time) > _CREATE_TIME_SLACK_S:
        return None
    try:
        return psutil.Process(recorded.pid)
    except psutil.Error:
        return None


def terminate_and_wait(proc: psutil.Process, timeout: float) -> bool:
    """SIGTERM `proc` (a process `matches` proved) and wait up to `timeout` s. True: it is gone;
    False: it still runs. psutil re-checks the start time: a reused pid is never signalled."""
    try:
        proc.terminate()
        proc.wait(timeout)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return False
    return True


def rss_bytes(recorded: Identity) -> int | None:
    """Resident memory of the recorded process, once proven to be it (`matches`); None otherwise."""
    proc = matches(recorded)
    if proc is None:
        return None
    try:
        return int(proc.memory_info().rss)
    except psutil.Error:
        return None


def children_by_flag(recorded: Identity, flag: str) -> dict[str, tuple[int, int]]:
    """{value of `flag`: (pid, resident bytes)} of the live children of the recorded process (once proven): a
    router's llama-server children by their `--alias`. Empty when it is not proven or has none."""
    proc = matches(recorded)
    if proc is None:
        return {}
    out: dict[str, tuple[int, int]] = {}
    try:
        children = proc.children()
    except psutil.Error:
        return {}
    for child in children:
        try:
            with child.oneshot():
                argv = child.cmdline()
                if flag in argv[:-1]:
                    out[argv[argv.index(flag) + 1]] = (child.pid, int(child.memory_info().rss))
        except psutil.Error:
            continue
    return out


def terminate_proven(recorded: Identity, grace: float = 5.0, *, group: bool = False) -> bool:
    """Stop the process `recorded` describes, only once proven to be it: SIGTERM, bounded wait,
    SIGKILL. `group`: the whole group it leads (only when it does lead one). False: not ours, nothing
    was signalled."""
    proc = matches(recorded)
    if proc is None:
        return False
    if group:
        try:
            leads = os.getpgid(recorded.pid) == recorded.pid
        except ProcessLookupError:
            return True  # gone between the proof and now: nothing left to stop
        if leads:
            terminate_group(recorded.pid, grace)
            return True
    try:
        proc.terminate()  # psutil re-checks the start time itself: never a reused pid
        proc.wait(grace)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        try:
            proc.kill()
            proc.wait(2)
        except (psutil.NoSuchProcess, psutil.TimeoutExpired):
            pass
    return True


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
