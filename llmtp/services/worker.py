"""An RPC worker (ggml-rpc-server) under the same supervisor, port claim, state files, restart policy and
process-group stop as `llmtp serve`: what `llmtp worker` runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmtp.adapters.ports import connect_error
from llmtp.adapters.server_process import ServerProcess
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec
from llmtp.core.rpc import Endpoint
from llmtp.errors import BuildError, ServeError

log = logging.getLogger("llmtp.serve")

WORKER_MODEL = "ggml-rpc-server"  # what a worker's state record names as its "model"


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
