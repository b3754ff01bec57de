"""The Supervisor loop with fake processes: OOM re-plan, health failures, a wedged generation."""

from __future__ import annotations

import threading
import time

import pytest

from llmtp.core.launch import LaunchSpec
from llmtp.core.restart import RestartPolicy
from llmtp.core.supervisor import State
from llmtp.errors import NetworkError, ServeError
from llmtp.services.serve.supervisor import Supervisor, SupervisorConfig

OOM = "0.00.100.000 E ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB on device 0: cudaMalloc failed: out of memory\n"


class FakeClient:
    def __init__(self, proc):
        self.proc = proc

    def __enter__(self):
        return self

    def __exit__(self, *a):
        pass

    def health(self, timeout=None):
        return self.proc.health

    def metrics(self):
        return {"llamacpp:tokens_predicted_total": 0.0}

    def completion(self, prompt, n_predict=1, temperature=0.0, **kw):
        if self.proc.wedged:
            raise NetworkError("timeout")
        return {"content": "x", "timings": {}}


class FakeProc:
    def __init__(self, spec, *, load_error=None, log="", health=200, wedged=False):
        self.spec, self.load_error, self.log, self.health, self.wedged = spec, load_error, log, health, wedged
        self.pid, self.log_path, self.argv = id(self), "/tmp/fake.log", []
        self.stopped = False

    def wait_ready(self, timeout, on_poll=None):
        if on_poll:
            on_poll(503)
        if self.load_error:
            raise ServeError(self.load_error)

    def alive(self):
        return not self.stopped and not self.load_error

    @property
    def returncode(self):
        return None if self.alive() else 1

    def log_tail(self):
        return self.log

    def failure_lines(self):
        return [ln.split(" E ", 1)[-1] for ln in self.log.splitlines()]

    def stop(self, grace=5):
        self.stopped = True

    def client(self, timeout=10):
        return FakeClient(self)


FAST = dict(
    tick_s=0.01, health_every_s=0.02, probe_every_s=1000, policy=RestartPolicy(max_crashes=3, backoff_initial_s=0.0)
)


def _run_until(sup, predicate, timeout=5.0):
    t = threading.Thread(target=lambda: _swallow(sup.run), daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    sup.request_stop()
    t.join(5)
    assert not t.is_alive()


def _swallow(fn):
    try:
        fn()
    except ServeError:
        pass


def test_oom_at_load_replans_with_fewer_layers_then_reports():
    specs, messages = [], []

    def launch(spec):
        specs.append(spec)
        if spec.n_gpu_layers > 25:
            return FakeProc(spec, load_error="llama-server exited with code 1 while loading", log=OOM)
        return FakeProc(spec)

    sup = Supervisor(
        LaunchSpec(model="m", port=1, n_gpu_layers=40, ctx_size=8192),
        launch,
        config=SupervisorConfig(**FAST),
        on_event=lambda s, m: messages.append(m),
    )
    _run_until(sup, lambda: sup.state is State.READY)
    assert [s.n_gpu_layers for s in specs] == [40, 30, 22]
    assert sup.replans == 2 and sup.restarts == 0
    assert "out of memory at load; re-plan 1/2: -ngl 40 -> 30, -c 8192 -> 8192" in messages


def test_oom_replans_are_bounded():
    launches = []

    def launch(spec):
        launches.append(spec.n_gpu_layers)
        return FakeProc(spec, load_error="llama-server exited with code 1 while loading", log=OOM)

    cfg = SupervisorConfig(**{**FAST, "policy": RestartPolicy(max_crashes=1, backoff_initial_s=0.0)})
    sup = Supervisor(LaunchSpec(model="m", port=1, n_gpu_layers=40), launch, config=cfg)
    with pytest.raises(ServeError, match="keeps failing") as err:
        sup.run()
    assert launches == [40, 30, 22, 22]  # two re-plans, then the policy: 2 crashes > limit 1
    assert err.value.details == [
        "ggml_backend_cuda_buffer_type_alloc_buffer: allocating 9000.00 MiB on device 0: "
        "cudaMalloc failed: out of memory"
    ]
    assert sup.state is State.FAILED


def test_failing_health_restarts():
    procs = []

    def launch(spec):
        procs.append(FakeProc(spec, health=200 if procs else 503))
        return procs[-1]

    sup = Supervisor(LaunchSpec(model="m", port=1), launch, config=SupervisorConfig(**FAST))
    _run_until(sup, lambda: len(procs) == 2 and sup.state is State.READY)
    assert procs[0].stopped and sup.restarts == 1


def test_wedged_generation_restarts():
    procs = []

    def launch(spec):
        procs.append(FakeProc(spec, wedged=not procs))
        return procs[-1]

    cfg = SupervisorConfig(**{**FAST, "probe_every_s": 0.03})
    sup = Supervisor(LaunchSpec(model="m", port=1), launch, config=cfg)
    _run_until(sup, lambda: len(procs) == 2 and sup.state is State.READY)
    assert procs[0].stopped and sup.restarts == 1
    assert sup.state is State.STOPPED
