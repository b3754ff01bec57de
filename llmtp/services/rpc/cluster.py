"""Distributed serving on llama.cpp's RPC backend, the client side: reach the workers, measure their network,
list their devices, split a launch across them, and watch them while serving (the worker side:
services/rpc/worker.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from llmtp.adapters import files
from llmtp.adapters.cpuinfo import memory
from llmtp.adapters.files import read_json_store, write_json_atomic
from llmtp.adapters.gguf_file import read_model_info
from llmtp.adapters.ports import connect_error
from llmtp.adapters.rpc_wire import RpcWireError, timed_transfer
from llmtp.adapters.runner import SubprocessRunner
from llmtp.core.capabilities import Device
from llmtp.core.launch import LaunchSpec
from llmtp.core.logscan import meaningful_lines
from llmtp.core.probe import parse_list_devices
from llmtp.core.rpc import (
    Endpoint,
    Link,
    Split,
    decode_bound,
    local_devices,
    missing_workers,
    network_s_per_token,
    parse_endpoints,
    plan_split,
)
from llmtp.errors import ServeError, UsageError

log = logging.getLogger("llmtp.serve")

# --- the client side: workers as devices of one llama-server ----------------------------------------


def dead_workers(endpoints: list[Endpoint], timeout: float = 2.0) -> list[tuple[Endpoint, str]]:
    """Workers that refuse or do not answer a TCP connection, with why."""
    out = []
    for e in endpoints:
        why = connect_error(e.host, e.port, timeout)
        if why is not None:
            out.append((e, why))
    return out


def require_workers(endpoints: list[Endpoint], timeout: float = 2.0) -> None:
    """ServeError naming every worker that does not answer: checked before anything starts."""
    dead = dead_workers(endpoints, timeout)
    if dead:
        names = ", ".join(f"{e} ({why})" for e, why in dead)
        raise ServeError(
            f"RPC worker{'s' if len(dead) > 1 else ''} not reachable: {names}",
            "Start it on that host with `llmtp worker start --port PORT` (add --host and "
            "--trusted-network for a LAN address), or drop it from --rpc.",
        )


def reachable_endpoints(rpc: str) -> list[Endpoint]:
    """`--rpc HOST:PORT,...` parsed, every worker checked to answer (ServeError naming those that do not)."""

    endpoints = parse_endpoints(rpc)
    require_workers(endpoints)
    return endpoints


def worker_links(settings, endpoints: list[Endpoint], refresh: bool = False) -> dict[str, dict]:  # noqa: ANN001
    """Each worker's round trip and bandwidth: measured once with a timed transfer (16 MiB written to a
    scratch buffer on the worker, adapters/rpc_wire.py) and cached under the cache dir per address.
    A worker that cannot be measured (busy with another client, an older protocol) gets None values."""

    out: dict[str, dict] = {}
    for e in endpoints:
        path = Path(settings.cache_dir) / "rpc-network" / f"{e.host.replace(':', '_')}_{e.port}.json"
        cached = (
            None
            if refresh
            else read_json_store(path, dict, what="RPC network measurement", hint="It is measured again.", default=None)
        )
        if cached and cached.get("bytes_per_s"):
            out[str(e)] = cached
            continue
        try:
            rtt, bw = timed_transfer(e.host, e.port)
        except (OSError, RpcWireError) as exc:
            out[str(e)] = {"rtt_s": None, "bytes_per_s": None, "error": str(exc)}
            continue
        out[str(e)] = {"rtt_s": rtt, "bytes_per_s": bw, "measured_at": datetime.now(timezone.utc).isoformat()}
        files.make_dirs(path.parent)
        write_json_atomic(path, out[str(e)])
    return out


def list_devices(server: Path, endpoints: list[Endpoint], runner) -> list[Device]:  # noqa: ANN001 - Runner
    """Local and remote devices as this llama-server sees them (`--rpc ... --list-devices`).
    A worker serves one client at a time: this fails while another llama-server holds it."""
    argv = [str(server), "--rpc", ",".join(str(e) for e in endpoints), "--list-devices"]
    result = runner.run(argv, timeout=60)
    devices = parse_list_devices(result.output) or []
    missing = missing_workers(endpoints, devices)
    if result.returncode != 0 or missing:
        names = ", ".join(str(e) for e in missing) or ", ".join(str(e) for e in endpoints)
        raise ServeError(
            f"llama-server could not use the RPC worker(s) {names}",
            "A worker serves one client at a time: stop the other llama-server using it, and "
            "check that worker and client come from the same llama.cpp build (`llmtp doctor`).",
            details=meaningful_lines(result.output)[-8:],
        )
    return devices


def host_device(free_mib: int | None, total_mib: int | None) -> Device:
    """This machine's memory as a device of the plan (llama.cpp keeps what is not offloaded here)."""
    return Device(id="CPU", backend="CPU", name="this host (system RAM)", total_mib=total_mib, free_mib=free_mib)


