"""Type=notify: READY=1 over a real AF_UNIX datagram socket, and nothing at all without NOTIFY_SOCKET."""

from __future__ import annotations

import socket
from types import SimpleNamespace

import pytest

from llmtp.adapters.sd_notify import ReadyNotifier, notify
from llmtp.services.serve.launch import notify_ready


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    yield str(path), sock
    sock.close()


def test_ready_reaches_the_socket(notify_socket):
    path, sock = notify_socket
    assert notify("READY=1", {"NOTIFY_SOCKET": path}) is True
    assert sock.recv(4096) == b"READY=1"


def test_abstract_namespace(tmp_path):
    name = f"llmtp-test-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        assert notify("READY=1", {"NOTIFY_SOCKET": "@" + name})
        assert sock.recv(4096) == b"READY=1"


@pytest.mark.parametrize("env", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1"}])
def test_no_socket_is_a_no_op(env):
    assert notify("READY=1", env) is False


def test_unreachable_socket_is_not_fatal(tmp_path):
    assert notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_ready_once_then_status_after_each_restart(notify_socket):
    path, sock = notify_socket
    calls = []
    on_ready = notify_ready(lambda sup: calls.append(sup), ReadyNotifier({"NOTIFY_SOCKET": path}))
    sup = SimpleNamespace(spec=SimpleNamespace(model="/m/q.gguf", host="127.0.0.1", port=8081))
    on_ready(sup)
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving /m/q.gguf at 127.0.0.1:8081"
    on_ready(sup)  # llama-server restarted and is ready again: systemd already knows we are up
    assert sock.recv(4096) == b"STATUS=serving /m/q.gguf at 127.0.0.1:8081"
    assert calls == [sup, sup]  # the calibration hook still runs after every ready launch


def test_notifier_without_socket_still_runs_the_hook():
    calls = []
    notify_ready(calls.append, ReadyNotifier({}))(SimpleNamespace(spec=SimpleNamespace(model="m", host="h", port=1)))
    assert len(calls) == 1
