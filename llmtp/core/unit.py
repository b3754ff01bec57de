"""Render the systemd unit and the launchd plist that run `llmtp serve --foreground` (pure).

Everything that reaches systemd is escaped for it: `%` starts a specifier and `$` a variable in
ExecStart=, so a model path like `/m/50%$HOME.gguf` must arrive as written. Control characters are
refused in every value (a newline would start a new directive), and so are characters a path-list
setting cannot quote.
"""

from __future__ import annotations

import re
import string
from typing import Literal
from xml.sax.saxutils import escape as xml_escape

from pydantic import BaseModel, Field

from llmtp.errors import UsageError

Scope = Literal["user", "system"]

SYSTEM_USER = "llmtp"
SYSTEM_GROUPS = ("render", "video")  # GPU device nodes (/dev/dri/renderD*, /dev/nvidia*, /dev/kfd)
HOME_PREFIXES = ("/home/", "/root/", "/run/user/")  # hidden by ProtectHome=yes
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


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


class UnitSpec(BaseModel):
    scope: Scope
    unit_name: str = "llmtp.service"
    description: str = "llmtp: llama-server supervised by llmtp"
    exec_argv: list[str]  # python -m llmtp serve MODEL ... --foreground
    environment: dict[str, str] = Field(default_factory=dict)
    environment_file: str
    read_write_paths: list[str]
    start_limit_interval_s: int = 300
    start_limit_burst: int = 5
    timeout_start_s: int = 180  # Type=notify: loading the model must fit in it
    # GPU device groups (/proc/devices names) the build needs; [] = none: PrivateDevices=yes
    device_allow: list[str] = Field(default_factory=list)
    # A system unit's SupplementaryGroups= (only a unit that opens GPU nodes has one): the groups of
    # SYSTEM_GROUPS the host has. systemd refuses to start a unit that names a missing group (216/GROUP), and
    # hosts without udev's `render` group exist; install() narrows this to the groups it found.
    supplementary_groups: list[str] = Field(default_factory=lambda: list(SYSTEM_GROUPS))
    llmtp_version: str = "0"
    generated_by: str = "llmtp service install"  # the command that writes (and rewrites) the unit
    ready_when: str = "llama-server's /health answers 200"  # when READY=1 goes out (Type=notify)


# /proc/devices group names behind each backend's device nodes: /dev/nvidia* (nvidia-frontend:
# nvidiactl, nvidia0..; nvidia-uvm; nvidia-caps), /dev/kfd (kfd), /dev/dri/* (drm).
_NVIDIA = ["char-nvidia-frontend", "char-nvidia-uvm", "char-nvidia-caps"]
_BACKEND_DEVICES = {
    "CUDA": _NVIDIA,
    "ROCM": ["char-kfd", "char-drm"],
    "HIP": ["char-kfd", "char-drm"],
    "VULKAN": ["char-drm", *_NVIDIA],
    "SYCL": ["char-drm"],
}
_NO_DEVICE_NODES = {"CPU", "BLAS", "RPC", "MTL", "METAL", "ACCEL"}


def device_groups(backends: list[str] | None) -> list[str]:
    """DeviceAllow= groups for the backends a build reported (`--list-devices`). None (not probed)
    or a backend we do not know allows every GPU class: a service that cannot see its GPU is
    worse than one that could open a GPU node it does not use."""
    known = None if backends is None else [b.upper() for b in backends]
    if known is None or any(b not in _BACKEND_DEVICES and b not in _NO_DEVICE_NODES for b in known):
        known = ["CUDA", "ROCM", "VULKAN"]
    out: list[str] = []
    for b in known:
        out += [g for g in _BACKEND_DEVICES.get(b, []) if g not in out]
    return out


def protect_home(spec: UnitSpec) -> str:
    """A system unit never needs a home directory (install stages what it serves under
    /var/lib/llmtp); a user unit runs from one, so it can only make it read-only."""
    return "yes" if spec.scope == "system" else "read-only"


def check_unit_value(value: str, what: str) -> None:
    """Control characters (a newline above all) in a value would add or cut unit directives."""
    bad = [c for c in value if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or c in "\u2028\u2029"]
    if bad:
        raise UsageError(
            f"The {what} {value!r} holds a control character ({bad[0]!r}), which a systemd unit cannot carry safely",
            "Rename the file or directory (or choose another value) without control characters.",
        )


def _check_path(path: str, what: str) -> None:
    check_unit_value(path, what)
    if not path.startswith("/") or any(c.isspace() or c in "\"'\\" for c in path):
        raise UsageError(
            f"The {what} {path!r} cannot go into a systemd path setting (it must be absolute, "
            "without whitespace, quotes or backslashes)",
            "Move it to a plain absolute path, e.g. with LLMTP_HOME=/srv/llmtp.",
        )


