"""Distributed serving on llama.cpp's RPC backend: reach the workers, list their devices, split a launch
across them, and run a worker (ggml-rpc-server) under the same supervisor, state files and stop as `serve`."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmtp.adapters.ports import connect_error
from llmtp.adapters.server_process import ServerProcess
from llmtp.core.capabilities import Capabilities, Device
from llmtp.core.launch import LaunchSpec
from llmtp.core.logscan import meaningful_lines
from llmtp.core.probe import parse_list_devices
from llmtp.core.rpc import Endpoint, Split, local_devices, missing_workers, plan_split
from llmtp.errors import BuildError, ServeError

log = logging.getLogger("llmtp.serve")

WORKER_MODEL = "ggml-rpc-server"  # what a worker's state record names as its "model"


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
        raise ServeError(f"RPC worker{'s' if len(dead) > 1 else ''} not reachable: {names}",
                         "Start it on that host with `llmtp worker start --port PORT` (add --host and "
                         "--trusted-network for a LAN address), or drop it from --rpc.")


def reachable_endpoints(rpc: str) -> list[Endpoint]:
    """`--rpc HOST:PORT,...` parsed, every worker checked to answer (ServeError naming those that do not)."""
    from llmtp.core.rpc import parse_endpoints

    endpoints = parse_endpoints(rpc)
    require_workers(endpoints)
    return endpoints


def list_devices(server: Path, endpoints: list[Endpoint], runner) -> list[Device]:  # noqa: ANN001 - Runner
    """Local and remote devices as this llama-server sees them (`--rpc ... --list-devices`).
    A worker serves one client at a time: this fails while another llama-server holds it."""
    argv = [str(server), "--rpc", ",".join(str(e) for e in endpoints), "--list-devices"]
    result = runner.run(argv, timeout=60)
    devices = parse_list_devices(result.output) or []
    missing = missing_workers(endpoints, devices)
    if result.returncode != 0 or missing:
        names = ", ".join(str(e) for e in missing) or ", ".join(str(e) for e in endpoints)
        raise ServeError(f"llama-server could not use the RPC worker(s) {names}",
                         "A worker serves one client at a time: stop the other llama-server using it, and "
                         "check that worker and client come from the same llama.cpp build (`llmtp doctor`).",
                         details=meaningful_lines(result.output)[-8:])
    return devices


def host_device(free_mib: int | None, total_mib: int | None) -> Device:
    """This machine's memory as a device of the plan (llama.cpp keeps what is not offloaded here)."""
    return Device(id="CPU", backend="CPU", name="this host (system RAM)", total_mib=total_mib, free_mib=free_mib)


