"""Warm start: which command lines qualify, when a recorded launch is (not) started, and handover."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from llmtp import paths
from llmtp.adapters.flock import Flock
from llmtp.adapters.ports import free_port
from llmtp.services.serve import command_line, warm_start
from llmtp.services.serve.command_line import SAFE_PATH
from llmtp.services.serve.warm_start import WarmStart

SERVE = ["serve", "m.gguf", "--port", "8123", "--foreground"]


@pytest.fixture
def env(tmp_path):
    return {"LLMTP_HOME": str(tmp_path / "home"), "PATH": os.environ.get("PATH", "")}


OPEN: list[WarmStart] = []


@pytest.fixture(autouse=True)
def no_leftover():
    yield
    while OPEN:
        OPEN.pop().close()


def started(args: list[str], env: dict) -> WarmStart:
    """A WarmStart as the entry point makes it, started; closed after the test."""
    w = WarmStart(args, env)
    w.start()
    OPEN.append(w)
    return w


def records(env: dict) -> Path:
    return warm_start.records_dir(paths.state_dir(env))


def _sleeper(tmp_path: Path) -> list[str]:
    """A stand-in for llama-server: a process that runs until stopped."""
    script = tmp_path / "fake-server.py"
    script.write_text("import time\nwhile True:\n    time.sleep(0.05)\n", encoding="utf-8")
    return [sys.executable, str(script), "--port"]


def _record(tmp_path: Path, env: dict, args: list[str], **over) -> dict:
    port = free_port()
    argv = [*_sleeper(tmp_path), str(port)]
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    record = {
        "argv": argv,
        "log_path": str(tmp_path / "state/logs/server.log"),
        "lock_path": str(tmp_path / "state/serve.lock"),
        "host": "127.0.0.1",
        "port": port,
        "stamps": [warm_start._stamp(str(model))],
        **over,
    }
    key = warm_start.invocation_key(args, os.getcwd(), env)
    path = records(env) / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return record


def test_only_serve_in_the_foreground_has_a_key(env):
    key = warm_start.invocation_key
    assert key(SERVE, "/w", env) is not None
    assert key(["serve", "m.gguf"], "/w", env) is None  # detached: the parent only spawns the foreground child
    assert key([*SERVE, "--dry-run"], "/w", env) is None
    assert key(["status", "--foreground"], "/w", env) is None
    assert key(["serve", "m.gguf", "--", "--foreground"], "/w", env) is None  # llama-server's flag, not ours
    assert key([*SERVE, "--", "--dry-run"], "/w", env) is not None
    # same words, other directory or other LLMTP_* settings: another command
    assert (
        len(
            {
                key(SERVE, "/w", env),
                key(SERVE, "/v", env),
                key(SERVE, "/w", {**env, "LLMTP_PORT": "1"}),
                key(SERVE, "/w", {**env, "HOME": "/elsewhere"}),
            }
        )
        == 3
    )


def test_foreground_args_is_what_the_detached_child_runs():
    fa = command_line.foreground_args
    assert fa(["serve", "m", "--json", "--port", "1"]) == ["serve", "m", "--port", "1", "--foreground"]
    assert fa(["serve", "m", "--", "--jinja"]) == ["serve", "m", "--foreground", "--", "--jinja"]
    # after `--` the words are llama-server's: passed as given (it refuses what it does not know)
    assert fa(["serve", "m", "--", "--json"]) == ["serve", "m", "--foreground", "--", "--json"]
    # the child's own command line has a key; the detached parent's has none
    assert warm_start.invocation_key(fa(["serve", "m"]), "/w", {}) is not None
    assert warm_start.invocation_key(["serve", "m"], "/w", {}) is None


def test_a_detached_serve_starts_its_recorded_child_at_once(tmp_path, env):
    fg = command_line.foreground_args(["serve", "m.gguf", "--port", "8123"])
    out = tmp_path / "state" / "logs" / "llmtp-serve-8123.out"
    _record(tmp_path, env, fg, detach_out=str(out))
    w = started(["serve", "m.gguf", "--port", "8123", "--json"], env)
    child = w._child
    assert w.warm is None and child is not None and child.args == [sys.executable, *SAFE_PATH, "-m", "llmtp", *fg]
    assert w.take_child(child.args, tmp_path / "elsewhere.out") is None  # not what detach wants
    assert child.wait(timeout=30) is not None  # stopped
    w = started(["serve", "m.gguf", "--port", "8123"], env)
    child = w._child
    assert w.take_child(child.args, out) is child and w._child is None
    child.wait(timeout=30)  # it fails on its own: m.gguf is no model (its output says why)
    assert out.is_file()


def test_records_live_in_the_state_dir_a_service_can_write(tmp_path):
    from llmtp.settings import load_settings

    assert records({"LLMTP_STATE_DIR": str(tmp_path / "s")}) == tmp_path / "s" / "warm-start"
    home = {"LLMTP_HOME": str(tmp_path / "h")}
    assert records(home) == load_settings(env=home).settings.state_dir / "warm-start"


@pytest.mark.parametrize("toml", ['state_dir = "{t}/from-file"', 'home = "{t}/file-home"', ""])
def test_the_state_dir_is_the_settings_own_config_toml_included(tmp_path, toml):
    """The entry point finds records where the full path wrote them: config.toml's state_dir (or
    home) counts before the CLI loads, as in load_settings."""
    from llmtp.settings import load_settings

    env = {"LLMTP_CONFIG_DIR": str(tmp_path / "cfg")}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.toml").write_text(toml.format(t=tmp_path), encoding="utf-8")
    assert paths.state_dir(env) == load_settings(env=env).settings.state_dir
    for over in ({"LLMTP_HOME": str(tmp_path / "h")}, {"LLMTP_STATE_DIR": str(tmp_path / "s")}):
        assert paths.state_dir({**env, **over}) == load_settings(env={**env, **over}).settings.state_dir


def test_a_record_under_a_configured_state_dir_starts_warm(tmp_path):
    env = {"LLMTP_CONFIG_DIR": str(tmp_path / "cfg"), "PATH": os.environ.get("PATH", "")}
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.toml").write_text(f'state_dir = "{tmp_path}/svc-state"', encoding="utf-8")
    rec = _record(tmp_path, env, SERVE)
    assert records(env) == tmp_path / "svc-state" / "warm-start"
    w = started(SERVE, env)
    assert w.warm is not None and w.warm.argv == rec["argv"]


def test_a_refused_pass_through_never_starts_warm(env):
    """A record made before serve refused `-- --host 0.0.0.0` must not bring that server up early."""
    args = [*SERVE, "--", "--host", "0.0.0.0"]
    assert warm_start.invocation_key(args, os.getcwd(), env) is None
    assert warm_start.invocation_key([*SERVE, "--", "--jinja"], os.getcwd(), env) is not None
    w = started(args, env)
    assert w.warm is None and w.running_pid() is None


def test_no_record_means_no_warm_start(env):
    w = started(SERVE, env)
    assert w.warm is None and w.running_pid() is None


def test_recorded_launch_starts_and_is_handed_over_when_the_plan_agrees(tmp_path, env):
    rec = _record(tmp_path, env, SERVE)
    w = started(SERVE, env)
    warm = w.warm
    assert warm is not None and warm.proc.poll() is None and warm.argv == rec["argv"]
    assert w.running_pid() == warm.proc.pid
    assert not Flock(rec["lock_path"]).acquire()  # the port is claimed from the start
    got, lock, note = w.handover(rec["argv"], Path(rec["log_path"]), Path(rec["lock_path"]))
    assert note is None
    assert got is warm and lock is warm.lock and lock.held
    assert w.running_pid() is None  # adopted: no longer the warm start's to stop
    w.close()
    assert warm.proc.poll() is None  # closing leaves an adopted process alone
    warm.proc.kill()
    warm.proc.wait()
    lock.release()


def test_a_different_plan_stops_the_warm_process_and_keeps_the_lock(tmp_path, env):
    rec = _record(tmp_path, env, SERVE)
    w = started(SERVE, env)
    warm = w.warm
    pid = warm.proc.pid
    got, lock, note = w.handover([*rec["argv"], "-c", "8192"], Path(rec["log_path"]), Path(rec["lock_path"]))
    assert (
        got is None and lock is warm.lock and note.endswith("not used: the plan of now differs")
    )  # the port stays ours for the launch the plan wants
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    lock.release()


def test_another_lock_path_releases_the_warm_lock(tmp_path, env):
    rec = _record(tmp_path, env, SERVE)
    w = started(SERVE, env)
    got, lock, _ = w.handover(rec["argv"], Path(rec["log_path"]), tmp_path / "other.lock")
    assert got is None and lock is None
    assert Flock(rec["lock_path"]).acquire()


@pytest.mark.parametrize("spoil", ["model changed", "port taken", "lock taken", "binary missing", "corrupt"])
def test_any_doubt_means_a_cold_start(tmp_path, env, spoil):
    rec = _record(tmp_path, env, SERVE)
    holders = []
    if spoil == "model changed":
        (tmp_path / "m.gguf").write_bytes(b"GGUF and more")
    elif spoil == "port taken":
        sock = socket.socket()
        sock.bind(("127.0.0.1", rec["port"]))
        sock.listen()
        holders.append(sock)
    elif spoil == "lock taken":
        lock = Flock(rec["lock_path"])
        assert lock.acquire()
        holders.append(lock)
    elif spoil == "binary missing":
        _record(tmp_path, env, SERVE, argv=[str(tmp_path / "no-such-server")])
    else:
        path = next(records(env).glob("*.json"))
        path.write_text("{not json", encoding="utf-8")
    assert started(SERVE, env).warm is None
    assert not any(
        str(tmp_path) in " ".join(p.info["cmdline"] or []) and "fake-server" in " ".join(p.info["cmdline"] or [])
        for p in psutil.process_iter(["cmdline"])
    )
    if spoil != "lock taken":
        assert Flock(rec["lock_path"]).acquire()  # nothing held on the way out
    for h in holders:
        h.close() if isinstance(h, socket.socket) else h.release()


def test_remember_writes_what_start_reads(tmp_path, env):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    state = paths.state_dir(env)
    assert (
        WarmStart(["serve", "m.gguf"], env).remember(
            argv=["x"],
            log_path=tmp_path / "l",
            lock_path=tmp_path / "k",
            host="h",
            port=1,
            files=[str(model)],
            state_dir=state,
        )
        is None
    )  # not a warm-capable invocation
    path = WarmStart(SERVE, env).remember(
        argv=["x", 1],
        log_path=tmp_path / "l",
        lock_path=tmp_path / "k",
        host="h",
        port=1,
        files=[str(model), str(tmp_path / "gone")],
        state_dir=state,
    )
    assert path.parent == records(env)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["argv"] == ["x", "1"] and data["stamps"] == [warm_start._stamp(str(model))]


def test_one_object_no_process_wide_state():
    """The warm start is the entry point's WarmStart: the module keeps no state of its own and
    installs no exit hook or signal handler (a killed process relies on the parent-death signal)."""
    import ast

    tree = ast.parse(Path(warm_start.__file__).read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)]
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not imported & {"atexit", "signal"}
    module_state = [
        t.id
        for n in tree.body
        if isinstance(n, (ast.Assign, ast.AnnAssign))
        for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
        if isinstance(t, ast.Name)
    ]
    assert module_state == ["ENV_PREFIX"]


def test_the_entry_point_stops_a_warm_server_its_command_did_not_take(tmp_path, env):
    """`serve` fails before the handover (here: m.gguf is no model): closing the entry point's
    WarmStart stops the warm server and frees the port's lock; no exit hook is involved."""
    rec = _record(tmp_path, env, SERVE)
    code = f"import sys; from llmtp.cli import entry; entry.run({SERVE!r})"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, cwd=os.getcwd()
    )
    assert done.returncode != 0, done.stderr
    assert not any(
        "fake-server" in " ".join(p.info["cmdline"] or [])
        and str(tmp_path) in " ".join(p.info["cmdline"] or [])
        and p.status() != psutil.STATUS_ZOMBIE
        for p in psutil.process_iter(["cmdline"])
    )
    assert Flock(rec["lock_path"]).acquire()


