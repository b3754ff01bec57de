"""An RPC worker (ggml-rpc-server) under the same supervisor, port claim, state files, restart policy and
process-group stop as `llmtp serve`: what `llmtp worker` runs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmtp import __version__
from llmtp.adapters import shipped
from llmtp.adapters.ports import connect_error
from llmtp.adapters.server_process import ServerProcess
from llmtp.adapters.spawn import LOG_KEEP, LOG_MAX_BYTES, rotate
from llmtp.core.capabilities import Capabilities
from llmtp.core.rpc import Endpoint, check_exposure, worker_argv
from llmtp.core.unit import UnitSpec, device_groups, render_systemd
from llmtp.errors import BuildError, ServeError, UsageError
from llmtp.services.serve.command_line import foreground_command
from llmtp.services.serve.foreground import ServeHooks, Supervised, check_port_free, supervise
from llmtp.services.serve.launch import notify_ready, stop_served
from llmtp.services.serve.supervisor import SupervisorConfig
from llmtp.services.stores import serve_records as st
from llmtp.services.units import serve_unit as svc
from llmtp.services.units import staging

log = logging.getLogger("llmtp.serve")

WORKER_PROGRAM = "ggml-rpc-server"


@dataclass(frozen=True)
class WorkerTarget:
    """What the supervisor keeps alive for `llmtp worker`: a ggml-rpc-server on host:port, started with
    `argv` (no model, no plan, no re-plan: it serves whatever tensors its client sends)."""

    host: str
    port: int
    argv: tuple[str, ...]
    program: str = WORKER_PROGRAM  # the supervisor's event lines name it


class WorkerProcess(ServerProcess):
    """A ggml-rpc-server: same process group, log and stop as llama-server; ready once it accepts a
    connection (it speaks no HTTP, so /health and the generation probe do not apply)."""

    def wait_ready(self, timeout: float, on_poll=None) -> None:  # noqa: ANN001 - as ServerProcess
        deadline = time.monotonic() + timeout
        while True:
            if not self.alive():
                raise ServeError(
                    f"ggml-rpc-server exited with code {self.returncode} while starting",
                    f"Full log: {self.log_path}.",
                    details=self.failure_lines(),
                )
            why = connect_error(self.host, self.port, 1.0)
            if on_poll is not None:
                on_poll(None if why else 200)
            if why is None:
                return
            if time.monotonic() > deadline:
                raise ServeError(
                    f"ggml-rpc-server did not accept connections within {timeout:.0f} s ({why})",
                    f"See {self.log_path}.",
                    details=self.failure_lines(),
                )
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
    from llmtp.services.build.pipeline import RPC_WORKER

    path = bin_dir / RPC_WORKER
    if not path.is_file():
        raise BuildError(
            f"This build has no RPC worker ({path} is missing)", "Build one with `llmtp build --rpc`, then try again."
        )
    return path


def worker_launcher(log_path: Path):  # -> Launch

    def launch(target: WorkerTarget) -> WorkerProcess:
        rotate(log_path, LOG_MAX_BYTES, LOG_KEEP)
        return WorkerProcess(list(target.argv), log_path=log_path, host=target.host, port=target.port).start()

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


@dataclass(frozen=True)
class WorkerRequest:
    """What `llmtp worker start` was asked for. `server`: a ggml-rpc-server outside llmtp's builds (a
    system unit runs its staged copy)."""

    host: str = "127.0.0.1"
    port: int = 50052
    mem: int | None = None
    cache: bool = False
    threads: int | None = None
    trusted_network: bool = False
    server: Path | None = None


def prepare_worker(
    settings,
    req: WorkerRequest,
    *,
    current_build: Callable | None = None,  # noqa: ANN001
    check_port: bool = True,
) -> PreparedWorker:
    """Check everything a worker start needs before anything runs: exposure, build, --mem, the port."""
    host, port, mem, cache, threads, server = req.host, req.port, req.mem, req.cache, req.threads, req.server

    warning = check_exposure(host, req.trusted_network)
    if server is not None:
        if not server.is_file():
            raise UsageError(
                f"No ggml-rpc-server at {server}",
                "Pass the path of an existing ggml-rpc-server (or leave --server out to use the current build's).",
            )
        if mem is not None:
            raise UsageError("--mem is not passed to a ggml-rpc-server llmtp did not build", "Leave --mem out.")
        if check_port:
            check_port_free(host, port)
        argv = worker_argv(str(server), host=host, port=port, threads=threads, cache=cache)
        return PreparedWorker(server, Capabilities(), argv, host, port, None, warning)
    if current_build is None:
        from llmtp.services.build.installed import current_build
    build = current_build(settings)
    if build is None:
        raise ServeError("No llama.cpp build is installed yet", "Run `llmtp build --rpc` first.")
    binary = worker_binary(build.bin_dir)
    if mem is not None:
        # b11434's ggml-rpc-server has no -m/--mem (newer upstream builds do); never pass a flag it refuses.
        raise UsageError(
            f"--mem needs a ggml-rpc-server with -m/--mem; build {build.id} has none "
            "(llama.cpp b11434 dropped it: a worker offers all its free memory)",
            "Leave --mem out; to keep memory free on the worker, start fewer workers or limit "
            "what the client puts there (llmtp plans by the free memory each worker reports).",
        )
    if check_port:
        check_port_free(host, port)
    argv = worker_argv(str(binary), host=host, port=port, threads=threads, cache=cache)
    return PreparedWorker(binary, build.manifest.capabilities, argv, host, port, build.id, warning)


def worker_foreground(prepared: PreparedWorker, *, state_dir: Path, on_event=None):  # noqa: ANN001
    """Supervise one worker until stopped: serve's port claim, state file, restart policy and group stop."""

    target = WorkerTarget(host=prepared.host, port=prepared.port, argv=tuple(prepared.argv))
    never = 10.0**9  # no /health and no generation probe: liveness is the process itself
    config = SupervisorConfig(ready_timeout_s=60.0, health_every_s=never, probe_every_s=never)
    if prepared.warning:
        log.warning("%s", prepared.warning)
    hooks = ServeHooks(
        on_event=on_event, replan=None, on_ready=notify_ready(None)
    )  # Type=notify: READY=1 once it accepts connections
    launch = worker_launcher(st.log_path(state_dir, prepared.port))
    return supervise(
        Supervised(kind="worker", first=target, launch=launch, model=str(prepared.binary), build_id=prepared.build_id),
        state_dir=state_dir,
        config=config,
        hooks=hooks,
    )


