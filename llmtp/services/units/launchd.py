"""`llmtp service` on macOS: llmtp serve as a launchd agent (the plist, and loading it)."""

from __future__ import annotations

import os
from pathlib import Path

from llmtp import __version__
from llmtp.adapters import files, shipped
from llmtp.adapters.runner import Runner
from llmtp.adapters.systemctl import launchctl_load
from llmtp.core.launch_plan import LaunchPlan
from llmtp.core.unit import render_plist
from llmtp.services.units.serve_unit import ServiceRequest, service_argv

LAUNCHD_LABEL = "io.llmtp.serve"


def launchd_plist(settings, req: ServiceRequest, plan: LaunchPlan) -> str:
    env = {
        "LLMTP_STATE_DIR": str(settings.state_dir),
        "LLMTP_DATA_DIR": str(settings.data_dir),
        "LLMTP_CONFIG_DIR": str(settings.config_dir),
        "LLMTP_CACHE_DIR": str(settings.cache_dir),
        "LLMTP_MODELS_DIR": str(settings.models_dir),
    }
    argv = service_argv(req, plan, plan.spec.model, str(plan.server) if req.launch.server else None)
    return render_plist(
        shipped.template_text("llmtp.plist"),
        label=LAUNCHD_LABEL,
        argv=argv,
        environment=env,
        log_path=str(settings.state_dir / "logs" / "launchd.log"),
        llmtp_version=__version__,
    )


def install_launchd(
    settings,
    req: ServiceRequest,
    plan: LaunchPlan,
    runner: Runner,
    *,
    agents_dir: Path | None = None,
    uid: int | None = None,
) -> Path:

    agents_dir = agents_dir or Path.home() / "Library" / "LaunchAgents"
    files.make_dirs(agents_dir)
    path = agents_dir / f"{LAUNCHD_LABEL}.plist"
    files.write_text(path, launchd_plist(settings, req, plan))
    launchctl_load(runner, str(path), os.getuid() if uid is None else uid)
    return path