def test_the_warm_path_imports_nothing_heavy():
    code = (
        "import sys, llmtp.services.serve.warm_start, llmtp.cli.entry; "
        "print([m for m in ('pydantic', 'typer', 'click', 'httpx', 'psutil', 'rich', 'filelock', 'numpy') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_sigterm_before_the_cli_loads_stops_the_warm_server(tmp_path, env):
    """The window between the warm spawn and the supervisor's own handlers: no orphan either (the
    warm server gets the parent-death signal; no handler of ours runs)."""
    rec = _record(tmp_path, env, SERVE)
    code = (
        "import sys, time; from llmtp.services.serve import warm_start as w; "
        f"x = w.WarmStart({SERVE!r}, {env!r}); x.start(); print(x.warm.proc.pid, flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server_pid = int(proc.stdout.readline())
    proc.terminate()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and psutil.pid_exists(server_pid)
        and psutil.Process(server_pid).status() != psutil.STATUS_ZOMBIE
    ):
        time.sleep(0.05)
    assert not psutil.pid_exists(server_pid) or psutil.Process(server_pid).status() == psutil.STATUS_ZOMBIE
    assert Flock(rec["lock_path"]).acquire()


def test_a_sigkilled_entry_point_takes_its_warm_server_along(tmp_path, env):
    """The warm server is spawned by the entry point, which then becomes the supervisor: the
    parent-death signal set at that spawn still covers it (no handler runs on SIGKILL)."""
    _record(tmp_path, env, SERVE)
    code = (
        "import sys, time; from llmtp.services.serve import warm_start as w; "
        f"x = w.WarmStart({SERVE!r}, {env!r}); x.start(); print(x.warm.proc.pid, flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server_pid = int(proc.stdout.readline())
    proc.kill()
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while (
        time.monotonic() < deadline
        and psutil.pid_exists(server_pid)
        and psutil.Process(server_pid).status() != psutil.STATUS_ZOMBIE
    ):
        time.sleep(0.05)
    alive = psutil.pid_exists(server_pid) and psutil.Process(server_pid).status() != psutil.STATUS_ZOMBIE
    if alive:
        os.kill(server_pid, 9)
    assert not alive, "the warm server outlived its SIGKILLed parent"


# --- against the real llama-server ------------------------------------------------------------------


def _serve_until_ready(argv: list[str], env: dict, port: int, timeout: float = 60) -> subprocess.Popen:
    """Until /health is 200 and llmtp itself has seen it (its state file says ready)."""
    import httpx

    state = Path(env["LLMTP_HOME"]) / "state" / f"serve-{port}.json"

    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while time.monotonic() < deadline:
            assert proc.poll() is None, f"llmtp serve exited with {proc.returncode}"
            try:
                if (
                    client.get(f"http://127.0.0.1:{port}/health").status_code == 200
                    and json.loads(state.read_text(encoding="utf-8"))["state"] == "ready"
                ):
                    return proc
            except (httpx.HTTPError, OSError, ValueError):
                pass
            time.sleep(0.02)
    raise AssertionError("not ready")


def _llmtp_serve(llama_bin_dir: Path, model: Path, port: int, *tail: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "llmtp",
        "serve",
        str(model),
        "--server",
        str(llama_bin_dir / "llama-server"),
        "--port",
        str(port),
        *tail,
    ]


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=30)


@pytest.mark.llama
def test_detached_serve_twice_is_warm_the_second_time_and_stops_clean(llama_bin_dir, tiny_models, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "LLMTP_HOME": str(home)}
    port = free_port()
    model = tiny_models["plain"]
    argv = _llmtp_serve(llama_bin_dir, model, port, "--json")
    stop = [sys.executable, "-m", "llmtp", "stop", "--port", str(port)]
    sup_log = home / "state" / "logs" / f"llmtp-serve-{port}.log"
    for _attempt in (1, 2):
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["state"] == "ready"
        import httpx

        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
        assert subprocess.run(stop, env=env, capture_output=True, text=True, timeout=60).returncode == 0
        assert not _servers_of(model, home)
    assert sup_log.read_text(encoding="utf-8").count("adopted the warm-started llama-server") == 1


@pytest.mark.llama
def test_a_repeat_serve_adopts_its_warm_server_and_a_changed_plan_replaces_it(llama_bin_dir, tiny_models, tmp_path):
    from llmtp.core.launch import MtpSettings
    from llmtp.services.stores import mtp_settings
    from llmtp.settings import load_settings

    home = tmp_path / "home"
    env = {**os.environ, "LLMTP_HOME": str(home)}
    port = free_port()
    model = tiny_models["agree"]
    argv = _llmtp_serve(llama_bin_dir, model, port, "--foreground")
    sup_log = home / "state" / "logs" / f"llmtp-serve-{port}.log"
    state = home / "state" / f"serve-{port}.json"

    _stop(_serve_until_ready(argv, env, port))  # cold: plans, launches, records the launch
    assert "adopted" not in sup_log.read_text(encoding="utf-8")
    assert len(list((home / "state" / "warm-start").glob("*.json"))) == 1

    proc = _serve_until_ready(argv, env, port)  # warm: the same llama-server, started before the CLI
    try:
        assert sup_log.read_text(encoding="utf-8").count("adopted the warm-started llama-server") == 1
        first = json.loads(state.read_text(encoding="utf-8"))
        assert "--spec-draft-n-max" in first["argv"]
    finally:
        _stop(proc)

    # `llmtp tune` changed this model's MTP settings: the warm start runs the old command, the full
    # path plans the new one, and only the new one may serve
    settings = load_settings(env={"LLMTP_HOME": str(home)}).settings
    mtp_settings.save(settings, mtp_settings.model_key(model), MtpSettings(enabled=True, n_max=2))
    proc = _serve_until_ready(argv, env, port)
    try:
        text = sup_log.read_text(encoding="utf-8")
        assert "not used: the plan of now differs" in text
        now = json.loads(state.read_text(encoding="utf-8"))
        i = now["argv"].index("--spec-draft-n-max")
        assert now["argv"][i + 1] == "2"
        assert [p.pid for p in _servers_of(model, home)] == [now["server_pid"]]  # the warm one is gone
    finally:
        _stop(proc)
    assert not _servers_of(model, home)


def _servers_of(model: Path, home: Path | None = None) -> list[psutil.Process]:
    """llama-servers of `model`; with `home`, only those started under that LLMTP_HOME (another test or
    pytest run on the machine may serve the same test bed model at the same time)."""
    out = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].endswith("llama-server") and str(model) in cmd and p.status() != psutil.STATUS_ZOMBIE:
            try:
                mine = home is None or p.environ().get("LLMTP_HOME") == str(home)
            except psutil.Error:  # gone meanwhile
                mine = False
            if mine:
                out.append(p)
    return out
