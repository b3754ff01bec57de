"""`llmtp service`: install llmtp serve as a systemd unit (user or system); its launchd agent is launchd.py.

validate (serve's own resolve_launch) -> plan_install (the unit, and for --system the files to stage
outside any home directory: staging.py) -> install (stage, write, reload, enable). Side effects
(systemctl, user creation) come in through a Runner; the unit directory and the staging root are
parameters so tests never touch the real ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llmtp import __version__
from llmtp.adapters import files, shipped
from llmtp.adapters.files import write_text_atomic
from llmtp.adapters.runner import Runner
from llmtp.adapters.systemctl import Systemctl, ensure_system_user, user_unit_dir
from llmtp.core.launch_plan import LaunchPlan, LaunchRequest, serve_args
from llmtp.core.unit import SYSTEM_GROUPS, SYSTEM_USER, UnitSpec, device_groups, render_systemd, with_groups
from llmtp.errors import UsageError
from llmtp.services.serve.command_line import foreground_command
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch
from llmtp.services.units.staging import (
    SYSTEM_CACHE_DIR,
    SYSTEM_CONFIG_DIR,
    SYSTEM_ENVIRONMENT,
    SYSTEM_MODELS_DIR,
    SYSTEM_STATE_DIR,
    Stage,
    build_stages,
    check_not_in_private_tmp,
    check_system_runtime,
    check_user_runtime,
    stage_files,
    under_home,
)

UNIT = "llmtp.service"

OVERRIDE_TEMPLATE = """\
# Your changes to {unit} go here; `{generated_by}` never overwrites this file.
# Example:
# [Service]
# Environment="CUDA_VISIBLE_DEVICES=0"
"""


@dataclass
class ServiceRequest:
    """What `llmtp service install` was asked for: the launch `llmtp serve` takes, and the scope."""

    launch: LaunchRequest
    system: bool = False
    more: tuple[str, ...] = ()  # more models: one router serves the set (services/serve/router.py)
    set_args: tuple[str, ...] = ()  # the set's own serve options (--models-max N, --idle-unload S)


def default_unit_dir(settings, system: bool) -> Path:
    if system:
        return Path("/etc/systemd/system")
    return user_unit_dir()


def validate(settings, req: ServiceRequest, deps: LaunchDeps | None = None) -> LaunchPlan:
    """Exactly what `llmtp serve` resolves before it starts (the same function): the bind and its key,
    the numbers, the pass-through flags, the build, and that the model is there and plans. A set: each model,
    and the router around them (`llmtp serve A B C`'s own checks); the first model's plan is returned."""
    if req.more:
        from llmtp.services.serve.router import resolve_router

        words = list(req.set_args)
        opts = {k: int(words[words.index(f) + 1]) for k, f in _SET_FLAGS.items() if f in words}
        models = [req.launch.model, *req.more]
        return resolve_router(settings, models, req.launch, deps=deps, **opts).plans[0]
    return resolve_launch(settings, req.launch, deps)


_SET_FLAGS = {"models_max": "--models-max", "idle_unload_s": "--idle-unload"}


def service_argv(
    req: ServiceRequest, plan: LaunchPlan, model: str, server: str | None, more: list[str] | None = None
) -> list[str]:
    """The service's command (unit or launchd agent): `llmtp serve` asked for the same launch. Host, port
    and the served name as the plan resolved them (a later change of the installer's settings cannot move
    the service, and the model keeps its name when it is served from a path); files as absolute paths (the
    service does not start in the current directory)."""
    launch = req.launch.model_copy(
        update={
            "model": model,
            "host": plan.spec.host,
            "port": plan.spec.port,
            "api_key_file": plan.spec.api_key_file,
            "server": server,
            "alias": None if req.more else plan.spec.alias,  # a set's models keep their own names
        }
    )
    args = serve_args(launch)
    if req.more:  # `serve A B C [set options] [-- flags]`
        cut = args.index("--") if "--" in args else len(args)
        args = [*args[:2], *(more or req.more), *args[2:cut], *req.set_args, *args[cut:]]
    return foreground_command(args)


@dataclass
class InstallPlan:
    unit: UnitSpec
    text: str
    stages: list[Stage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def user_environment(settings) -> dict[str, str]:
    """A user unit pins llmtp's directories, so the service sees the same builds and state as you."""
    return {
        "LLMTP_STATE_DIR": str(settings.state_dir),
        "LLMTP_DATA_DIR": str(settings.data_dir),
        "LLMTP_CACHE_DIR": str(settings.cache_dir),
        "LLMTP_CONFIG_DIR": str(settings.config_dir),
        "LLMTP_MODELS_DIR": str(settings.models_dir),
    }


def _set_paths(settings, req: ServiceRequest) -> list[Path]:
    """The GGUF files of a set's other models (validate has planned each, so each resolves to a file)."""
    from llmtp.services.models.resolve import resolve_model

    return [Path(str(resolve_model(ref, settings).path)) for ref in req.more]


def _timeout_start_s(plan: LaunchPlan) -> int:
    # serve's own readiness budget for this model, plus the plan and the capability probe
    return int(plan.ready_timeout_s) + 120


def _devices(plan: LaunchPlan) -> list[str]:
    devices = plan.caps.devices
    return device_groups(None if devices is None else [d.backend for d in devices])


def plan_install(settings, req: ServiceRequest, plan: LaunchPlan) -> InstallPlan:
    """The unit (and, for --system, the files to stage) for a request serve has validated."""
    key = plan.spec.api_key_file
    check_not_in_private_tmp([("llama-server", str(plan.server)), ("API key file", key or "")])
    if not req.system:
        check_user_runtime(settings)
        check_not_in_private_tmp([("model", plan.spec.model)])
        server = str(plan.server) if req.launch.server else None
        spec = UnitSpec(
            scope="user",
            unit_name=UNIT,
            exec_argv=service_argv(req, plan, plan.spec.model, server),
            environment=user_environment(settings),
            environment_file=str(settings.config_dir / "service.env"),
            read_write_paths=[str(settings.state_dir), str(settings.data_dir), str(settings.cache_dir)],
            timeout_start_s=_timeout_start_s(plan),
            device_allow=_devices(plan),
            llmtp_version=__version__,
        )
        return InstallPlan(spec, render_systemd(shipped.template_text("llmtp.service"), spec))
    check_system_runtime()
    stages: list[Stage] = []
    notes: list[str] = []
    model = Path(plan.spec.model)
    models = Path(SYSTEM_MODELS_DIR)
    stages.append(Stage(model, models / model.name))
    more = [Stage(p, models / p.name) for p in _set_paths(settings, req)]  # a set's other models, staged alike
    if more:
        notes.append("a system unit serves the set's models from /var/lib/llmtp: clients name them by file name")
    draft = plan.spec.mtp.draft_model
    if draft is not None:  # the Gemma 4 MTP sidecar sits next to its model, as serve finds it
        stages.append(Stage(Path(draft), models / Path(draft).name))
    stages += more
    if plan.build_id is not None:  # an llmtp build: its whole bin dir (libraries live next to the binary)
        build, server = build_stages(plan.build_id, Path(plan.server))
        stages += build
    else:
        server = str(plan.server)
        if under_home(server):
            raise UsageError(
                f"The system service cannot run {server}: ProtectHome=yes hides home directories from it",
                "Install that llama-server under /opt or /usr/local (or build one with `llmtp build` "
                "and drop --server: llmtp then copies the build to /var/lib/llmtp).",
            )
    if key is not None:
        if under_home(key):
            raise UsageError(
                f"The system service cannot read the API key file {key}: ProtectHome=yes hides "
                "home directories from it",
                f"Move it to /etc/llmtp/api-keys, `chown root:{SYSTEM_USER}` it, `chmod 640` it, and "
                "pass that path to --api-key-file.",
            )
        notes.append(f"the {SYSTEM_USER} user must be able to read {key} (chown root:{SYSTEM_USER}, chmod 640)")
    spec = UnitSpec(
        scope="system",
        unit_name=UNIT,
        exec_argv=service_argv(req, plan, str(stages[0].target), server, [str(m.target) for m in more]),
        environment=dict(SYSTEM_ENVIRONMENT),
        environment_file=f"{SYSTEM_CONFIG_DIR}/service.env",
        read_write_paths=[SYSTEM_STATE_DIR, SYSTEM_CACHE_DIR],
        timeout_start_s=_timeout_start_s(plan),
        device_allow=_devices(plan),
        llmtp_version=__version__,
    )
    return InstallPlan(spec, render_systemd(shipped.template_text("llmtp.service"), spec), stages, notes)


@dataclass
class InstallResult:
    unit_path: Path
    override_path: Path
    override_created: bool
    actions: list[str]


def _write_unit(path: Path, text: str) -> None:
    """0644 like every unit (it carries no secret: keys only ever travel as --api-key-file), atomically."""
    write_text_atomic(path, text, mode=0o644)  # whatever the umask


def install(
    settings,
    req: ServiceRequest,
    runner: Runner,
    *,
    plan: InstallPlan,
    unit_dir: Path | None = None,
    start: bool = True,
    root: Path = Path("/"),
    on_progress: Callable[[Stage, int, int], None] | None = None,
) -> InstallResult:
    """Stage what a system unit serves, write the unit, keep (or seed) the override drop-in,
    daemon-reload, enable --now. `plan` comes from plan_install on serve's validation."""
    unit_dir = unit_dir or default_unit_dir(settings, req.system)
    unit = plan.unit.unit_name
    if req.system and root == Path("/") and os.geteuid() != 0:
        raise UsageError(
            f"`{plan.unit.generated_by} --system` creates a user, writes /var/lib/llmtp and "
            "/etc/systemd/system, and so needs root",
            "Run it with sudo (keeping your LLMTP_* settings: sudo -E), or drop --system for a user unit.",
        )
    actions: list[str] = []
    if req.system:
        groups = ensure_system_user(runner, SYSTEM_USER, SYSTEM_GROUPS)
        actions.append(f"system user {SYSTEM_USER} (groups: {', '.join(groups) or 'none'})")
        plan.unit, plan.text = with_groups(plan.unit, groups, shipped.template_text("llmtp.service"))  # only the host's
        actions += stage_files(plan.stages, root=root, on_progress=on_progress)
    else:  # ReadWritePaths= that do not exist fail the start (226/NAMESPACE); systemd makes the system ones
        for p in plan.unit.read_write_paths:
            files.make_dirs(Path(p), mode=448)
    try:
        files.make_dirs(unit_dir)
        unit_path = unit_dir / unit
        _write_unit(unit_path, plan.text)
    except OSError as exc:
        raise UsageError(
            f"Cannot write the unit into {unit_dir}: {exc.strerror or exc}",
            "A system unit needs root (sudo); a user unit needs a writable ~/.config.",
        ) from exc
    actions.append(f"wrote {unit_path}")
    dropin = unit_dir / f"{unit}.d"
    override = dropin / "override.conf"
    created = False
    if not override.exists():  # a person's customizations survive every reinstall
        files.make_dirs(dropin)
        files.write_text(override, OVERRIDE_TEMPLATE.format(unit=unit, generated_by=plan.unit.generated_by))
        created = True
        actions.append(f"created {override}")
    else:
        actions.append(f"kept {override}")
    ctl = Systemctl(runner, user=not req.system)
    ctl.daemon_reload()
    actions.append("daemon-reload")
    if start:
        restarted = ctl.enable_now(unit)  # a running unit is restarted onto the new text
        actions.append(f"enable --now {unit}" + (" (restarted: it was running the previous unit)" if restarted else ""))
    return InstallResult(unit_path, override, created, actions)


def uninstall(
    settings,
    runner: Runner,
    *,
    system: bool = False,
    unit_dir: Path | None = None,
    unit: str = UNIT,
    status_command: str = "llmtp service status",
) -> list[str]:
    """Stop, disable and remove the unit; the override drop-in (a person's file) stays."""
    unit_dir = unit_dir or default_unit_dir(settings, system)
    ctl = Systemctl(runner, user=not system)
    ctl.disable_now(unit)
    unit_path = unit_dir / unit
    if not unit_path.exists():
        raise UsageError(f"No llmtp unit at {unit_path}", f"Nothing to uninstall; `{status_command}`.")
    files.remove(unit_path, missing_ok=False)
    ctl.daemon_reload()
    return [f"disabled {unit}", f"removed {unit_path}", "daemon-reload"]


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
