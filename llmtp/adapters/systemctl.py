"""systemctl, journalctl, launchctl and the dedicated system user, all through the Runner."""

from __future__ import annotations

import os
from pathlib import Path

from llmtp.adapters.runner import Completed, Runner
from llmtp.errors import CommandError


def user_unit_dir() -> Path:
    """Where `systemctl --user` looks first for units: $XDG_CONFIG_HOME/systemd/user, else ~/.config/systemd/user."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


class Systemctl:
    """`systemctl [--user] ...` for one scope. Tests pass a fake Runner and read `runner.calls`."""

    def __init__(self, runner: Runner, *, user: bool):
        self.runner = runner
        self.scope = ["--user"] if user else []

    def _run(self, *args: str, check: bool = True) -> Completed:
        argv = ["systemctl", *self.scope, *args]
        done = self.runner.run(argv, timeout=60)
        if check and done.returncode != 0:
            raise CommandError(
                f"`{' '.join(argv)}` failed with exit code {done.returncode}",
                "See `journalctl` for the unit, or run the command by hand.",
                argv=argv,
                returncode=done.returncode,
                details=(done.stderr or done.stdout).strip().splitlines()[-8:],
            )
        return done

    def daemon_reload(self) -> None:
        self._run("daemon-reload")

    def enable_now(self, unit: str) -> bool:
        """enable --now, then a restart when the unit was already running: `--now` starts only a stopped unit, so a
        reinstall's new ExecStart= (another port, a newly staged build) would wait for the next start while the
        old process kept serving (seen in the systemd tests). True when it restarted the unit."""
        running = self.is_active(unit) == "active"
        self._run("enable", "--now", unit)
        if running:
            self.restart(unit)
        return running

    def disable_now(self, unit: str) -> None:
        self._run("disable", "--now", unit, check=False)  # already gone is fine on uninstall

    def restart(self, unit: str) -> None:
        self._run("restart", unit)

    def stop(self, unit: str) -> None:
        self._run("stop", unit)

    def status(self, unit: str) -> str:
        done = self._run("status", "--no-pager", unit, check=False)  # exit 3 = inactive: still an answer
        return done.stdout or done.stderr

    def is_active(self, unit: str) -> str:
        return self._run("is-active", unit, check=False).stdout.strip() or "unknown"

    def journal_argv(self, unit: str, follow: bool, lines: int = 100) -> list[str]:
        argv = ["journalctl", *(["--user-unit", unit] if self.scope else ["-u", unit]), "-n", str(lines), "--no-pager"]
        return argv + (["-f"] if follow else [])


def ensure_system_user(runner: Runner, name: str, groups: tuple[str, ...]) -> list[str]:
    """Create the dedicated system user if missing; returns the groups it was put in."""
    present = [g for g in groups if runner.run(["getent", "group", g]).returncode == 0]
    if runner.run(["id", "-u", name]).returncode == 0:
        if present:
            runner.run(["usermod", "-aG", ",".join(present), name])
        return present
    argv = [
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        f"/var/lib/{name}",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
    ]
    if present:
        argv += ["--groups", ",".join(present)]
    done = runner.run([*argv, name])
    if done.returncode != 0:
        raise CommandError(
            f"Cannot create the system user {name}",
            "Run the install as root (sudo).",
            argv=argv,
            returncode=done.returncode,
            details=done.stderr.strip().splitlines()[-4:],
        )
    return present


def launchctl_load(runner: Runner, plist: str, uid: int) -> None:
    runner.run(["launchctl", "bootout", f"gui/{uid}", plist])  # a previous copy may be loaded
    done = runner.run(["launchctl", "bootstrap", f"gui/{uid}", plist])
    if done.returncode != 0:
        raise CommandError(
            "launchctl could not load the llmtp agent",
            "Run `launchctl bootstrap` by hand.",
            argv=["launchctl", "bootstrap", f"gui/{uid}", plist],
            returncode=done.returncode,
            details=done.stderr.strip().splitlines()[-4:],
        )