def attach_workers(spec: LaunchSpec, endpoints: list[Endpoint], devices: list[Device],
                   block_count: int | None) -> Split:
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
    import psutil

    from llmtp.adapters.gguf_file import read_model_info
    from llmtp.adapters.runner import SubprocessRunner

    devices = list_devices(server, endpoints, SubprocessRunner())
    info = read_model_info(spec.model, cache_dir=settings.cache_dir)
    split = attach_workers(spec, endpoints, devices, info.block_count)
    vm = psutil.virtual_memory()
    host_holds = "token embeddings" + ("" if spec.n_gpu_layers == "all" else ", block 0")
    table = device_table(devices, split, host_device(vm.available // 2**20, vm.total // 2**20),
                         info.file_size_bytes, host_holds=host_holds)
    where = ", ".join(f"{d['id']} {d['weights_share']:.0%}" for d in table if d["weights_share"] is not None)
    reason = {"what": "RPC", "value": f"--rpc {','.join(spec.rpc)} -dev {','.join(split.devices)}",
              "reason": f"layers split by free memory, RPC devices first ({where}); the output layer on "
                        f"{split.devices[-1]}" + (" (local)" if local_devices(devices) else "")}
    return table, reason


def plan_distributed(settings, result, rpc: str) -> dict:  # noqa: ANN001 - services.plan's result
    """`llmtp plan MODEL --rpc ...`: the split of the planned launch across the workers and this host."""
    from llmtp.core.argv import build_server_argv
    from llmtp.core.rpc import parse_endpoints
    from llmtp.errors import UsageError
    from llmtp.services.builds import current_build

    endpoints = parse_endpoints(rpc)
    path = getattr(result.resolved, "path", None) if result.resolved is not None else None
    if path is None or not result.downloaded:
        raise UsageError("Planning across RPC workers needs the model file (its layers are what is split)",
                         "Run `llmtp models pull MODEL` first, or pass the path to a .gguf file.")
    require_workers(endpoints)
    build = current_build(settings)
    if build is None:
        raise ServeError("No llama.cpp build is installed yet", "Run `llmtp build --rpc` first.")
    spec = result.plan.to_launch_spec(str(path), host=settings.host, port=settings.port)
    devices, reason = split_launch(settings, build.server, spec, endpoints)
    argv = build_server_argv("llama-server", build.manifest.capabilities, spec)
    i = argv.index("--rpc")
    return {"devices": devices, "reason": reason["reason"], "argv": argv[i:i + 6] + _ngl(argv)}


def _ngl(argv: list[str]) -> list[str]:
    for flag in ("-ngl", "--gpu-layers", "--n-gpu-layers"):
        if flag in argv:
            i = argv.index(flag)
            return argv[i:i + 2]
    return []


def device_table(devices: list[Device], split: Split, host: Device, model_bytes: int | None,
                 *, host_holds: str) -> list[dict]:
    """One row per device of the launch: id, what it is, memory, and its share of the layers (by -ts)."""
    total = sum(split.shares) or 1
    by_id = {d.id: d for d in devices}
    rows = []
    for dev_id, share in zip(split.devices, split.shares):
        d = by_id[dev_id]
        frac = share / total
        rows.append({"id": d.id, "backend": d.backend, "name": d.name, "total_mib": d.total_mib,
                     "free_mib": d.free_mib, "weights_share": frac,
                     "weights_bytes": None if model_bytes is None else int(model_bytes * frac)})
    if not local_devices(devices):
        rows.append({"id": host.id, "backend": host.backend, "name": host.name, "total_mib": host.total_mib,
                     "free_mib": host.free_mib, "weights_share": None, "weights_bytes": None,
                     "holds": host_holds})
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


def wait_for_workers(endpoints: list[Endpoint], on_wait: Callable[[str], None] | None = None,
                     every_s: float = 0.5) -> Callable[[threading.Event], None]:
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
    from llmtp.core.rpc import parse_endpoints

    endpoints = parse_endpoints(",".join(spec.rpc))
    return {"watch": worker_watch(endpoints), "before_start": wait_for_workers(endpoints)}


# --- the worker side: ggml-rpc-server under serve's supervisor ----------------------------------------

class WorkerProcess(ServerProcess):
    """A ggml-rpc-server: same process group, log and stop as llama-server; ready once it accepts a
    connection (it speaks no HTTP, so /health and the generation probe do not apply)."""

    def wait_ready(self, timeout: float, on_poll=None) -> None:  # noqa: ANN001 - as ServerProcess
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ServeError(f"ggml-rpc-server exited with code {self.returncode} while starting",
                                 f"Full log: {self.log_path}.", details=self.failure_lines())
            why = connect_error(self.host, self.port, 1.0)
            if on_poll is not None:
                on_poll(None if why else 200)
            if why is None:
                return
            if time.monotonic() > deadline:
                raise ServeError(f"ggml-rpc-server did not accept connections within {timeout:.0f} s ({why})",
                                 f"See {self.log_path}.", details=self.failure_lines())
            time.sleep(0.05)

    def client(self, timeout: float = 10.0):  # noqa: ANN201
        return _NoHttp()


class _NoHttp:
    """What the supervisor's watch loop holds for a worker: never asked (health and probe are off)."""

    def __enter__(self) -> _NoHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def worker_binary(bin_dir: Path) -> Path:
    from llmtp.services.build import RPC_WORKER

    path = bin_dir / RPC_WORKER
    if not path.is_file():
        raise BuildError(f"This build has no RPC worker ({path} is missing)",
                         "Build one with `llmtp build --rpc`, then try again.")
    return path


def worker_launcher(argv: list[str], log_path: Path):  # -> Launch
    from llmtp.adapters.spawn import LOG_KEEP, LOG_MAX_BYTES, rotate

    def launch(spec: LaunchSpec) -> WorkerProcess:
        rotate(log_path, LOG_MAX_BYTES, LOG_KEEP)
        return WorkerProcess(argv, log_path=log_path, host=spec.host, port=spec.port).start()
    return launch


@dataclass
class PreparedWorker:
    binary: Path
    caps: Capabilities
    argv: list[str]
    host: str
    port: int
    build_id: str | None
    warning: str | None  # the exposure warning of a trusted non-loopback bind


def prepare_worker(settings, *, host: str, port: int, mem: int | None = None, cache: bool = False,  # noqa: ANN001
                   threads: int | None = None, trusted_network: bool = False,
                   current_build: Callable | None = None) -> PreparedWorker:
    """Check everything a worker start needs before anything runs: exposure, build, --mem, the port."""
    from llmtp.core.rpc import check_exposure, worker_argv
    from llmtp.errors import UsageError
    from llmtp.services.supervisor import check_port_free

    warning = check_exposure(host, trusted_network)
    if current_build is None:
        from llmtp.services.builds import current_build
    build = current_build(settings)
    if build is None:
        raise ServeError("No llama.cpp build is installed yet", "Run `llmtp build --rpc` first.")
    binary = worker_binary(build.bin_dir)
    if mem is not None:
        # b11434's ggml-rpc-server has no -m/--mem (newer upstream builds do); never pass a flag it refuses.
        raise UsageError(f"--mem needs a ggml-rpc-server with -m/--mem; build {build.id} has none "
                         "(llama.cpp b11434 dropped it: a worker offers all its free memory)",
                         "Leave --mem out; to keep memory free on the worker, start fewer workers or limit "
                         "what the client puts there (llmtp plans by the free memory each worker reports).")
    check_port_free(host, port)
    argv = worker_argv(str(binary), host=host, port=port, threads=threads, cache=cache)
    return PreparedWorker(binary, build.manifest.capabilities, argv, host, port, build.id, warning)


def worker_foreground(prepared: PreparedWorker, *, state_dir: Path, on_event=None):  # noqa: ANN001
    """Supervise one worker until stopped: serve's port claim, state file, restart policy and group stop."""
    from llmtp.services import state as st
    from llmtp.services.supervisor import SupervisorConfig, serve_foreground

    spec = LaunchSpec(model=WORKER_MODEL, host=prepared.host, port=prepared.port)
    never = 10.0 ** 9  # no /health and no generation probe: liveness is the process itself
    config = SupervisorConfig(ready_timeout_s=60.0, health_every_s=never, probe_every_s=never)
    if prepared.warning:
        log.warning("%s", prepared.warning)
    return serve_foreground(prepared.binary, prepared.caps, spec, state_dir=state_dir,
                            build_id=prepared.build_id, config=config, replan=None, on_event=on_event,
                            kind="worker", launch=worker_launcher(prepared.argv, st.log_path(state_dir, prepared.port)))


def stop_workers(state_dir: Path, port: int | None, on_note=None) -> list[int]:  # noqa: ANN001
    """Stop the worker on `port` (all workers when None) through serve's proven stop. A port served by
    a llama-server is refused: `llmtp stop` stops those."""
    from llmtp.errors import UsageError
    from llmtp.services import state as st
    from llmtp.services.serve import stop_served

    if port is not None:
        record = st.load_record(state_dir, port)
        if record is not None and record.kind != "worker":
            raise UsageError(f"Port {port} is a llama-server, not an RPC worker",
                             f"Stop it with `llmtp stop --port {port}`.")
        return [port] if stop_served(state_dir, port, on_note=on_note) else []
    ports = [r.port for r in worker_records(state_dir)]
    return [p for p in ports if stop_served(state_dir, p, on_note=on_note)]


def worker_status(state_dir: Path) -> list[dict]:
    """One entry per live worker, with the ports of the llmtp servers that use it."""
    from llmtp.services import state as st

    servers = [r for r in st.all_states(state_dir) if r.kind != "worker"]
    out = []
    for r in worker_records(state_dir):
        address = str(Endpoint(r.host, r.port))
        entry = r.model_dump(include={"kind", "host", "port", "state", "llmtp_pid", "server_pid", "restarts",
                                      "build", "last_error", "log_path"})
        entry["address"] = address
        entry["uptime_s"] = round(time.time() - r.started_at, 1)
        entry["used_by"] = [s.port for s in servers if address in s.rpc]
        out.append(entry)
    return out


def worker_records(state_dir: Path) -> list:
    from llmtp.services import state as st

    return [r for r in st.all_states(state_dir) if r.kind == "worker"]
