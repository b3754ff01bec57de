"""Only our own processes are ever signalled; none outlives its supervisor; state stays private and bounded.

Records pointing at unrelated processes (pid reuse after a crash or a reboot), at pids 0, -1 and 1,
and a SIGKILLed supervisor, against real processes (`sleep`, a small supervisor script); the same
against the real llama-server is in the `llama` tests at the end.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from llmtp.adapters import proctree
from llmtp.adapters.files import replaced_under
from llmtp.adapters.flock import Flock
from llmtp.adapters.ports import free_port, port_free
from llmtp.adapters.spawn import open_private, private_dir, rotate_live, spawn_logged
from llmtp.cli.main import app
from llmtp.services.stores import serve_records as st
from llmtp.settings import load_settings


@pytest.fixture
def state_dir() -> Path:
    return Path(load_settings().settings.state_dir)


@pytest.fixture
def sleeper():
    """An unrelated live process: what a stale record's pid may name after pid reuse."""
    proc = subprocess.Popen(["sleep", "1000"])
    yield proc
    proc.kill()
    proc.wait()


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def _gone(pid: int) -> bool:
    return not proctree.pid_alive(pid)


def _write_record(state_dir: Path, port: int, **fields) -> Path:
    private_dir(state_dir)
    record = {"llmtp_pid": 4242, "host": "127.0.0.1", "port": port, "model": "m.gguf", "log_path": "x.log", **fields}
    path = st.state_path(state_dir, port)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def _stop(port: int):
    return CliRunner().invoke(app, ["stop", "--port", str(port)])


@pytest.fixture
def no_signal_to_low_pids(monkeypatch):
    """Safety net for the pid 0/-1/1 cases: a signal there would hit pytest's group, or everything."""
    sent = []
    real_kill, real_killpg = os.kill, os.killpg

    def kill(pid, sig):
        if pid <= 1 and sig != 0:
            sent.append(("kill", pid, sig))
            return
        real_kill(pid, sig)

    def killpg(pgid, sig):
        if pgid <= 1:
            sent.append(("killpg", pgid, sig))
            return
        real_killpg(pgid, sig)

    monkeypatch.setattr(os, "kill", kill)
    monkeypatch.setattr(os, "killpg", killpg)
    return sent


# --- item 4: stop signals only what is proven ours -------------------------------------------------


def _identity(pid: int, **change) -> dict:
    ident = proctree.identity(pid)
    assert ident is not None
    rec = {"pid": pid, "create_time": ident.create_time, "cmdline": list(ident.cmdline)}
    return {**rec, **change}


@pytest.mark.parametrize("how", ["no identity recorded", "another start time", "another command line"])
def test_stop_never_signals_an_unrelated_process_and_drops_the_stale_record(state_dir, sleeper, how):
    port = free_port()
    ident = {
        "no identity recorded": None,
        "another start time": _identity(sleeper.pid, create_time=time.time() - 3600),
        "another command line": _identity(sleeper.pid, cmdline=["llmtp", "serve", "m.gguf"]),
    }[how]
    path = _write_record(
        state_dir, port, llmtp_pid=sleeper.pid, server_pid=sleeper.pid, llmtp_proc=ident, server_proc=ident
    )
    Path(st.lock_path(state_dir, port)).touch()
    r = _stop(port)
    assert r.exit_code == 0, r.output
    time.sleep(0.2)
    assert sleeper.poll() is None and os.getpgid(sleeper.pid) == os.getpgid(0)  # untouched, group too
    assert r.stdout.strip() == "no server running"
    [note] = [ln for ln in r.stderr.splitlines() if ln.startswith("note:")]
    assert (
        note.startswith(
            f"note: dropped the stale record for port {port} (llmtp pid {sleeper.pid}, llama-server pid {sleeper.pid})"
        )
        and "nothing was signalled" in note
    )
    assert not path.exists() and not st.lock_path(state_dir, port).exists()


