"""The service as systemd runs it, against the real test-bed llama-server: `serve --foreground`
sends READY=1 to $NOTIFY_SOCKET once /health is 200, and the whole process tree (CPython and
llama.cpp's CPU backend) runs with writable+executable memory refused, as MemoryDenyWriteExecute=yes
does in the unit. PID 1 here is not systemd, so the kernel's own switch stands in for it:
prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN) (Linux 6.3+), inherited by children and kept across
execve. systemd implements the setting with a seccomp filter on the same mmap/mprotect cases.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from llmtp.adapters.ports import free_port

PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1


def _mdwe_available() -> bool:
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_GET_MDWE, 0, 0, 0, 0) >= 0


def _refuse_exec_gain() -> None:  # preexec_fn: runs in the child before execve
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE")


needs_mdwe = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not _mdwe_available(), reason="the kernel has no PR_SET_MDWE (Linux 6.3+)"
)

_WX = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC); print('mapped')"


@needs_mdwe
def test_the_switch_does_refuse_wx_memory():
    # without it a W+X mapping works; with it (what the served tree runs under) it is refused
    assert subprocess.run([sys.executable, "-c", _WX], capture_output=True, text=True).stdout == "mapped\n"
    r = subprocess.run([sys.executable, "-c", _WX], capture_output=True, text=True, preexec_fn=_refuse_exec_gain)
    assert r.returncode != 0 and "PermissionError" in r.stderr
    # and it reaches grandchildren (fork, then execve): llmtp's llama-server runs under it too
    r = subprocess.run(
        ["/bin/sh", "-c", f'"{sys.executable}" -c "{_WX}"; true'],
        capture_output=True,
        text=True,
        preexec_fn=_refuse_exec_gain,
    )
    assert "mapped" not in r.stdout and "PermissionError" in r.stderr


@pytest.mark.llama
@needs_mdwe
def test_foreground_serve_notifies_ready_under_mdwe(llmtp_home, tmp_path, llama_bin_dir, tiny_models):
    from llmtp.adapters.http import LlamaClient

    notify_path = str(tmp_path / "notify")
    port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(notify_path)
        sock.settimeout(180)
        env = {**os.environ, "LLMTP_HOME": str(llmtp_home), "NOTIFY_SOCKET": notify_path}
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llmtp",
                "serve",
                str(tiny_models["agree"]),
                "--server",
                str(llama_bin_dir / "llama-server"),
                "--port",
                str(port),
                "--ctx",
                "512",
                "--foreground",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_refuse_exec_gain,
        )
        try:
            message = sock.recv(4096).decode()
            assert message.startswith("READY=1\nSTATUS=serving "), message
            with LlamaClient(f"http://127.0.0.1:{port}") as c:  # ready means ready: it answers now
                assert c.completion("a b c", n_predict=4)["timings"]["predicted_n"] == 4
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _syscall_groups() -> dict[str, list[str]]:
    """`systemd-analyze syscall-filter`: `@group` headers, then indented members (syscalls or @groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True, text=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def _expand(groups: dict[str, list[str]], name: str, seen: set[str] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    out: set[str] = set()
    for member in groups.get(name, []):
        if member.startswith("@"):
            if member not in seen:
                seen.add(member)
                out |= _expand(groups, member, seen)
        else:
            out.add(member)
    return out


@pytest.mark.llama
@pytest.mark.skipif(
    not (shutil.which("strace") and shutil.which("systemd-analyze")), reason="needs strace and systemd-analyze"
)
def test_served_tree_stays_inside_the_units_syscall_filter(llmtp_home, tmp_path, llama_bin_dir, tiny_models):
    """Every system call and socket family `serve --foreground` and llama-server use while loading,
    answering and stopping is allowed by the unit's SystemCallFilter= and RestrictAddressFamilies=."""
    from llmtp.adapters import shipped
    from llmtp.adapters.http import LlamaClient

    unit = shipped.template_text("llmtp.service")
    filters = [ln.split("=", 1)[1].split() for ln in unit.splitlines() if ln.startswith("SystemCallFilter=")]
    families = next(
        ln.split("=", 1)[1].split() for ln in unit.splitlines() if ln.startswith("RestrictAddressFamilies=")
    )
    groups = _syscall_groups()
    allowed = set().union(*(_expand(groups, g) for g in filters[0]))
    denied = set().union(*(_expand(groups, g.lstrip("~")) for g in filters[1]))
    assert filters[1][0].startswith("~") and "mmap" in allowed and "bpf" in denied  # parsed as meant

    trace = tmp_path / "trace.txt"
    port = free_port()
    env = {**os.environ, "LLMTP_HOME": str(llmtp_home)}
    proc = subprocess.Popen(
        [
            "strace",
            "-f",
            "-qq",
            "-o",
            str(trace),
            sys.executable,
            "-m",
            "llmtp",
            "serve",
            str(tiny_models["agree"]),
            "--server",
            str(llama_bin_dir / "llama-server"),
            "--port",
            str(port),
            "--ctx",
            "512",
            "--foreground",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if line.startswith("[ready]"):
                break
        with LlamaClient(f"http://127.0.0.1:{port}") as c:
            assert c.completion("a b c", n_predict=4)["timings"]["predicted_n"] == 4
        llmtp_pid = next(p.pid for p in psutil.Process(proc.pid).children() if "python" in p.name())
        os.kill(llmtp_pid, signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = trace.read_text()
    used = set(re.findall(r"^\d+ +(?:<\.\.\. )?([a-z0-9_]+)[( ]", text, re.M))
    assert {"execve", "mmap", "socket", "accept4"} <= used  # the trace did see the server at work
    assert sorted(used - allowed) == [] and sorted(used & denied) == []
    assert set(re.findall(r"socket\((AF_[A-Z0-9]+)", text)) <= set(families)
