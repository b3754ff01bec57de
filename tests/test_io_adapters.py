"""The adapters the services now do their I/O through (issue 16 item 3), each against the real thing:
files, links and trees on disk, real child processes (a zombie among them), a real signal, cuBLAS
looked for in real directories."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from llmtp.adapters import cpuinfo, files, proctree
from llmtp.adapters.signals import on_stop_signals
from llmtp.adapters.toolchains import cublas_found, cuda_toolkit_root
from llmtp.services.stores import serve_records as st

# --- a zombie is not alive, and one answer says so ---------------------------------------------------


@pytest.fixture
def zombie():
    """A child of ours that has exited and is not reaped yet: a zombie until we wait for it."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with open(f"/proc/{proc.pid}/stat", encoding="ascii") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                break
        time.sleep(0.02)
    else:
        pytest.fail("the child did not become a zombie")
    yield proc.pid
    proc.wait()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_zombie_is_not_alive_to_any_of_llmtps_process_checks(zombie, tmp_path):
    assert os.path.exists(f"/proc/{zombie}")  # the pid still exists...
    assert not proctree.pid_alive(zombie)  # ...but it is not a live process
    assert proctree.identity(zombie) is None
    assert zombie not in proctree.group_pids(os.getpgid(0))
    # a serve record whose llmtp is now that zombie is not live: status and stop treat it as gone
    record = st.ServeState(
        llmtp_pid=zombie,
        host="127.0.0.1",
        port=1,
        model="m",
        log_path="x",
        llmtp_proc=st.ProcRecord(pid=zombie, create_time=0.0, cmdline=[sys.executable]),
    )
    assert st.supervisor_of(record) is None


def test_a_live_process_is_alive_and_ours_is_stopped(tmp_path):
    proc = subprocess.Popen(["sleep", "1000"])
    try:
        assert proctree.pid_alive(proc.pid)
        # right after Popen returns, the child may still be inside exec: /proc/PID/cmdline reads empty
        # until the kernel has set up the new program's arguments, so wait for them
        deadline = time.monotonic() + 5
        while (
            (ident := proctree.identity(proc.pid, child_of=os.getpid())) is not None
            and not ident.cmdline
            and time.monotonic() < deadline
        ):
            time.sleep(0.01)
        assert ident is not None and ident.cmdline == ("sleep", "1000")
        live = proctree.matches(ident)
        assert live is not None
        assert proctree.terminate_and_wait(live, 5)
        assert not proctree.pid_alive(proc.pid)  # gone (psutil's wait reaped our child)
    finally:
        proc.kill()
        proc.wait()


def test_terminate_and_wait_says_false_when_the_process_outlives_the_wait():
    code = (
        "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline().strip() == b"1"  # SIGTERM is ignored from here on (and exec is done)
        live = proctree.matches(proctree.identity(proc.pid))
        assert live is not None
        assert proctree.terminate_and_wait(live, 0.3) is False
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


# --- signals ---------------------------------------------------------------------------------------


def test_stop_signals_call_back_and_the_old_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    calls = []
    with on_stop_signals(lambda: calls.append(1)):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert calls == [1, 1]
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with on_stop_signals(lambda: calls.append(2), install=False):
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# --- files, links, trees, disks ----------------------------------------------------------------------


def test_switch_link_points_a_link_atomically_and_read_link_reads_it(tmp_path):
    assert files.read_link(tmp_path / "current") is None  # no link
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    files.switch_link(tmp_path / "current", "a")
    assert files.read_link(tmp_path / "current") == "a"
    files.switch_link(tmp_path / "current", "b")
    assert files.read_link(tmp_path / "current") == "b"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "current"]  # no temp link left
    (tmp_path / "plain").write_text("x")
    assert files.read_link(tmp_path / "plain") is None  # a file is not a link


def test_tree_helpers(tmp_path):
    tree = tmp_path / "t"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_bytes(b"x" * 100)
    (tree / "g").write_bytes(b"y" * 20)
    files.symlink("/nonexistent-target", tree / "dangling")  # counted as a link, never followed
    assert files.tree_size(tree) == 120 + len("/nonexistent-target")
    (tree / "g").chmod(0o755)
    files.copy_file(tree / "g", tmp_path / "g2")
    assert (tmp_path / "g2").read_bytes() == b"y" * 20 and os.access(tmp_path / "g2", os.X_OK)
    files.move(tree, tmp_path / "moved")
    assert not tree.exists() and (tmp_path / "moved" / "sub" / "f").is_file()
    files.remove_tree(tmp_path / "moved")
    assert not (tmp_path / "moved").exists()
    with pytest.raises(FileNotFoundError):
        files.remove_tree(tmp_path / "moved")
    files.remove_tree(tmp_path / "moved", ignore_errors=True)


def test_free_bytes_and_writable(tmp_path):
    free = files.free_bytes(tmp_path / "not" / "made" / "yet")  # the nearest existing parent counts
    assert free is not None and free > 0 and abs(free - files.free_bytes(tmp_path)) < 1 << 26
    assert files.writable(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    assert files.writable(ro) == (os.geteuid() == 0)


def test_write_text_atomic_takes_a_mode_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        files.write_text_atomic(tmp_path / "unit.service", "[Unit]\n", mode=0o644)
        files.write_text_atomic(tmp_path / "private.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "unit.service").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.json").stat().st_mode) == 0o600
    assert (tmp_path / "unit.service").read_text() == "[Unit]\n"


def test_tail_text(tmp_path):
    log = tmp_path / "server.log"
    log.write_bytes(b"a" * 1000 + b"\xff" + b"end\n")
    assert files.tail_text(log, 5) == "\ufffdend\n"
    assert files.tail_text(log, 1 << 20).startswith("a" * 1000)
    assert files.tail_text(tmp_path / "missing.log", 10) == ""


# --- machine facts -------------------------------------------------------------------------------------


def test_cpu_facts():
    cores = cpuinfo.usable_cores()
    assert cores is not None and 1 <= cores <= (os.cpu_count() or cores)
    assert cpuinfo.machine() in {None, *{os.uname().machine}}


def test_cublas_is_found_beside_the_toolkit_or_through_the_environment(tmp_path):
    toolkit = tmp_path / "cuda-13.0"
    (toolkit / "bin").mkdir(parents=True)
    nvcc = toolkit / "bin" / "nvcc"
    nvcc.write_text("#!/bin/sh\n")
    wrapper_dir = tmp_path / "wrap"
    wrapper_dir.mkdir()
    (wrapper_dir / "nvcc").symlink_to(nvcc)  # nvcc on PATH as a link: the toolkit is where it points
    assert cuda_toolkit_root(str(wrapper_dir / "nvcc")) == toolkit.resolve()
    if cublas_found(toolkit, env={}):
        pytest.skip("this machine has cuBLAS in a system dir: the negative case cannot be seen here")
    (toolkit / "targets" / "x86_64-linux" / "lib").mkdir(parents=True)
    (toolkit / "targets" / "x86_64-linux" / "lib" / "libcublas.so.13").write_bytes(b"")
    assert cublas_found(toolkit, env={})
    elsewhere = tmp_path / "other"
    (elsewhere / "lib64").mkdir(parents=True)
    (elsewhere / "lib64" / "libcublas_static.a").write_bytes(b"")
    bare = tmp_path / "bare"
    bare.mkdir()
    assert not cublas_found(bare, env={})
    assert cublas_found(bare, env={"CUDA_PATH": str(elsewhere)})
    assert cublas_found(bare, env={"CUDAToolkit_ROOT": str(elsewhere)})
