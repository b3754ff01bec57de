"""sd_notify(3) with the standard library: tell systemd (Type=notify) that the service is ready.

The protocol is one datagram of `KEY=value` lines to the AF_UNIX socket named in $NOTIFY_SOCKET
(a path, or `@name` for the abstract namespace). Without $NOTIFY_SOCKET (not run by systemd, or
Type=simple) every call does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


def notify(message: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `message` (e.g. "READY=1"); True when a datagram went out, False when there is no socket.
    A socket that is set but unreachable is reported as False, never raised: a service must not
    die because its manager stopped listening."""
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # vsock (vsock:CID:PORT) is for VMs: not ours to speak
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message.encode("utf-8"))
    except OSError:
        return False
    return True


class ReadyNotifier:
    """READY=1 on the first ready launch, a STATUS= line after each later one (restarts)."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self.env = env
        self.sent_ready = False

    def ready(self, status: str) -> None:
        if not self.sent_ready:
            self.sent_ready = notify(f"READY=1\nSTATUS={status}", self.env)
        else:
            notify(f"STATUS={status}", self.env)