def stop_workers(state_dir: Path, port: int | None, on_note=None) -> list[int]:  # noqa: ANN001
    """Stop the worker on `port` (all workers when None) through serve's proven stop. A port served by
    a llama-server is refused: `llmtp stop` stops those."""

    if port is not None:
        record = st.load_record(state_dir, port)
        if record is not None and record.kind != "worker":
            raise UsageError(
                f"Port {port} is a llama-server, not an RPC worker", f"Stop it with `llmtp stop --port {port}`."
            )
        return [port] if stop_served(state_dir, port, on_note=on_note) else []
    ports = [r.port for r in worker_records(state_dir)]
    return [p for p in ports if stop_served(state_dir, p, on_note=on_note)]


def worker_status(state_dir: Path) -> list[dict]:
    """One entry per live worker, with the ports of the llmtp servers that use it."""

    servers = [r for r in st.all_states(state_dir) if r.kind != "worker"]
    out = []
    for r in worker_records(state_dir):
        address = str(Endpoint(r.host, r.port))
        entry = r.model_dump(
            include={
                "kind",
                "host",
                "port",
                "state",
                "llmtp_pid",
                "server_pid",
                "restarts",
                "build",
                "last_error",
                "log_path",
            }
        )
        entry["address"] = address
        entry["uptime_s"] = round(time.time() - r.started_at, 1)
        entry["used_by"] = [s.port for s in servers if address in s.rpc]
        out.append(entry)
    return out


