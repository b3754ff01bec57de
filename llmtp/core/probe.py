"""Pure parsers for a llama.cpp binary's --version, --help and --list-devices, filling Capabilities."""

from __future__ import annotations

import re

from llmtp.core.capabilities import BuildVersion, Capabilities, Device

# New: `version: 0.6.0-dev (build 11434, commit unknown)`; old: `version: 8783 (e21cdc11a)`.
_VERSION = re.compile(r"version: (?:(\S+) \(build (\d+), commit (\w+)\)|(\d+) \((\w+)\))")
# `built with GNU 12.2.0 for Linux x86_64` (old builds: `built with cc (Debian 12.2.0-14) 12.2.0 for x86_64-linux-gnu`)
_BUILT_WITH = re.compile(r"built with (.+?) for (.+?)\s*$", re.M)


def parse_version(text: str) -> BuildVersion:
    m = _VERSION.search(text)
    if not m:
        return BuildVersion()
    if m.group(2) is not None:
        version, build, commit = m.group(1), int(m.group(2)), m.group(3)
    else:
        version, build, commit = None, int(m.group(4)), m.group(5)
    out = BuildVersion(version=version, build_number=build, commit=None if commit == "unknown" else commit)
    b = _BUILT_WITH.search(text)
    if b:
        out.compiler, out.target = b.group(1).strip(), b.group(2).strip()
    return out


# An option line of `llama-server --help` starts with its spellings, optionally indented by two
# (llama-bench style), then the value, then 2+ spaces and the description:
#   `-fa,   --flash-attn [on|off|auto]       set Flash Attention use ('on', 'off', or 'auto', ...`
#   `--spec-type none,draft-simple,draft-eagle3,draft-mtp,...,ngram-cache`
#   `  -o, --output <csv|json|jsonl|md|sql>        output format printed to stdout (default: md)`
_OPTION_LINE = re.compile(r"^ {0,2}(-{1,2}[A-Za-z0-9].*?)(?: {2,}(.*))?$")
_FLAG = re.compile(r"^-{1,2}[A-Za-z0-9][A-Za-z0-9_\-.]*$")
_ITEM = re.compile(r"^[A-Za-z0-9_.+\-]+$")
# Description continuation lines: `allowed values: f32, f16, bf16, q8_0, ...`
_ALLOWED = re.compile(r"allowed values: (.+?)\s*$")
# `--load-mode MODE` then described choices: `   - mmap: memory-map model ...`
_CHOICE = re.compile(r"^\s{8,}- ([A-Za-z0-9_+\-]+): ")


def _enum_from_value(value: str) -> list[str] | None:
    """`[on|off|auto]`, `<0|1>`, `{none,layer,row}`, `none,draft-simple,draft-mtp` -> items; else None."""
    if "..." in value:
        return None  # `MiB0,MiB1,...`, `<0...100>`: a format, not a choice
    m = re.fullmatch(r"[\[<{](.+)[\]>}]", value)
    inner = m.group(1) if m else value
    if m is None and "," not in inner:
        return None  # a placeholder such as `N` or `FNAME`
    items = re.split(r"[|,]", inner)
    if len(items) < 2 or not all(_ITEM.match(i) for i in items):
        return None
    return items


_REMOVED = "the argument has been removed"


def parse_help(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """Every flag spelling --help lists, and flag -> accepted values (under every spelling).

    Flags upstream still lists only to reject them are left out:
    `--draft, --draft-n, --draft-max N       the argument has been removed. use --spec-draft-n-max or`
    """
    flags, enums, _ = parse_help_full(text)
    return flags, enums


def parse_help_full(text: str) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """parse_help plus the removed spellings."""
    removed: list[str] = []
    flags: list[str] = []
    enums: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        # `-fa,   --flash-attn` aligns spellings with spaces after the comma: not a column break.
        m = _OPTION_LINE.match(re.sub(r",\s+(?=-)", ", ", line))
        if m:
            head = m.group(1).strip()
            spellings: list[str] = []
            value_tokens: list[str] = []
            for token in head.replace(",", ", ").split():
                token = token.rstrip(",")
                if not token:
                    continue
                if not value_tokens and _FLAG.match(token):
                    spellings.append(token)
                else:
                    value_tokens.append(token)
            # `--spec-type a,b,c` was split at its commas above; take the value from the raw head.
            value = head.split(spellings[-1], 1)[1].strip() if spellings else ""
            if _REMOVED in (m.group(2) or ""):
                removed.extend(s for s in spellings if s not in removed)
                current = []
                continue
            current = spellings
            for s in spellings:
                if s not in flags:
                    flags.append(s)
            values = _enum_from_value(value) if value and " " not in value else None
            if values:
                for s in spellings:
                    enums[s] = values
            continue
        if not current:
            continue
        a = _ALLOWED.search(line)
        if a:
            values = [v.strip() for v in a.group(1).split(",") if v.strip()]
            for s in current:
                enums[s] = values
            continue
        c = _CHOICE.match(line)
        if c:
            for s in current:
                enums.setdefault(s, [])
                if c.group(1) not in enums[s]:
                    enums[s].append(c.group(1))
        elif line and not line.startswith(" "):
            current = []  # a section header ("----- sampling params -----")
    return [f for f in flags if f not in removed], enums, removed


# `Available devices:` then one line per device:
#   `  CUDA0: NVIDIA GeForce RTX 4060 Ti (16379 MiB, 14900 MiB free)`; with none: `  (none)`.
_DEVICE = re.compile(r"^\s*(([A-Za-z][A-Za-z_\-]*?)(\d+)): (.+?)(?: \((\d+) MiB, (\d+) MiB free\))?\s*$")


def parse_list_devices(text: str) -> list[Device] | None:
    """None when the output is not a device list at all (probe failed)."""
    if "Available devices:" not in text:
        return None
    devices: list[Device] = []
    after = text.split("Available devices:", 1)[1]
    for line in after.splitlines():
        m = _DEVICE.match(line)
        if m:
            devices.append(
                Device(
                    id=m.group(1),
                    backend=m.group(2),
                    name=m.group(4).strip(),
                    total_mib=int(m.group(5)) if m.group(5) else None,
                    free_mib=int(m.group(6)) if m.group(6) else None,
                )
            )
    return devices


def capabilities_from(version_text: str, help_text: str, devices_text: str | None) -> Capabilities:
    flags, enums, removed = parse_help_full(help_text)
    return Capabilities(
        version=parse_version(version_text),
        flags=flags,
        enums=enums,
        removed_flags=removed,
        devices=parse_list_devices(devices_text) if devices_text is not None else None,
    )