def attach_workers(
    spec: LaunchSpec, endpoints: list[Endpoint], devices: list[Device], block_count: int | None
) -> Split:
    """Point `spec` at the workers: --rpc, -dev (RPC first), -ts by free memory, and the layers offloaded.

    llama.cpp offloads from the end (output layer first) and gives the last -dev device the last layers and
    the output. With a local GPU that device is local (RPC first), so the logits and the MTP layer stay
    here. A CPU-only host is no -dev device: -ngl = block count keeps the token embeddings and block 0 here
    and puts the output on the last worker (b11434 over loopback: MTP still drafts and accepts, and the
    text equals the local run, tests/test_rpc_llama.py)."""
    split = plan_split(devices)
    spec.rpc = [str(e) for e in endpoints]
    spec.devices, spec.tensor_split = split.devices, split.shares
    if local_devices(devices) or block_count is None:
        spec.n_gpu_layers = "all"
    else:
        spec.n_gpu_layers = block_count
    return split


def rpc_split(settings, server: Path, spec: LaunchSpec, rpc: str, reasons: list[dict]) -> list[dict]:  # noqa: ANN001
    """`serve --rpc`: check the workers, split `spec` over them; appends the plan reason, returns the devices."""
    devices, reason = split_launch(settings, server, spec, reachable_endpoints(rpc))
    reasons.append(reason)
    return devices


