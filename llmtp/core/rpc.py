"""llama.cpp's RPC backend as values: worker endpoints, exposure, the device split and the worker's argv.

Pure: the CLI parses `--rpc HOST:PORT,...` here, services/rpc/cluster.py asks the network and llama-server.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from llmtp.core.capabilities import Device
from llmtp.core.plan_types import MemoryBreakdown
from llmtp.errors import UsageError

DEFAULT_WORKER_PORT = 50052  # ggml-rpc-server's own default (-p)
RPC_BACKEND = "RPC"  # --list-devices prefix of a remote device: `RPC0: 127.0.0.1:50071 (24105 MiB, ...)`


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str) -> Endpoint:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`). A missing or out-of-range port is a UsageError."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, port = raw[1:].partition("]:")
    else:
        host, sep, port = raw.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(
            f"Bad RPC worker address {text!r}: expected HOST:PORT with a port 1-65535",
            "For example --rpc 127.0.0.1:50052,127.0.0.1:50053 (IPv6: [::1]:50052).",
        )
    return Endpoint(host, int(port))


def parse_endpoints(text: str) -> list[Endpoint]:
    """The comma-separated list `--rpc` takes; duplicates are refused (one worker serves one client)."""
    items = [t for t in (s.strip() for s in text.split(",")) if t]
    if not items:
        raise UsageError("--rpc needs at least one HOST:PORT", "For example --rpc 127.0.0.1:50052.")
    out = [parse_endpoint(t) for t in items]
    seen: set[Endpoint] = set()
    for e in out:
        if e in seen:
            raise UsageError(f"RPC worker {e} is listed twice", "Name each worker once.")
        seen.add(e)
    return out


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ggml-rpc-server has no authentication: what is printed when a worker binds beyond loopback.
EXPOSURE_WARNING = (
    "ggml-rpc-server has no authentication and no encryption: anyone who can reach "
    "{where} can allocate memory and run tensors on this machine, and read what it computes"
)


def check_exposure(host: str, trusted_network: bool) -> str | None:
    """None for a loopback bind; the warning to print for a trusted non-loopback one; else UsageError."""
    if is_loopback(host):
        return None
    why = EXPOSURE_WARNING.format(where=f"{host} on this port")
    if not trusted_network:
        raise UsageError(
            f"Refusing to bind the RPC worker to {host}: {why}",
            "Bind to 127.0.0.1 (the default), or pass --trusted-network when every host on "
            "that network is yours (a private LAN or a VPN, never the internet).",
        )
    return why


def worker_argv(
    binary: str,
    *,
    host: str,
    port: int,
    threads: int | None = None,
    devices: list[str] | None = None,
    cache: bool = False,
) -> list[str]:
    """ggml-rpc-server's argv. b11434 knows -H, -p, -t, -d, -c (no -m/--mem: see `check_mem`)."""
    argv = [binary, "-H", host, "-p", str(port)]
    if threads is not None:
        argv += ["-t", str(threads)]
    if devices:
        argv += ["-d", ",".join(devices)]
    if cache:
        argv.append("-c")
    return argv


def rpc_devices(devices: list[Device]) -> list[Device]:
    return [d for d in devices if d.backend == RPC_BACKEND]


def local_devices(devices: list[Device]) -> list[Device]:
    return [d for d in devices if d.backend != RPC_BACKEND]


@dataclass(frozen=True)
class Split:
    """Where the offloaded layers go: device ids in order (RPC first) and their -ts shares."""

    devices: list[str]
    shares: list[int]  # MiB of free memory per device, as -ts takes proportions

    def argv(self) -> list[str]:
        return ["-dev", ",".join(self.devices), "-ts", ",".join(str(s) for s in self.shares)]


def plan_split(devices: list[Device]) -> Split:
    """RPC devices first, then the local GPUs, each weighted by its free memory.

    Order matters: llama.cpp puts the output layer on the last device; with an RPC device last (and a
    local GPU that could hold it) the logits cross the network for every token, which upstream reports
    breaking MTP. A device whose free
    memory is unknown gets no share: llmtp never guesses one (UsageError when none is known).
    """
    ordered = rpc_devices(devices) + local_devices(devices)
    known = [d for d in ordered if d.free_mib]
    if not known:
        raise UsageError(
            "No device reports its free memory, so the layers cannot be split",
            "Check the workers with `llmtp worker status` and the local build with `llmtp detect`.",
        )
    return Split([d.id for d in known], [int(d.free_mib or 0) for d in known])


def missing_workers(wanted: list[Endpoint], devices: list[Device]) -> list[Endpoint]:
    """Workers llama-server did not list as a device (it reached them not, or they offer none)."""
    listed = {d.name.split(" ")[0] for d in rpc_devices(devices)}
    return [e for e in wanted if str(e) not in listed]


@dataclass(frozen=True)
class Link:
    """The network to one worker, measured once by a timed transfer (services/rpc/cluster.py caches it)."""

    rtt_s: float
    bytes_per_s: float


def network_s_per_token(links: list[Link], hidden_size: int | None) -> float | None:
    """A lower bound on the network time of one decoded token: the activations (hidden_size f32 values)
    cross every boundary host -> worker 1 -> ... -> last worker -> host, each boundary costing at least
    the slower side's round trip plus the bytes at its bandwidth. Measured on loopback (bench/rpc.py) the
    real traffic was about 2x these bytes (graph descriptions, positions), hence "lower bound".
    None when the hidden size is unknown."""
    if not links or not hidden_size:
        return None
    act = 4 * hidden_size
    hops = [*links, links[-1]]  # the way back to the host leaves the last worker
    return sum(link.rtt_s + act / link.bytes_per_s for link in hops)


def decode_bound(local_tok_s: float | None, net_s: float | None) -> float | None:
    """The roofline with the network in it: an upper bound on decode tok/s (None when either is unknown)."""
    if not local_tok_s or net_s is None:
        return None
    return round(1.0 / (1.0 / local_tok_s + net_s), 1)


def split_memory(memory: list[MemoryBreakdown], devices: list[dict]) -> list[MemoryBreakdown]:
    """`plan --rpc`'s one answer for memory: the planner's single-host figures spread over the launch's
    devices as llama.cpp splits them (`device_table` rows, by -ts share). Weights are each device's share of
    the file; KV cache, recurrent state and the MTP draft follow the layers, so they split by the same share;
    compute buffers and the margin stay with this host, whose row also keeps what no share names (token
    embeddings, block 0). Unchanged when no device has a share (nothing split)."""
    shared = [d for d in devices if d.get("weights_share") is not None]
    if not shared or not memory:
        return memory
    whole = MemoryBreakdown(device="all")
    for m in memory:
        whole = whole.model_copy(update={k: getattr(whole, k) + getattr(m, k) for k in _SPLIT + _KEPT})
    rows = []
    for d in shared:
        share = d["weights_share"]
        weights = d["weights_bytes"] if d.get("weights_bytes") is not None else int(whole.weights * share)
        rows.append(
            MemoryBreakdown(
                device=d["id"], weights=weights, **{k: int(getattr(whole, k) * share) for k in _SPLIT if k != "weights"}
            )
        )
    host = next((d for d in devices if d.get("weights_share") is None), None)
    rest = {k: max(0, getattr(whole, k) - sum(getattr(r, k) for r in rows)) for k in _SPLIT}
    rows.append(MemoryBreakdown(device=host["id"] if host else "host", **rest, **{k: getattr(whole, k) for k in _KEPT}))
    return rows


_SPLIT = ("weights", "kv_cache", "recurrent_state", "mtp_draft")  # follow the layers
_KEPT = ("compute", "margin")  # this host's
