"""TCP port checks: is a port free to bind, a free port for tests and benchmarks, does a URL's host answer."""

from __future__ import annotations

import socket


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
    from urllib.parse import urlparse

    host = urlparse(url).hostname
    if not host:
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False
