"""One llama-server process: start in its own process group, wait for /health, stop the whole group; GET /
of a new build started in router mode with no model (the UI probe)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from llmtp.adapters import proctree
from llmtp.adapters.health import probe_health
from llmtp.adapters.ports import free_port
from llmtp.adapters.spawn import spawn_logged
from llmtp.core.logscan import exit_description, meaningful_lines
from llmtp.errors import ServeError

if TYPE_CHECKING:
    from llmtp.adapters.http import LlamaClient

_POLL_FIRST_S = 0.02  # first /health retry: readiness must add well under 0.3 s to a start
_POLL_MAX_S = 0.2


def connect_host(host: str) -> str:
    """Where to connect to reach a server bound to `host` (a wildcard bind is reached on loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def base_url_for(host: str, port: int) -> str:
    h = connect_host(host)
    return f"http://[{h}]:{port}" if ":" in h else f"http://{h}:{port}"


class ServerProcess:
    """A started llama-server. The group id equals the pid (start_new_session), so stop() reaches
    every helper process it may spawn and nothing outlives llmtp."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        log_path: Path,
        host: str,
        port: int,
        env: Mapping[str, str] | None = None,
        api_key: str | None = None,
    ):
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.host, self.port = host, port
        self.base_url = base_url_for(host, port)
        self._env = env
        self._api_key = api_key
        self._proc: subprocess.Popen | None = None
        self._log_offset = 0
        self.started_at: float | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> ServerProcess:
        try:
            self._proc, self._log_offset = spawn_logged(self.argv, self.log_path, self._env)
        except (FileNotFoundError, PermissionError) as exc:
            raise ServeError(
                f"Cannot run {self.argv[0]}: {exc.strerror}", "Check the build with `llmtp builds list`, or rebuild."
            ) from exc
        self.started_at = time.monotonic()
        return self

    def adopt(self, proc: subprocess.Popen, log_offset: int, started_at: float) -> ServerProcess:
        """Take over a process already started with this argv and log (a warm start)."""
        self._proc, self._log_offset, self.started_at = proc, log_offset, started_at
        return self

    @property
    def log_offset(self) -> int:
        """Where this process's lines start in its log (earlier lines are a previous server's)."""
        return self._log_offset

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def client(self, timeout: float = 10.0) -> LlamaClient:
        from llmtp.adapters.http import LlamaClient  # httpx costs ~0.3 s to import: not on the start path

        return LlamaClient(self.base_url, self._api_key, timeout=timeout)

    def log_tail(self) -> str:
        """This run's part of the log."""
        try:
            with open(self.log_path, "rb") as f:
                end = f.seek(0, 2)
                f.seek(self._log_offset if self._log_offset <= end else 0)  # rotated live: all of it is ours
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def failure_lines(self) -> list[str]:
        return meaningful_lines(self.log_tail())

    def wait_ready(self, timeout: float, on_poll: Callable[[int | None], None] | None = None) -> None:
        """Poll /health until 200. 503 (loading) is normal; exit during load or timeout raises."""
        deadline = time.monotonic() + timeout
        delay = _POLL_FIRST_S
        while True:
            if not self.alive():
                raise self._exited_error()
            status = probe_health(self.base_url, timeout=1.0)
            if on_poll is not None:
                on_poll(status)
            if status == 200:
                return
            if time.monotonic() > deadline:
                raise ServeError(
                    f"llama-server did not become ready within {timeout:.0f} s (last /health: "
                    f"{status if status is not None else 'no answer'})",
                    f"A large model on a slow disk can take longer; see {self.log_path}.",
                    details=self.failure_lines(),
                )
            time.sleep(delay)
            # Tiny models are ready in tens of ms; big ones take minutes: poll fast first, then back off.
            delay = min(delay * 1.5, _POLL_MAX_S)

    def _exited_error(self) -> ServeError:
        code = self.returncode
        lines = self.failure_lines()
        return ServeError(
            f"llama-server exited with {exit_description(code)} while loading",
            f"Full log: {self.log_path}." if lines else f"Nothing useful in its output; see {self.log_path}.",
            details=lines,
        )

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to the whole group, bounded wait, SIGKILL stragglers; reaps our child."""
        if self._proc is None:
            return
        proc = self._proc
        proctree.stop_child_group(proc, grace)
        try:
            proc.wait(timeout=2)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL already sent to the group
            proc.kill()
            proc.wait()


def router_root_page(server: Path, timeout: float = 20.0) -> tuple[int, str | None, str] | None:
    """(status, content type, body) of GET / on `server` started in router mode: no model, an empty models
    dir, loopback, a free port, its own HOME and caches (so it finds no cached model and loads nothing);
    stopped right after. None when it did not come up within `timeout`."""

    from llmtp.adapters.http import get_page

    with tempfile.TemporaryDirectory(prefix="llmtp-ui-probe-") as tmp:
        work = Path(tmp)
        (work / "models").mkdir()
        env = {
            "HOME": str(work),
            "XDG_CACHE_HOME": str(work / "cache"),
            "HF_HOME": str(work / "hf"),
            "LLAMA_CACHE": str(work / "cache"),
        }  # on top of this environment (adapters/spawn.py)
        port = free_port()
        proc = ServerProcess(
            [str(server), "--host", "127.0.0.1", "--port", str(port), "--models-dir", str(work / "models")],
            log_path=work / "probe.log",
            host="127.0.0.1",
            port=port,
            env=env,
        )
        try:
            proc.start().wait_ready(timeout)
            return get_page(proc.base_url, "/", timeout=10.0)
        except ServeError:
            return None
        finally:
            proc.stop()
