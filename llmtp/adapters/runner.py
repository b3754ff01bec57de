"""The one wrapper for every subprocess llmtp runs: argv lists only, never a shell.

Tests replace a `Runner` with a fake; services receive it as a parameter.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from llmtp.errors import CommandError, ToolMissingError


@dataclass(frozen=True)
class Completed:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout then stderr: llama.cpp tools print their --version/--help on either."""
        return self.stdout + self.stderr


class Runner(Protocol):
    def which(self, name: str) -> str | None: ...

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 60,
    ) -> Completed: ...

    def stream(
        self,
        argv: Sequence[str],
        *,
        on_line: Callable[[str], None],
        log: IO[str],
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int: ...


class SubprocessRunner:
    """The real runner."""

    def which(self, name: str) -> str | None:
        return shutil.which(name)

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 60,
    ) -> Completed:
        argv = [str(a) for a in argv]
        full_env = None if env is None else {**os.environ, **env}
        try:
            proc = subprocess.run(
                argv,
                cwd=cwd,
                env=full_env,
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise ToolMissingError(
                f"Cannot run {argv[0]}: not found", f"Install {Path(argv[0]).name} or put it on PATH."
            ) from exc
        except PermissionError as exc:
            raise ToolMissingError(
                f"Cannot run {argv[0]}: permission denied", "Check that the file is executable."
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise CommandError(
                f"{Path(argv[0]).name} did not finish within {timeout:.0f} s",
                "Run the command by hand to see where it hangs.",
                argv=argv,
            ) from exc
        return Completed(argv, proc.returncode, proc.stdout or "", proc.stderr or "")

    def stream(
        self,
        argv: Sequence[str],
        *,
        on_line: Callable[[str], None],
        log: IO[str],
        cwd: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Run to completion, copying merged output to `log` and each line to `on_line`."""
        argv = [str(a) for a in argv]
        full_env = None if env is None else {**os.environ, **env}
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=full_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                bufsize=1,
            )
        except FileNotFoundError as exc:
            raise ToolMissingError(
                f"Cannot run {argv[0]}: not found", f"Install {Path(argv[0]).name} or put it on PATH."
            ) from exc
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                on_line(line.rstrip("\n"))
            return proc.wait()
        except BaseException:
            # Ctrl-C or a callback error: never leave a compiler running behind us.
            proc.kill()
            proc.wait()
            raise
