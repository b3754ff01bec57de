"""Readiness probe for llama-server's /health with the standard library alone.

It sits on the start path of every `llmtp serve`, so it avoids importing httpx (~0.3 s).
/health needs no API key upstream, and a proxy from the environment is never consulted.
"""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit


def probe_health(base_url: str, timeout: float = 1.0) -> int | None:
    """HTTP status of GET /health (200 ready, 503 loading), or None when nothing answers."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=timeout)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
