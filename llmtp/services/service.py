"""`llmtp service`: install llmtp serve as a systemd unit (user or system) or a launchd agent.

Side effects (systemctl, user creation, launchctl) come in through a Runner; the unit directory is a
parameter so tests never touch the real one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from llmtp import __version__
from llmtp.adapters import shipped
from llmtp.adapters.runner import Runner
from llmtp.adapters.systemctl import Systemctl, ensure_system_user, launchctl_load
from llmtp.core.unit import SYSTEM_GROUPS, SYSTEM_USER, UnitSpec, render_plist, render_systemd
from llmtp.errors import UsageError

UNIT = "llmtp.service"
LAUNCHD_LABEL = "io.llmtp.serve"
SYSTEM_STATE_DIR = "/var/lib/llmtp"

OVERRIDE_TEMPLATE = """\
# Your changes to llmtp.service go here; `llmtp service install` never overwrites this file.
# Example:
# [Service]
# Environment="CUDA_VISIBLE_DEVICES=0"
"""


@dataclass
class ServiceRequest:
    model: str
    serve_args: list[str] = field(default_factory=list)  # --host/--port/--ctx/--no-mtp/... as given
    system: bool = False


def template(name: str) -> str:
    return shipped.template_text(name)


def default_unit_dir(settings, system: bool) -> Path:
    if system:
        return Path("/etc/systemd/system")
    return Path.home() / ".config" / "systemd" / "user"


def _exec_argv(req: ServiceRequest) -> list[str]:
    # The interpreter that has llmtp installed; `-m llmtp` survives venv moves of the script shim.
    args = list(req.serve_args)
    cut = args.index("--") if "--" in args else len(args)  # after `--` everything goes to llama-server
    return [sys.executable, "-m", "llmtp", "serve", req.model, *args[:cut], "--foreground", *args[cut:]]


def unit_spec(settings, req: ServiceRequest) -> UnitSpec:
    if req.system:
        env = {"LLMTP_STATE_DIR": SYSTEM_STATE_DIR}  # owned by the llmtp user (StateDirectory=)
        env_file, rw = "/etc/llmtp/service.env", [SYSTEM_STATE_DIR]
    else:
        env = {"LLMTP_STATE_DIR": str(settings.state_dir)}
        env_file, rw = str(settings.config_dir / "service.env"), [str(settings.state_dir)]
    # The service finds the same builds, models and config as the user who installed it.
    env.update({"LLMTP_DATA_DIR": str(settings.data_dir), "LLMTP_CACHE_DIR": str(settings.cache_dir),
                "LLMTP_CONFIG_DIR": str(settings.config_dir), "LLMTP_MODELS_DIR": str(settings.models_dir)})
    return UnitSpec(scope="system" if req.system else "user", unit_name=UNIT, exec_argv=_exec_argv(req),
                    environment=env, environment_file=env_file, read_write_paths=rw,
                    llmtp_version=__version__)


def render_unit(settings, req: ServiceRequest) -> str:
    spec = unit_spec(settings, req)
    used = [*spec.environment.values(), sys.executable, req.model]
    return render_systemd(template("llmtp.service"), spec, used)


@dataclass
class InstallResult:
    unit_path: Path
    override_path: Path
    override_created: bool
    actions: list[str]


def install(settings, req: ServiceRequest, runner: Runner, *, unit_dir: Path | None = None,
            start: bool = True) -> InstallResult:
    """Write the unit, keep (or seed) the override drop-in, daemon-reload, enable --now."""
    unit_dir = unit_dir or default_unit_dir(settings, req.system)
    text = render_unit(settings, req)
    actions: list[str] = []
    if req.system:
        groups = ensure_system_user(runner, SYSTEM_USER, SYSTEM_GROUPS)
        actions.append(f"system user {SYSTEM_USER} (groups: {', '.join(groups) or 'none'})")
    unit_dir.mkdir(parents=True, exist_ok=True)
    unit_path = unit_dir / UNIT
    unit_path.write_text(text, encoding="utf-8")
    actions.append(f"wrote {unit_path}")
    dropin = unit_dir / f"{UNIT}.d"
    override = dropin / "override.conf"
    created = False
    if not override.exists():  # a person's customizations survive every reinstall
        dropin.mkdir(parents=True, exist_ok=True)
        override.write_text(OVERRIDE_TEMPLATE, encoding="utf-8")
        created = True
        actions.append(f"created {override}")
    else:
        actions.append(f"kept {override}")
    ctl = Systemctl(runner, user=not req.system)
    ctl.daemon_reload()
    actions.append("daemon-reload")
    if start:
        ctl.enable_now(UNIT)
        actions.append(f"enable --now {UNIT}")
    return InstallResult(unit_path, override, created, actions)


def uninstall(settings, runner: Runner, *, system: bool = False, unit_dir: Path | None = None) -> list[str]:
    """Stop, disable and remove the unit; the override drop-in (a person's file) stays."""
    unit_dir = unit_dir or default_unit_dir(settings, system)
    ctl = Systemctl(runner, user=not system)
    ctl.disable_now(UNIT)
    unit_path = unit_dir / UNIT
    if not unit_path.exists():
        raise UsageError(f"No llmtp unit at {unit_path}", "Nothing to uninstall; `llmtp service status`.")
    unit_path.unlink()
    ctl.daemon_reload()
    return [f"disabled {UNIT}", f"removed {unit_path}", "daemon-reload"]


def installed_scope(settings, *, unit_dirs: dict[bool, Path] | None = None) -> bool | None:
    """Which scope holds an installed llmtp unit: False = user, True = system, None = neither."""
    for system in (False, True):
        unit_dir = (unit_dirs or {}).get(system) or default_unit_dir(settings, system)
        if (unit_dir / UNIT).is_file():
            return system
    return None


def unit_state(settings, runner: Runner, *, unit_dirs: dict[bool, Path] | None = None) -> str | None:
    """systemd's ActiveState of the installed unit (active, failed, ...), or None when none is installed."""
    system = installed_scope(settings, unit_dirs=unit_dirs)
    if system is None:
        return None
    return Systemctl(runner, user=not system).is_active(UNIT)


def restart(settings, runner: Runner, *, unit_dirs: dict[bool, Path] | None = None) -> bool:
    """Restart the installed unit; False when no unit is installed."""
    system = installed_scope(settings, unit_dirs=unit_dirs)
    if system is None:
        return False
    Systemctl(runner, user=not system).restart(UNIT)
    return True


def restart_if_running(settings, runner: Runner, *, unit_dirs: dict[bool, Path] | None = None) -> bool:
    """After an upgrade switched builds: restart the unit onto the new build, only if it is active."""
    if unit_state(settings, runner, unit_dirs=unit_dirs) != "active":
        return False
    return restart(settings, runner, unit_dirs=unit_dirs)


# --- macOS -----------------------------------------------------------------------------------------

def launchd_plist(settings, req: ServiceRequest) -> str:
    env = {"LLMTP_STATE_DIR": str(settings.state_dir), "LLMTP_DATA_DIR": str(settings.data_dir),
           "LLMTP_CONFIG_DIR": str(settings.config_dir), "LLMTP_CACHE_DIR": str(settings.cache_dir),
           "LLMTP_MODELS_DIR": str(settings.models_dir)}
    return render_plist(template("llmtp.plist"), label=LAUNCHD_LABEL, argv=_exec_argv(req), environment=env,
                        log_path=str(settings.state_dir / "logs" / "launchd.log"), llmtp_version=__version__)


def install_launchd(settings, req: ServiceRequest, runner: Runner, *, agents_dir: Path | None = None,
                    uid: int | None = None) -> Path:
    import os

    agents_dir = agents_dir or Path.home() / "Library" / "LaunchAgents"
    agents_dir.mkdir(parents=True, exist_ok=True)
    path = agents_dir / f"{LAUNCHD_LABEL}.plist"
    path.write_text(launchd_plist(settings, req), encoding="utf-8")
    launchctl_load(runner, str(path), os.getuid() if uid is None else uid)
    return path