def worker_records(state_dir: Path) -> list:
    return [r for r in st.all_states(state_dir) if r.kind == "worker"]


# --- `llmtp worker install`: the worker as a systemd unit, through the server unit's own machinery ---

WORKER_GENERATOR = "llmtp worker install"
WORKER_READY_TIMEOUT_S = 60.0  # worker_foreground's readiness budget


def worker_unit_name(port: int) -> str:
    """One unit per port, so that one machine can offer several workers (one per device)."""
    return f"llmtp-worker-{port}.service"


@dataclass
class WorkerInstallRequest:
    host: str = "127.0.0.1"
    port: int = 50052
    threads: int | None = None
    cache: bool = False
    trusted_network: bool = False
    system: bool = False


def _worker_start_argv(req: WorkerInstallRequest, server: str | None) -> list[str]:
    args = ["worker", "start", "--host", req.host, "--port", str(req.port)]
    if req.threads is not None:
        args += ["--threads", str(req.threads)]
    if req.cache:
        args.append("--cache")
    if req.trusted_network:
        args.append("--trusted-network")
    if server is not None:
        args += ["--server", server]
    return foreground_command(args)


def plan_worker_install(settings, req: WorkerInstallRequest, prepared: PreparedWorker):  # noqa: ANN001
    """The unit (and, for --system, the build to stage) for a worker `prepare_worker` has validated:
    the server unit's template, hardening, escaping and staging rules with this unit's name and command."""

    devices = device_groups(None if prepared.caps.devices is None else [d.backend for d in prepared.caps.devices])
    common = dict(
        unit_name=worker_unit_name(req.port),
        description=f"llmtp: RPC worker (ggml-rpc-server) on {Endpoint(req.host, req.port)}",
        timeout_start_s=int(WORKER_READY_TIMEOUT_S) + 120,
        device_allow=devices,
        llmtp_version=__version__,
        generated_by=WORKER_GENERATOR,
        ready_when="ggml-rpc-server accepts connections",
    )
    if not req.system:
        staging.check_user_runtime(settings)
        staging.check_not_in_private_tmp([("ggml-rpc-server", str(prepared.binary))])
        # --cache writes under LLAMA_CACHE (else ~/.cache, read-only to the unit): the cache dir is writable
        env = {**svc.user_environment(settings), "LLAMA_CACHE": str(settings.cache_dir / "llama.cpp")}
        external = str(prepared.binary) if prepared.build_id is None else None  # else the current build
        spec = UnitSpec(
            scope="user",
            exec_argv=_worker_start_argv(req, external),
            environment=env,
            environment_file=str(settings.config_dir / "service.env"),
            read_write_paths=[str(settings.state_dir), str(settings.data_dir), str(settings.cache_dir)],
            **common,
        )
        return svc.InstallPlan(spec, render_systemd(shipped.template_text("llmtp.service"), spec))
    staging.check_system_runtime()
    stages: list = []
    if prepared.build_id is not None:
        stages, server = staging.build_stages(prepared.build_id, prepared.binary)
    else:
        server = str(prepared.binary)
        if staging.under_home(server) or server.startswith(staging.PRIVATE_TMP):
            raise UsageError(
                f"The system service cannot run {server}: it hides home directories and /tmp",
                "Install that ggml-rpc-server under /opt or /usr/local, or build one with "
                "`llmtp build --rpc` (llmtp then copies the build to /var/lib/llmtp).",
            )
    env = {**staging.SYSTEM_ENVIRONMENT, "LLAMA_CACHE": f"{staging.SYSTEM_CACHE_DIR}/llama.cpp"}
    spec = UnitSpec(
        scope="system",
        exec_argv=_worker_start_argv(req, server),
        environment=env,
        environment_file=f"{staging.SYSTEM_CONFIG_DIR}/service.env",
        read_write_paths=[staging.SYSTEM_STATE_DIR, staging.SYSTEM_CACHE_DIR],
        **common,
    )
    return svc.InstallPlan(spec, render_systemd(shipped.template_text("llmtp.service"), spec), stages)