def render_systemd(template: str, spec: UnitSpec) -> str:
    """Fill the unit template (string.Template.substitute: a missing value is an error).

    Every interpolated value is checked for control characters, then escaped for the setting it
    lands in (see the module docstring)."""
    for arg in spec.exec_argv:
        check_unit_value(arg, "command-line word")
    for name, value in spec.environment.items():
        if not _ENV_NAME.fullmatch(name):
            raise UsageError(f"{name!r} is not a valid environment variable name", "Use letters, digits and _.")
        check_unit_value(value, f"{name} value")
    for p in spec.read_write_paths:
        _check_path(p, "writable path")
    _check_path(spec.environment_file, "environment file")
    for text, what in (
        (spec.description, "description"),
        (spec.unit_name, "unit name"),
        (spec.generated_by, "generator"),
        (spec.ready_when, "readiness"),
    ):
        check_unit_value(text, what)
        if text.endswith("\\"):  # a trailing backslash continues the line in a unit file
            raise UsageError(f"The {what} {text!r} ends in a backslash", "Drop the trailing backslash.")
    system = spec.scope == "system"
    groups = (
        f"SupplementaryGroups={' '.join(spec.supplementary_groups)}\n"
        if spec.device_allow and spec.supplementary_groups
        else ""
    )  # a CPU unit opens no GPU node
    user_lines = (
        f"User={SYSTEM_USER}\nGroup={SYSTEM_USER}\n{groups}"
        f"StateDirectory={SYSTEM_USER}/state\nCacheDirectory={SYSTEM_USER}\n"
        if system
        else ""
    )
    after_lines = "After=network-online.target\nWants=network-online.target\n" if system else ""
    if spec.device_allow and system:  # the GPU nodes only; /dev/null and friends stay (DevicePolicy=closed)
        device_lines = "DevicePolicy=closed\n" + "".join(f"DeviceAllow={g} rw\n" for g in spec.device_allow)
    elif spec.device_allow:
        # A user manager cannot attach the device-cgroup BPF program DeviceAllow= needs: leave the
        # GPU nodes as the user's own permissions allow them.
        device_lines = ""
    else:
        device_lines = "PrivateDevices=yes\n"
    # Tested for the CPU backend and CPython (tests/test_service_unit.py runs the real llama-server
    # under the kernel's equivalent, PR_SET_MDWE); GPU drivers (libcuda, ROCm) were not, so a unit
    # that opens GPU nodes leaves it out rather than risk a driver that cannot start.
    mdwe_lines = (
        "# llama.cpp's CPU backend and CPython run without writable+executable memory (tested).\n"
        "MemoryDenyWriteExecute=yes\n"
        if not spec.device_allow
        else ""
    )
    # Kernel tunables, modules, IPC and /proc of other users are root-only knobs; a user manager
    # cannot apply them.
    extra = (
        "ProtectKernelTunables=yes\nProtectKernelModules=yes\nProtectControlGroups=yes\n"
        "ProtectProc=invisible\nRemoveIPC=yes\nPrivateMounts=yes\n"
        if system
        else ""
    )
    env_lines = "".join(systemd_environment(k, v) + "\n" for k, v in sorted(spec.environment.items()))
    values = {
        "llmtp_version": spec.llmtp_version,
        "generated_by": systemd_specifiers(spec.generated_by),
        "ready_when": systemd_specifiers(spec.ready_when),
        "dropin": f"{spec.unit_name}.d/override.conf",
        "edit_command": f"systemctl {'' if system else '--user '}edit {spec.unit_name}",
        "description": systemd_specifiers(spec.description),
        "after_lines": after_lines,
        "start_limit_interval": str(spec.start_limit_interval_s),
        "start_limit_burst": str(spec.start_limit_burst),
        "timeout_start": str(spec.timeout_start_s),
        "user_lines": user_lines,
        "exec_start": systemd_exec_line(spec.exec_argv),
        "environment_file": systemd_specifiers(spec.environment_file),
        "environment_lines": env_lines,
        "protect_home": protect_home(spec),
        "read_write_paths": " ".join(systemd_specifiers(p) for p in spec.read_write_paths),
        "device_lines": device_lines,
        "mdwe_lines": mdwe_lines,
        "extra_hardening": extra,
        "wanted_by": "multi-user.target" if system else "default.target",
    }
    return string.Template(template).substitute(values)


def with_groups(spec: UnitSpec, present: list[str], template: str) -> tuple[UnitSpec, str]:
    """`spec` narrowed to the supplementary groups the host has, and its unit text: systemd refuses to start a
    unit that names a missing group (216/GROUP; a host without udev's `render` group, the nspawn test's root)."""
    narrowed = spec.model_copy(update={"supplementary_groups": [g for g in spec.supplementary_groups if g in present]})
    return narrowed, render_systemd(template, narrowed)


def render_plist(
    template: str, *, label: str, argv: list[str], environment: dict[str, str], log_path: str, llmtp_version: str = "0"
) -> str:
    args = "\n".join(f"    <string>{xml_escape(a)}</string>" for a in argv)
    env = "\n".join(
        f"    <key>{xml_escape(k)}</key>\n    <string>{xml_escape(v)}</string>" for k, v in sorted(environment.items())
    )
    return string.Template(template).substitute(
        label=xml_escape(label),
        program_arguments=args,
        environment=env,
        log_path=xml_escape(log_path),
        llmtp_version=llmtp_version,
    )
