"""An RPC worker unit (`llmtp worker install`) under a real private user manager, serving a local
`llmtp serve --rpc`. Only 127.0.0.1."""

from __future__ import annotations

import json

import psutil
import pytest
from systemd_cli import Llmtp, complete, health

from llmtp.adapters.ports import free_port

pytestmark = [pytest.mark.systemd, pytest.mark.llama, pytest.mark.slow]


def test_worker_unit_serves_a_local_rpc_server(user_manager, systemd_run_dir, rpc_bin_dir, tiny_models):
    env = user_manager.env()
    env["LLMTP_HOME"] = str(systemd_run_dir / "llmtp-home")
    llmtp = Llmtp(env)
    worker_port, serve_port = free_port(), free_port()
    while serve_port == worker_port:
        serve_port = free_port()
    unit = f"llmtp-worker-{worker_port}.service"
    llmtp("builds", "adopt", str(rpc_bin_dir))
    llmtp("worker", "install", "--port", str(worker_port), "--threads", "1")
    assert user_manager.show(unit, "ActiveState") == "active"
    main = int(user_manager.show(unit, "MainPID"))
    rpc = [p for p in psutil.Process(main).children(recursive=True) if p.name() == "ggml-rpc-server"]
    assert len(rpc) == 1, [p.name() for p in psutil.Process(main).children(recursive=True)]
    address = f"127.0.0.1:{worker_port}"
    try:
        served = json.loads(
            llmtp(
                "serve",
                str(tiny_models["agree"]),
                "--port",
                str(serve_port),
                "--ctx",
                "512",
                "--rpc",
                address,
                "--json",
            ).stdout
        )
        assert served["state"] == "ready" and health(serve_port) == 200
        out = complete(serve_port)
        assert out["content"]
        [entry] = [e for e in json.loads(llmtp("status", "--json").stdout) if e["port"] == serve_port]
        assert entry["rpc"] == [address] and f"--rpc {address} -dev RPC0" in " ".join(entry["argv"])
        [worker] = json.loads(llmtp("worker", "status", "--json").stdout)
        assert worker["address"] == address and worker["used_by"] == [serve_port]
    finally:
        llmtp("stop", "--port", str(serve_port), ok=False)
    llmtp("worker", "uninstall", "--port", str(worker_port))
    assert not (user_manager.unit_dir / unit).exists()
    assert user_manager.show(unit, "LoadState") == "not-found"
    assert not psutil.pid_exists(main) and not psutil.pid_exists(rpc[0].pid)
    llmtp.save("worker unit: install, serve --rpc, uninstall")