def split_launch(settings, server: Path, spec: LaunchSpec, endpoints: list[Endpoint]) -> tuple[list[dict], dict]:  # noqa: ANN001
    """Query the devices (the workers' over RPC, this host's), split `spec` across them; returns the
    per-device table (RPC first, this host last) and the plan reason for the split."""

    devices = list_devices(server, endpoints, SubprocessRunner())
    info = read_model_info(spec.model, cache_dir=settings.cache_dir)
    split = attach_workers(spec, endpoints, devices, info.block_count)
    total, available = memory()
    host_holds = "token embeddings" + ("" if spec.n_gpu_layers == "all" else ", block 0")
    table = device_table(
        devices,
        split,
        host_device(None if available is None else available // 2**20, None if total is None else total // 2**20),
        info.file_size_bytes,
        host_holds=host_holds,
    )
    where = ", ".join(f"{d['id']} {d['weights_share']:.0%}" for d in table if d["weights_share"] is not None)
    reason = {
        "what": "RPC",
        "value": f"--rpc {','.join(spec.rpc)} -dev {','.join(split.devices)}",
        "reason": f"layers split by free memory, RPC devices first ({where}); the output layer on "
        f"{split.devices[-1]}" + (" (local)" if local_devices(devices) else ""),
    }
    return table, reason


def plan_distributed(settings, plan) -> dict:  # noqa: ANN001 - core.launch_plan.LaunchPlan
    """`llmtp plan MODEL --rpc ...`: the launch plan's split across the workers and this host (the split
    itself is made once, by services/serve/launch_plan.py, as for serve)."""

    result = plan.planned
    path = getattr(result.resolved, "path", None) if result.resolved is not None else None
    if path is None or not result.downloaded:
        raise UsageError(
            "Planning across RPC workers needs the model file (its layers are what is split)",
            "Run `llmtp models pull MODEL` first, or pass the path to a .gguf file.",
        )
    if plan.argv is None:
        raise ServeError("No llama.cpp build is installed yet", "Run `llmtp build --rpc` first.")
    endpoints = parse_endpoints(",".join(plan.spec.rpc))
    links = worker_links(settings, endpoints)  # after the split's --list-devices, which has let go of them
    argv = plan.argv_list
    i = argv.index("--rpc")
    known = [Link(v["rtt_s"], v["bytes_per_s"]) for v in links.values() if v.get("bytes_per_s")]
    net = network_s_per_token(known, _hidden(path, settings)) if len(known) == len(links) else None
    reason = next((r["reason"] for r in plan.reasons if r["what"] == "RPC"), "")
    return {
        "devices": list(plan.devices),
        "reason": reason,
        "argv": argv[i : i + 6] + _ngl(argv),
        "network": links,
        "network_s_per_token_min": net,
        "decode_tok_s": decode_bound(result.plan.decode_tok_s, net),
        "decode_tok_s_mtp": decode_bound(result.plan.decode_tok_s_mtp, net),
    }


def _hidden(path, settings) -> int | None:  # noqa: ANN001

    return read_model_info(path, cache_dir=settings.cache_dir).embedding_length


def _ngl(argv: list[str]) -> list[str]:
    for flag in ("-ngl", "--gpu-layers", "--n-gpu-layers"):
        if flag in argv:
            i = argv.index(flag)
            return argv[i : i + 2]
    return []


def device_table(
    devices: list[Device], split: Split, host: Device, model_bytes: int | None, *, host_holds: str
) -> list[dict]:
    """One row per device of the launch: id, what it is, memory, and its share of the layers (by -ts)."""
    total = sum(split.shares) or 1
    by_id = {d.id: d for d in devices}
    rows = []
    for dev_id, share in zip(split.devices, split.shares):
        d = by_id[dev_id]
        frac = share / total
        rows.append(
            {
                "id": d.id,
                "backend": d.backend,
                "name": d.name,
                "total_mib": d.total_mib,
                "free_mib": d.free_mib,
                "weights_share": frac,
                "weights_bytes": None if model_bytes is None else int(model_bytes * frac),
            }
        )
    if not local_devices(devices):
        rows.append(
            {
                "id": host.id,
                "backend": host.backend,
                "name": host.name,
                "total_mib": host.total_mib,
                "free_mib": host.free_mib,
                "weights_share": None,
                "weights_bytes": None,
                "holds": host_holds,
            }
        )
    return rows


def worker_watch(endpoints: list[Endpoint]) -> Callable[[], str | None]:
    """The serve supervisor's check of its workers: a refused connection proves a worker is gone (a
    busy one may time out: one client at a time, backlog 1, so a timeout is not taken as death)."""

    def check() -> str | None:
        for e, why in dead_workers(endpoints, timeout=1.0):
            if why != "timed out":
                return f"RPC worker {e} stopped answering ({why})"
        return None

    return check


def wait_for_workers(
    endpoints: list[Endpoint], on_wait: Callable[[str], None] | None = None, every_s: float = 0.5
) -> Callable[[threading.Event], None]:
    """Before each (re)start: wait until every worker answers, naming the ones that do not. A worker
    restarted by its own supervisor (or by hand) brings the server back without a restart count."""

    def before_start(stop: threading.Event) -> None:
        said: set[str] = set()
        while not stop.is_set():
            dead = dead_workers(endpoints, timeout=1.0)
            if not dead:
                return
            for e, why in dead:
                line = f"waiting for RPC worker {e} ({why}) before starting llama-server"
                if line not in said:
                    said.add(line)
                    log.error("%s", line)
                    if on_wait is not None:
                        on_wait(line)
            stop.wait(every_s)

    return before_start


def rpc_supervision(spec: LaunchSpec) -> dict:
    """serve_foreground's watch and before_start for a launch on RPC workers (none without --rpc)."""
    if not spec.rpc:
        return {}

    endpoints = parse_endpoints(",".join(spec.rpc))
    return {"watch": worker_watch(endpoints), "before_start": wait_for_workers(endpoints)}