@pytest.mark.parametrize("pid", [0, -1, 1])
def test_records_naming_pid_0_minus_1_or_1_are_stale(state_dir, no_signal_to_low_pids, pid):
    port = free_port()
    fake = {"pid": pid, "create_time": 0.0, "cmdline": ["llmtp"]}
    path = _write_record(state_dir, port, llmtp_pid=pid, server_pid=pid, llmtp_proc=fake, server_proc=fake)
    r = _stop(port)
    assert r.exit_code == 0, r.output
    assert no_signal_to_low_pids == []
    assert "dropped the stale record" in r.stderr and not path.exists()
    status = CliRunner().invoke(app, ["status"])
    assert status.stdout.strip() == "no server running" and no_signal_to_low_pids == []


def test_status_drops_a_stale_record_without_signalling(state_dir, sleeper):
    port = free_port()
    path = _write_record(
        state_dir,
        port,
        llmtp_pid=sleeper.pid,
        server_pid=sleeper.pid,
        llmtp_proc=_identity(sleeper.pid, create_time=1.0),
    )
    r = CliRunner().invoke(app, ["status", "--json"])
    assert r.exit_code == 0 and json.loads(r.stdout) == []
    assert f"dropped the stale record for port {port}" in r.stderr
    assert not path.exists() and sleeper.poll() is None


def test_group_signals_refuse_the_callers_group_init_and_everything():
    for pgid in (0, 1, -1):
        with pytest.raises(ValueError):
            proctree.signal_group(pgid, signal.SIGTERM)
    assert proctree.identity(0) is None and proctree.identity(1) is None and not proctree.pid_alive(0)


SUPERVISOR = textwrap.dedent("""
    import json, os, signal, subprocess, sys, time
    from pathlib import Path
    from llmtp.adapters.spawn import spawn_logged
    from llmtp.services.stores import serve_records as st

    state_dir, port, mode, argv = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
    claim = st.PortClaim(state_dir, port).acquire()
    log = st.log_path(state_dir, port)
    if mode == "pdeathsig":
        server, _ = spawn_logged(argv, log)
    else:  # what an llmtp without the parent-death signal left behind
        server = subprocess.Popen(argv, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = st.ServeState(llmtp_pid=os.getpid(), server_pid=server.pid, state="ready", host="127.0.0.1",
                           port=port, model="m.gguf", log_path=str(log))
    claim.write(record)

    def stop(*_):
        os.killpg(server.pid, signal.SIGTERM)
        server.wait()
        claim.release()
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print(server.pid, flush=True)
    time.sleep(1000)
""")


