"""Where a service's files must be for systemd to let it see them: the system unit's layout under
/var/lib/llmtp, the checks against home directories (ProtectHome=yes) and the private /tmp
(PrivateTmp=yes), and the staging of files into that layout (hard links, else copies).

Used by serve's unit (serve_unit.py) and the RPC worker's (services/rpc/worker.py) alike.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import llmtp
from llmtp.adapters import files
from llmtp.adapters.stage import link_or_copy
from llmtp.core.unit import HOME_PREFIXES
from llmtp.errors import UsageError

# A system unit sees nothing under a home directory (ProtectHome=yes): it serves from these.
# The state dir is a child of /var/lib/llmtp so that systemd's StateDirectory= chown (recursive
# when the owner differs) never reaches the staged models, whose hard links share an inode with
# the installer's files.
SYSTEM_ROOT = "/var/lib/llmtp"
SYSTEM_STATE_DIR = f"{SYSTEM_ROOT}/state"  # StateDirectory=llmtp/state, owned by the llmtp user
SYSTEM_DATA_DIR = f"{SYSTEM_STATE_DIR}/data"  # calibration and tuned settings are written at runtime
SYSTEM_MODELS_DIR = f"{SYSTEM_ROOT}/models"  # root-owned, read-only to the service
SYSTEM_BUILDS_DIR = f"{SYSTEM_ROOT}/builds"
SYSTEM_CACHE_DIR = "/var/cache/llmtp"  # CacheDirectory=llmtp
SYSTEM_CONFIG_DIR = "/etc/llmtp"

SYSTEM_ENVIRONMENT = {
    "LLMTP_STATE_DIR": SYSTEM_STATE_DIR,
    "LLMTP_DATA_DIR": SYSTEM_DATA_DIR,
    "LLMTP_CACHE_DIR": SYSTEM_CACHE_DIR,
    "LLMTP_CONFIG_DIR": SYSTEM_CONFIG_DIR,
    "LLMTP_MODELS_DIR": SYSTEM_MODELS_DIR,
}


@dataclass
class Stage:
    """One file the system unit serves from a system path: `source` linked or copied to `target`."""

    source: Path
    target: Path


def under_home(path: str | Path) -> bool:
    return str(path).startswith(HOME_PREFIXES) or str(path) in ("/home", "/root")


PRIVATE_TMP = ("/tmp/", "/var/tmp/")  # PrivateTmp=yes gives the service empty ones of its own


def check_not_in_private_tmp(paths: list[tuple[str, str]]) -> None:
    for what, path in paths:
        if str(path).startswith(PRIVATE_TMP):
            raise UsageError(
                f"The service cannot see the {what} {path}: PrivateTmp=yes gives it a /tmp and /var/tmp of its own",
                "Move it out of /tmp and /var/tmp (e.g. under /srv or your home directory) and install again.",
            )


def check_user_runtime(settings) -> None:
    """What a user unit needs to see: llmtp itself and its directories, outside the private /tmp."""
    check_not_in_private_tmp(
        [("llmtp installation", p) for p in _runtime_paths()]
        + [(f"llmtp {name} dir", str(getattr(settings, name))) for name in ("state_dir", "data_dir", "cache_dir")]
    )


def check_system_runtime() -> None:
    """A system unit cannot run llmtp from a home directory (ProtectHome=yes) or the private /tmp."""
    check_not_in_private_tmp([("llmtp installation", p) for p in _runtime_paths()])
    hidden = [p for p in _runtime_paths() if under_home(p)]
    if hidden:
        raise UsageError(
            f"The system service cannot run llmtp from {hidden[0]}: ProtectHome=yes hides home directories from it",
            "Install llmtp outside any home directory, e.g. `python3 -m venv /opt/llmtp && "
            "/opt/llmtp/bin/pip install llmtp`, and install the unit with that llmtp.",
        )


def build_stages(build_id: str, binary: Path) -> tuple[list[Stage], str]:
    """An llmtp build's whole bin dir (libraries live next to the binary) staged under
    /var/lib/llmtp/builds/BUILD_ID, and where `binary` lands there."""
    target_dir = Path(SYSTEM_BUILDS_DIR) / build_id
    stages = [Stage(f, target_dir / f.name) for f in sorted(files.list_dir(binary.parent)) if f.is_file()]
    return stages, str(target_dir / binary.name)


def _runtime_paths() -> list[str]:
    """Where the service's own Python and llmtp live: a system unit must be able to see them."""

    return [sys.executable, sys.prefix, str(Path(llmtp.__file__).resolve().parent)]


def stage_files(
    stages: list[Stage],
    *,
    root: Path = Path("/"),
    on_file: Callable[[Stage, str], None] | None = None,
    on_progress: Callable[[Stage, int, int], None] | None = None,
) -> list[str]:
    """Hard-link (same filesystem, world-readable) or copy each file to its system path under
    `root` (tests pass a temporary one); one line per file saying which."""

    lines = []
    for stage in stages:
        target = root / stage.target.relative_to("/")
        if on_file is not None:
            on_file(stage, str(target))
        progress = None if on_progress is None else (lambda d, t, s=stage: on_progress(s, d, t))
        try:
            how = link_or_copy(stage.source, target, progress)
        except OSError as exc:
            raise UsageError(
                f"Cannot put {stage.source} at {target}: {exc.strerror or exc}",
                "Run `llmtp service install --system` as root, with room for the model in /var/lib/llmtp.",
            ) from exc
        lines.append(f"{how} {stage.source} -> {stage.target}" if how != "kept" else f"kept {stage.target}")
    return lines
