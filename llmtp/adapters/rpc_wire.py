"""A timed transfer to one ggml-rpc-server over llama.cpp's RPC protocol (b11434, protocol 3.x): round trip
and bandwidth, measured by writing a scratch buffer on the worker and freeing it.

The wire format is ggml/src/ggml-rpc/ggml-rpc.cpp's: a command byte, a u64 little-endian size, the packed
(#pragma pack 1) request; responses are a u64 size and the packed response. SET_TENSOR has no response, so
a GET_DEVICE_MEMORY after it marks when the worker has read the data.
"""

from __future__ import annotations

import socket
import struct
import time

HELLO, ALLOC_BUFFER, BUFFER_GET_BASE, FREE_BUFFER, SET_TENSOR, GET_DEVICE_MEMORY = 14, 0, 3, 4, 6, 11
CONN_CAPS = 24  # RPC_CONN_CAPS_SIZE: zeros = plain TCP, no RDMA upgrade
GGML_TYPE_I8 = 24  # 1 byte per element: ne[0] = bytes


class RpcWireError(Exception):
    pass


def _recv(sock: socket.socket, n: int) -> bytes:
    out = bytearray()
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise RpcWireError("the worker closed the connection")
        out += chunk
    return bytes(out)


def _call(sock: socket.socket, cmd: int, payload: bytes, response: int | None) -> bytes:
    sock.sendall(struct.pack("<BQ", cmd, len(payload)) + payload)
    if response is None:
        return b""
    size = struct.unpack("<Q", _recv(sock, 8))[0]
    if size != response:
        raise RpcWireError(f"command {cmd}: a {size}-byte answer, expected {response}")
    return _recv(sock, size)


def rpc_tensor(buffer: int, data: int, nbytes: int) -> bytes:
    """A packed rpc_tensor (296 bytes): a 1-D I8 tensor of `nbytes` at `data` in remote `buffer`."""
    head = struct.pack("<QIQ4I4II", 1, GGML_TYPE_I8, buffer, nbytes, 1, 1, 1, 1, nbytes, nbytes, nbytes, 0)
    tail = struct.pack("<16ii10QQQQ64si", *([0] * 16), 0, *([0] * 10), 0, 0, data, b"llmtp-net-probe", 0)
    out = head + tail
    assert len(out) == 296
    return out


def timed_transfer(host: str, port: int, nbytes: int = 16 * 2**20, timeout: float = 30.0) -> tuple[float, float]:
    """(round trip seconds, bytes per second) to the worker at host:port. Raises OSError or RpcWireError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(struct.pack("<BQ", HELLO, CONN_CAPS) + bytes(CONN_CAPS))
        size = struct.unpack("<Q", _recv(sock, 8))[0]
        _recv(sock, size)  # major, minor, patch, padding, conn_caps
        mem = struct.pack("<I", 0)
        t0 = time.perf_counter()
        for _ in range(5):
            _call(sock, GET_DEVICE_MEMORY, mem, 16)
        rtt = (time.perf_counter() - t0) / 5
        remote, _ = struct.unpack("<QQ", _call(sock, ALLOC_BUFFER, struct.pack("<IQ", 0, nbytes), 16))
        if remote == 0:
            raise RpcWireError(f"the worker could not allocate {nbytes} bytes")
        try:
            base = struct.unpack("<Q", _call(sock, BUFFER_GET_BASE, struct.pack("<Q", remote), 8))[0]
            payload = rpc_tensor(remote, base, nbytes) + struct.pack("<BQ", 0, 0) + bytes(nbytes)
            t0 = time.perf_counter()
            _call(sock, SET_TENSOR, payload, None)
            _call(sock, GET_DEVICE_MEMORY, mem, 16)
            seconds = time.perf_counter() - t0 - rtt
        finally:
            _call(sock, FREE_BUFFER, struct.pack("<Q", remote), None)
        return rtt, nbytes / max(seconds, 1e-9)
