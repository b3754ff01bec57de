"""TCP port checks: is a port free to bind, a free port for tests and benchmarks, does a URL's host answer."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def port_free(host: str, port: int) -> bool:
    """True when `host:port` can be bound right now (as llama-server would, with SO_REUSEADDR)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def tcp_reachable(url: str, timeout: float = 3.0) -> bool:
    """Can we open a TCP connection to the URL's host (port 443) within `timeout`? No data sent."""

    host = urlparse(url).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def connect_error(host: str, port: int, timeout: float = 2.0) -> str | None:
    """None when something accepts a TCP connection on `host:port`; else why not ("connection refused",
    "timed out", ...). Used for RPC workers, which speak no HTTP: a connection is all they answer.
    A busy ggml-rpc-server (one client at a time, listen backlog 1) may time out: callers treat only a
    refusal as proof that nothing listens."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except TimeoutError:
        return "timed out"
    except OSError as exc:
        return exc.strerror or str(exc)
