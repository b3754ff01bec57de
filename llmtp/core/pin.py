"""The pinned upstream llama.cpp version (llmtp/data/pin.toml): model and validation, no file I/O."""

from __future__ import annotations

import sys
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from llmtp.core.vulkan_headers import CONDITIONS
from llmtp.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GitPin(_Strict):
    url: str
    tag: str = Field(min_length=1)
    commit: str | None = Field(None, pattern=r"^[0-9a-f]{7,40}$")


class PypiPin(_Strict):
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    subdir: str = "llama.cpp"  # where the sdist keeps the upstream tree, below its top directory


class Pin(_Strict):
    build: int = Field(ge=1)
    git: GitPin
    pypi: PypiPin


def validation_error(exc: ValidationError, source: str, what: str) -> ConfigError:
    """A ConfigError naming the file and the dotted key of the first problem."""
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"]) or "(top level)"
    extra = f" ({len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return ConfigError(
        f"Invalid {what} {source}: key {key!r}: {first['msg']}{extra}",
        "Fix that key; docs/build.md lists the valid keys.",
    )


def parse_toml(text: str, source: str, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Cannot parse {what} {source}: {exc}", "Fix the TOML syntax.") from exc


def parse_pin(text: str, source: str = "pin.toml") -> Pin:
    """Validate the pin file's text; `source` names the file in errors."""
    data = parse_toml(text, source, "pin file")
    try:
        return Pin.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, source, "pin file") from exc


# --- patch series ---------------------------------------------------------------------------------


class PatchEntry(_Strict):
    name: str = Field(pattern=r"^[\w.+\-]+\.patch$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    when: str | None = None  # a condition of core/vulkan_headers.CONDITIONS; None: always applied
    reason: str | None = None  # why a conditional patch applies to this build (set when planning it)


def parse_series(text: str, source: str = "series") -> list[PatchEntry]:
    """`NAME.patch SHA256 [when=CONDITION]` per line, in order; `#` starts a comment; blank lines are
    ignored. Sample lines: `0001-mtp-branch.patch 3f1c...e9` (64 hex digits);
    `vulkan-layer-settings-guard.patch 3a7c...3c when=vulkan-headers-lack-layer-settings`."""
    entries: list[PatchEntry] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        try:
            if len(parts) not in (2, 3):
                raise ValueError("expected `NAME.patch SHA256`")
            when = None
            if len(parts) == 3:
                when = parts[2].removeprefix("when=")
                if not parts[2].startswith("when=") or when not in CONDITIONS:
                    raise ConfigError(
                        f"Unknown condition {parts[2]!r} in patch series {source} line {number}",
                        f"Known conditions: {', '.join(f'when={c}' for c in CONDITIONS)}.",
                    )
            entries.append(PatchEntry(name=parts[0], sha256=parts[1].lower(), when=when))
        except (ValueError, ValidationError) as exc:
            raise ConfigError(
                f"Invalid patch series {source} line {number}: {raw.strip()!r}",
                "Each line is `NAME.patch SHA256` (sha256sum NAME.patch), optionally followed by `when=CONDITION`.",
            ) from exc
    return entries


def extract_hunk(patch_text: str, file: str | None, number: int) -> list[str]:
    """Hunk `number` (1-based) of `file` in a unified diff, header included (what `patch` rejected).
    `patch` says: `Hunk #2 FAILED at 120.` after `patching file src/llama.cpp`."""
    in_file = file is None
    count = 0
    out: list[str] = []
    for line in patch_text.splitlines():
        if line.startswith("+++ "):
            target = line[4:].split("\t")[0].strip()
            target = target[2:] if target.startswith(("a/", "b/")) else target
            in_file = file is None or target == file
            if out:
                break
            continue
        if line.startswith(("diff ", "--- ")):
            if out:
                break
            continue
        if line.startswith("@@"):
            if out:
                break
            if in_file:
                count += 1
                if count == number:
                    out.append(line)
            continue
        if out:
            out.append(line)
    return out
