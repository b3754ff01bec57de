"""Render the systemd unit and the launchd plist that run `llmtp serve --foreground` (pure).

Everything that reaches systemd is escaped for it: `%` starts a specifier and `$` a variable in
ExecStart=, so a model path like `/m/50%$HOME.gguf` must arrive as written.
"""

from __future__ import annotations

import string
from typing import Literal
from xml.sax.saxutils import escape as xml_escape

from pydantic import BaseModel, Field

Scope = Literal["user", "system"]

SYSTEM_USER = "llmtp"
SYSTEM_GROUPS = ("render", "video")  # GPU device nodes (/dev/dri/renderD*, /dev/nvidia*, /dev/kfd)
_HOME_PREFIXES = ("/home/", "/root/", "/run/user/")


def systemd_specifiers(value: str) -> str:
    """Escape `%` for any unit setting (specifiers are expanded everywhere)."""
    return value.replace("%", "%%")


def systemd_exec_arg(arg: str) -> str:
    """One ExecStart= word: `%` -> `%%`, `$` -> `$$`, quoted when it holds spaces, quotes or `\\`."""
    arg = systemd_specifiers(arg).replace("$", "$$")
    if arg and not any(c in arg for c in " \t\n\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_exec_line(argv: list[str]) -> str:
    return " ".join(systemd_exec_arg(a) for a in argv)


def systemd_environment(name: str, value: str) -> str:
    """`Environment="NAME=value"`: quoted as one assignment (no `$` expansion happens here)."""
    text = systemd_specifiers(f"{name}={value}")
    return 'Environment="' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def systemd_path(path: str) -> str:
    """A path in a path-list setting (ReadWritePaths=, EnvironmentFile=): only `%` is special;
    spaces would split the list, so those are refused by the caller's validation."""
    return systemd_specifiers(path)


class UnitSpec(BaseModel):
    scope: Scope
    unit_name: str = "llmtp.service"
    description: str = "llmtp: llama-server supervised by llmtp"
    exec_argv: list[str]  # python -m llmtp serve MODEL ... --foreground
    environment: dict[str, str] = Field(default_factory=dict)
    environment_file: str
    read_write_paths: list[str]
    uses_home: bool = False  # some path lives under /home: ProtectHome=read-only instead of yes
    start_limit_interval_s: int = 300
    start_limit_burst: int = 5
    llmtp_version: str = "0"


def protect_home(spec: UnitSpec, paths: list[str]) -> str:
    """`yes` hides /home; anything we need under a home directory only allows `read-only`
    (ReadWritePaths= then reopens the state dir)."""
    if spec.scope == "user" or any(p.startswith(_HOME_PREFIXES) for p in paths):
        return "read-only"
    return "yes"


def render_systemd(template: str, spec: UnitSpec, paths_used: list[str]) -> str:
    """Fill the unit template (string.Template.substitute: a missing value is an error)."""
    for p in spec.read_write_paths + [spec.environment_file]:
        if any(c.isspace() for c in p):
            raise ValueError(f"systemd path lists cannot hold whitespace: {p!r}")
    system = spec.scope == "system"
    user_lines = (f"User={SYSTEM_USER}\nGroup={SYSTEM_USER}\nSupplementaryGroups={' '.join(SYSTEM_GROUPS)}\n"
                  f"StateDirectory={SYSTEM_USER}\n" if system else "")
    after_lines = "After=network-online.target\nWants=network-online.target\n" if system else ""
    # Kernel tunables and modules are root-only knobs; a user manager cannot apply them.
    extra = "ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectControlGroups=yes\n" if system else ""
    env_lines = "".join(systemd_environment(k, v) + "\n" for k, v in sorted(spec.environment.items()))
    values = {
        "llmtp_version": spec.llmtp_version,
        "dropin": f"{spec.unit_name}.d/override.conf",
        "edit_command": f"systemctl {'' if system else '--user '}edit {spec.unit_name}",
        "description": systemd_specifiers(spec.description),
        "after_lines": after_lines,
        "start_limit_interval": str(spec.start_limit_interval_s),
        "start_limit_burst": str(spec.start_limit_burst),
        "user_lines": user_lines,
        "exec_start": systemd_exec_line(spec.exec_argv),
        "environment_file": systemd_path(spec.environment_file),
        "environment_lines": env_lines,
        "protect_home": protect_home(spec, paths_used),
        "read_write_paths": " ".join(systemd_path(p) for p in spec.read_write_paths),
        "extra_hardening": extra,
        "wanted_by": "multi-user.target" if system else "default.target",
    }
    return string.Template(template).substitute(values)


def render_plist(template: str, *, label: str, argv: list[str], environment: dict[str, str],
                 log_path: str, llmtp_version: str = "0") -> str:
    args = "\n".join(f"    <string>{xml_escape(a)}</string>" for a in argv)
    env = "\n".join(f"    <key>{xml_escape(k)}</key>\n    <string>{xml_escape(v)}</string>"
                    for k, v in sorted(environment.items()))
    return string.Template(template).substitute(
        label=xml_escape(label), program_arguments=args, environment=env,
        log_path=xml_escape(log_path), llmtp_version=llmtp_version)