def _supervisor(
    state_dir: Path, port: int, mode: str, argv: tuple[str, ...] = ("sleep", "1000")
) -> tuple[subprocess.Popen, int]:
    """A small stand-in for `llmtp serve --foreground`: claims the port, runs `argv` as its server
    (`mode` "pdeathsig": spawned as llmtp spawns llama-server; "orphan": without the parent-death
    signal), records both, stops both on SIGTERM."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(state_dir), str(port), mode, json.dumps(argv)],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    assert line.strip().isdigit(), f"supervisor script failed: {proc.wait()}"
    return proc, int(line)


def test_stop_stops_a_proven_supervisor_and_leaves_no_lock_behind(state_dir):
    port = free_port()
    sup, server = _supervisor(state_dir, port, "pdeathsig")
    try:
        record = st.read_state(state_dir, port)
        assert record is not None and record.server_proc.pid == server  # recorded with its identity
        r = _stop(port)
        assert r.exit_code == 0, r.output
        assert r.stdout.strip() == f"stopped port(s) {port}" and "note:" not in r.stderr
        assert sup.wait(10) == 0 and _wait(lambda: _gone(server), 5)
    finally:
        if sup.poll() is None:
            sup.kill()
    assert sorted(p.name for p in state_dir.iterdir()) == ["logs"]  # no json, no lock file


# --- item 5: a SIGKILLed supervisor leaves nothing running -----------------------------------------


def test_a_sigkilled_supervisor_takes_its_server_with_it(state_dir):
    port = free_port()
    sup, server = _supervisor(state_dir, port, "pdeathsig")
    os.kill(sup.pid, signal.SIGKILL)
    sup.wait()
    assert _wait(lambda: _gone(server), 5), "the server outlived its supervisor"
    r = _stop(port)
    assert r.stdout.strip() == "no server running"
    assert "dropped the stale record" in r.stderr  # the server was already gone: nothing to signal
    assert not st.state_path(state_dir, port).exists() and not st.lock_path(state_dir, port).exists()


@pytest.mark.parametrize("command", ["stop", "status", "serve"])
def test_an_orphaned_server_is_found_and_stopped(state_dir, command):
    """Second line of defence (a server started without the parent-death signal, or one that ignores
    it): the next stop, status or serve stops it, because its record proves it is ours."""
    port = free_port()
    sup, server = _supervisor(state_dir, port, "orphan")
    os.kill(sup.pid, signal.SIGKILL)
    sup.wait()
    time.sleep(0.2)
    assert not _gone(server)  # orphaned
    try:
        if command == "serve":  # what serve_foreground does first: claim the port
            claim = st.PortClaim(state_dir, port).acquire()
            notes = claim.notes
            claim.release()
        else:
            r = CliRunner().invoke(app, [command, *(["--port", str(port)] if command == "stop" else [])])
            assert r.exit_code == 0, r.output
            notes = [ln.removeprefix("note: ") for ln in r.stderr.splitlines()]
            if command == "stop":
                assert r.stdout.strip() == f"stopped port(s) {port}"
        assert notes == [
            f"stopped llama-server (pid {server}) left running on port {port} by an llmtp that died (pid {sup.pid})"
        ]
        assert _gone(server)
    finally:
        if not _gone(server):
            os.kill(server, signal.SIGKILL)
    assert not st.state_path(state_dir, port).exists()


# --- item 11: private files, bounded logs, no stale locks ------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_dir_logs_and_locks_are_private_from_creation(state_dir, tmp_path):
    old = os.umask(0o022)
    try:
        port = free_port()
        sup, server = _supervisor(state_dir, port, "pdeathsig")
        try:
            assert _mode(state_dir) == 0o700 and _mode(state_dir / "logs") == 0o700
            assert _mode(st.lock_path(state_dir, port)) == 0o600
            assert _mode(st.log_path(state_dir, port)) == 0o600
            assert _mode(st.state_path(state_dir, port)) == 0o600
        finally:
            _stop(port)
        from llmtp.services.serve.warm_start import WarmStart

        warm = WarmStart(["serve", "m", "--foreground"], {"LLMTP_STATE_DIR": str(state_dir)})
        rec = warm.remember(
            argv=["x"],
            log_path=tmp_path / "l",
            lock_path=tmp_path / "k",
            host="h",
            port=1,
            files=[],
            state_dir=state_dir,
        )
        assert _mode(rec.parent) == 0o700 and _mode(rec) == 0o600
        fresh = tmp_path / "a" / "b" / "state"
        assert private_dir(fresh) == fresh
        assert _mode(tmp_path / "a") == 0o700 and _mode(fresh) == 0o700
        with open_private(fresh / "x.log") as f:
            f.write(b"x")
        assert _mode(fresh / "x.log") == 0o600
    finally:
        os.umask(old)


def test_stale_lock_files_are_removed_when_a_port_is_claimed(state_dir):
    private_dir(state_dir)
    stale = [st.lock_path(state_dir, p) for p in (41001, 41002)]
    for path in stale:
        path.touch()
    held = Flock(st.lock_path(state_dir, 41003))
    assert held.acquire()  # a live serve's lock
    claim = st.PortClaim(state_dir, 41004).acquire()
    try:
        assert not any(p.exists() for p in stale)
        assert held.path.exists() and not Flock(held.path).acquire()
    finally:
        claim.release()
        held.release()
    assert not st.lock_path(state_dir, 41004).exists()  # a clean release removes its own


def test_a_lock_removed_by_its_holder_is_not_held_twice(tmp_path):
    path = tmp_path / "serve-1.lock"
    first = Flock(path)
    assert first.acquire()
    racer = os.open(path, os.O_RDWR)  # opened before the holder removed it
    first.release(remove=True)
    assert not path.exists()
    second = Flock(path)
    assert second.acquire()  # a new file
    import fcntl

    fcntl.flock(racer, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the racer "holds" only the removed inode...
    try:
        assert not Flock(path).acquire()  # ...which Flock would have noticed: the path is held once
    finally:
        os.close(racer)
        second.release()


def test_live_rotation_keeps_a_running_writers_log_bounded(tmp_path):
    log = tmp_path / "logs" / "server.log"
    writer, _ = spawn_logged(["sh", "-c", "while :; do echo 0123456789abcdef0123456789abcdef; done"], log)
    try:
        assert _wait(lambda: log.stat().st_size > 64 * 1024, 10)
        assert rotate_live(log, 64 * 1024, keep=2)
        time.sleep(0.1)
        assert rotate_live(log, 1, keep=2)
        time.sleep(0.1)
        size = log.stat().st_size
        assert size < 10 * 2**20
        with open(log, "rb") as f:  # the writer goes on at the start of the emptied file: no hole
            assert f.read(33) == b"0123456789abcdef0123456789abcdef\n"
        assert (tmp_path / "logs" / "server.log.1").stat().st_size > 0
        assert (tmp_path / "logs" / "server.log.2").stat().st_size > 64 * 1024
        assert not (tmp_path / "logs" / "server.log.3").exists()
        assert _mode(tmp_path / "logs" / "server.log.1") == 0o600
    finally:
        os.killpg(writer.pid, signal.SIGKILL)
        writer.wait()


# --- against the real llama-server --------------------------------------------------------------


def _llmtp(*args: str) -> list[str]:
    return [sys.executable, "-m", "llmtp", *args]


@pytest.mark.llama
def test_sigkilled_detached_serve_leaves_no_llama_server(llama_bin_dir, tiny_models, state_dir):
    port = free_port()
    r = subprocess.run(
        _llmtp(
            "serve",
            str(tiny_models["plain"]),
            "--server",
            str(llama_bin_dir / "llama-server"),
            "--port",
            str(port),
            "--ctx",
            "512",
            "--json",
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    server = started["server_pid"]
    try:
        assert psutil.Process(server).name() == "llama-server"
        os.kill(started["pid"], signal.SIGKILL)
        assert _wait(lambda: _gone(server), 10), "llama-server outlived its SIGKILLed supervisor"
        assert _wait(lambda: port_free("127.0.0.1", port), 5)
        stop = CliRunner().invoke(app, ["stop", "--port", str(port)])
        assert stop.exit_code == 0 and stop.stdout.strip() == "no server running"
        assert "dropped the stale record" in stop.stderr
        assert not st.state_path(state_dir, port).exists() and not st.lock_path(state_dir, port).exists()
        assert _mode(state_dir) == 0o700 and _mode(st.log_path(state_dir, port)) == 0o600
        assert _mode(st.supervisor_log_path(state_dir, port)) == 0o600
    finally:
        if not _gone(server):
            os.kill(server, signal.SIGKILL)


@pytest.mark.llama
def test_an_orphaned_llama_server_is_stopped_by_the_next_stop(llama_bin_dir, tiny_models, state_dir):
    port = free_port()
    argv = (
        str(llama_bin_dir / "llama-server"),
        "-m",
        str(tiny_models["plain"]),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-c",
        "512",
        "-np",
        "1",
        "-t",
        "1",
    )
    sup, server = _supervisor(state_dir, port, "orphan", argv)
    try:
        assert _wait(lambda: not port_free("127.0.0.1", port), 30), "llama-server never listened"
        os.kill(sup.pid, signal.SIGKILL)
        sup.wait()
        assert not _gone(server)  # orphaned, holding the port
        stop = CliRunner().invoke(app, ["stop", "--port", str(port)])
        assert stop.exit_code == 0, stop.output
        assert stop.stdout.strip() == f"stopped port(s) {port}"
        assert stop.stderr.strip() == (
            f"note: stopped llama-server (pid {server}) left running on port {port} "
            f"by an llmtp that died (pid {sup.pid})"
        )
        assert _gone(server) and _wait(lambda: port_free("127.0.0.1", port), 5)
        again = CliRunner().invoke(app, ["stop", "--port", str(port)])
        assert again.stdout.strip() == "no server running" and again.stderr == ""
    finally:
        if not _gone(server):
            os.kill(server, signal.SIGKILL)


@pytest.mark.llama
def test_the_supervisor_keeps_llama_servers_log_bounded_while_it_runs(
    llama_bin_dir, tiny_models, state_dir, monkeypatch
):
    import threading

    from llmtp.adapters import spawn
    from llmtp.adapters.http import LlamaClient
    from llmtp.core.capabilities import Capabilities
    from llmtp.core.launch import LaunchSpec, MtpSettings
    from llmtp.core.launch_plan import plan_of_spec
    from llmtp.core.probe import parse_help
    from llmtp.core.supervisor import State
    from llmtp.services.serve.foreground import ServeHooks, serve_foreground
    from llmtp.services.serve.status import status_report
    from llmtp.services.serve.supervisor import SupervisorConfig

    help_text = (Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt").read_text(encoding="utf-8")
    flags, enums = parse_help(help_text)
    caps = Capabilities(flags=flags, enums=enums)
    monkeypatch.setattr(spawn, "LOG_MAX_BYTES", 16 * 1024)
    monkeypatch.setattr(spawn, "LIVE_ROTATE_EVERY_S", 0.2)
    port = free_port()
    spec = LaunchSpec(
        model=str(tiny_models["agree"]),
        port=port,
        ctx_size=512,
        parallel=1,
        threads=1,
        mtp=MtpSettings(enabled=True),
        extra_args=["-lv", "4"],
    )
    sups = []
    thread = threading.Thread(
        target=lambda: serve_foreground(
            plan_of_spec(spec, caps, str(llama_bin_dir / "llama-server")),
            state_dir=state_dir,
            config=SupervisorConfig(ready_timeout_s=60),
            hooks=ServeHooks(install_signals=False, on_event=lambda sup, msg: sups.append(sup)),
        ),
        daemon=True,
    )
    thread.start()
    log = st.log_path(state_dir, port)
    try:
        assert _wait(lambda: sups and sups[-1].state is State.READY, 60)
        with LlamaClient(f"http://127.0.0.1:{port}") as client:
            for i in range(12):  # ~5.7 kB each at -lv 4: several times the 16 KiB bound
                client.completion(f"a b c {i}", n_predict=16)
                time.sleep(0.1)
        time.sleep(0.5)
        assert log.stat().st_size < 3 * 16 * 1024
        assert (log.parent / (log.name + ".1")).stat().st_size > 16 * 1024
        [entry] = status_report(state_dir)  # the last request is still read from the rotated log
        assert entry["last_request"]["tokens"] == 16
        assert sups[-1].restarts == 0 and sups[-1].proc.alive()
    finally:
        if sups:
            sups[-1].request_stop()
        thread.join(30)
    assert not thread.is_alive()


def test_a_log_reader_notices_both_kinds_of_rotation(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("a\n" * 100)
    with open(log, encoding="utf-8") as f:
        f.read()
        assert not replaced_under(log, f)
        assert rotate_live(log, 10, keep=2)
        assert replaced_under(log, f)  # truncated under the reader
    with open(log, encoding="utf-8") as f:
        log.replace(tmp_path / "server.log.1")
        log.write_text("new\n")
        assert replaced_under(log, f)  # renamed away
