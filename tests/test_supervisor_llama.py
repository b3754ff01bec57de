"""The supervisor against the real llama-server and the tiny models: ready, heal, give up, refuse."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from llmtp.adapters.http import LlamaClient
from llmtp.adapters.ports import free_port
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec, MtpSettings
from llmtp.core.launch_plan import plan_of_spec
from llmtp.core.probe import parse_help
from llmtp.core.restart import RestartPolicy
from llmtp.core.supervisor import State
from llmtp.errors import ServeError
from llmtp.services.serve import foreground, launch
from llmtp.services.serve.supervisor import SupervisorConfig

pytestmark = pytest.mark.llama
HELP = Path(__file__).parent / "fixtures/llama/b11434-cpu/server-help.txt"


@pytest.fixture(scope="module")
def caps() -> Capabilities:
    flags, enums = parse_help(HELP.read_text(encoding="utf-8"))
    return Capabilities(flags=flags, enums=enums)


@pytest.fixture
def server(llama_bin_dir) -> Path:
    return llama_bin_dir / "llama-server"


def launched(server: Path, caps: Capabilities, spec: LaunchSpec, **kw):
    """serve.launched for the plan around `spec` (these tests decide the launch themselves)."""
    return launch.launched(plan_of_spec(spec, caps, str(server)), **kw)


def serve_foreground(
    server: Path,
    caps: Capabilities,
    spec: LaunchSpec,
    *,
    state_dir: Path,
    config=None,
    install_signals: bool = True,
    on_event=None,
):
    return foreground.serve_foreground(
        plan_of_spec(spec, caps, str(server)),
        state_dir=state_dir,
        config=config,
        hooks=foreground.ServeHooks(install_signals=install_signals, on_event=on_event),
    )


def _spec(model: Path, **kw) -> LaunchSpec:
    return LaunchSpec(model=str(model), port=free_port(), ctx_size=512, parallel=1, threads=1, **kw)


def _servers_of(model: Path) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter(["cmdline"]):
        if str(model) in (p.info["cmdline"] or []):
            out.append(p)
    return out


def _wait(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_launched_serves_a_completion_then_stops(server, caps, tiny_models, tmp_path):
    spec = _spec(tiny_models["plain"])
    with launched(server, caps, spec, log_path=tmp_path / "s.log", ready_timeout=60) as proc:
        pid = proc.pid
        with proc.client() as c:
            out = c.completion("a b c", n_predict=4, seed=1)
        assert out["timings"]["predicted_n"] == 4
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_failed_load_carries_the_reason(server, caps, tiny_models, tmp_path):
    spec = _spec(tiny_models["plain"], mtp=MtpSettings(enabled=True))
    with pytest.raises(ServeError) as err:
        with launched(server, caps, spec, log_path=tmp_path / "s.log"):
            pass
    assert err.value.message == "llama-server exited with code 1 while loading"
    assert "llama_init_from_model: context type MTP requested but model doesn't contain MTP layers" in err.value.details


class _Background:
    """serve_foreground on a thread (signals stay with pytest's main thread)."""

    def __init__(self, server, caps, spec, state_dir, config=None):
        self.sups = []
        self.error: BaseException | None = None

        def target():
            try:
                serve_foreground(
                    server,
                    caps,
                    spec,
                    state_dir=state_dir,
                    config=config,
                    install_signals=False,
                    on_event=self._on_event,
                )
            except BaseException as exc:  # surfaced by the test
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def _on_event(self, sup, message):
        if not self.sups:
            self.sups.append(sup)

    @property
    def sup(self):
        return self.sups[0] if self.sups else None

    def stop(self):
        if self.sup is not None:
            self.sup.request_stop()
        self.thread.join(30)
        assert not self.thread.is_alive()


def test_kill_9_heals_in_under_10_s(server, caps, tiny_models, tmp_path):
    spec = _spec(tiny_models["plain"])
    bg = _Background(server, caps, spec, tmp_path / "state")
    try:
        assert _wait(lambda: bg.sup is not None and bg.sup.state is State.READY, 60), bg.error
        old = bg.sup.proc.pid
        os.kill(old, signal.SIGKILL)
        t0 = time.monotonic()
        client = LlamaClient(f"http://127.0.0.1:{spec.port}")
        assert _wait(lambda: bg.sup.proc.pid != old and bg.sup.state is State.READY and client.health() == 200, 10)
        assert time.monotonic() - t0 < 10
        assert bg.sup.restarts == 1
    finally:
        bg.stop()
    assert _servers_of(tiny_models["plain"]) == []


def test_crash_at_every_start_gives_up_with_the_reason(server, caps, tiny_models, tmp_path):
    spec = _spec(tiny_models["plain"], mtp=MtpSettings(enabled=True))
    config = SupervisorConfig(policy=RestartPolicy(max_crashes=2, backoff_initial_s=0.05))
    events = []
    with pytest.raises(ServeError) as err:
        serve_foreground(
            server,
            caps,
            spec,
            state_dir=tmp_path / "state",
            config=config,
            install_signals=False,
            on_event=lambda sup, msg: events.append(sup.state.value),
        )
    assert err.value.message.startswith("llama-server keeps failing (3 crashes within 300 s (limit 2))")
    assert "llama_init_from_model: context type MTP requested but model doesn't contain MTP layers" in err.value.details
    assert events == ["starting", "restarting", "starting", "restarting", "starting", "failed"]
    assert _servers_of(tiny_models["plain"]) == []


def test_two_serves_on_one_port_refuse(server, caps, tiny_models, tmp_path):
    spec = _spec(tiny_models["plain"])
    bg = _Background(server, caps, spec, tmp_path / "state")
    try:
        assert _wait(lambda: bg.sup is not None and bg.sup.state is State.READY, 60), bg.error
        with pytest.raises(ServeError, match=f"Port {spec.port} is already served by llmtp \\(pid {os.getpid()}"):
            serve_foreground(server, caps, spec, state_dir=tmp_path / "state", install_signals=False)
        # A different state dir has no lock: the port check names the holder instead.
        with pytest.raises(
            ServeError, match=f"Port {spec.port} on 127.0.0.1 is already in use by pid {bg.sup.proc.pid} \\("
        ):
            serve_foreground(server, caps, spec, state_dir=tmp_path / "other", install_signals=False)
    finally:
        bg.stop()
