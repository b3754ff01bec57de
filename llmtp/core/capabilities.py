"""What one llama.cpp binary can do, as probed from its --version, --help and --list-devices.

Every argv llmtp builds is built for this dialect: upstream renames flags every few months.
Parsers live in llmtp/core/probe.py; this module holds only the data.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

MtpDialect = Literal["upstream", "branch"]


class BuildVersion(BaseModel):
    version: str | None = None  # "0.6.0-dev" (new format only)
    build_number: int | None = None  # 11434
    commit: str | None = None  # None when the binary says "unknown"
    compiler: str | None = None  # "GNU 12.2.0"
    target: str | None = None  # "Linux x86_64"


class Device(BaseModel):
    """One line of `llama-server --list-devices`: `CUDA0: NVIDIA GeForce RTX 4060 Ti (16379 MiB, 14900 MiB free)`."""

    id: str  # "CUDA0", "ROCm0", "Vulkan0", "MTL0"
    backend: str  # "CUDA", "ROCm", "Vulkan", "MTL", ...
    name: str
    total_mib: int | None = None
    free_mib: int | None = None


class Capabilities(BaseModel):
    version: BuildVersion = Field(default_factory=BuildVersion)
    flags: list[str] = Field(default_factory=list)  # every spelling --help lists: "-m", "--model", "--spec-type", ...
    enums: dict[str, list[str]] = Field(
        default_factory=dict
    )  # flag -> accepted values, e.g. "--spec-type": [..., "draft-mtp"]
    devices: list[Device] | None = None  # None: --list-devices not probed or failed; [] = none found
    removed_flags: list[str] = Field(default_factory=list)  # listed by --help as "the argument has been removed"
    rpc_worker: str | None = None  # file name of the RPC worker beside llama-server (`llmtp build --rpc`); None: none

    def accepts(self, flag: str) -> bool:
        return flag in self.flags

    def first_of(self, *spellings: str) -> str | None:
        """The first spelling this binary accepts, or None."""
        return next((s for s in spellings if s in self.flags), None)

    @property
    def spec_types(self) -> list[str]:
        return self.enums.get("--spec-type", [])

    @property
    def mtp_dialect(self) -> MtpDialect | None:
        """upstream: `--spec-type draft-mtp`; branch: the unmerged qwen3-mtp `--mtp`/`--mtp-draft-tokens`."""
        if "draft-mtp" in self.spec_types:
            return "upstream"
        if "--mtp" in self.flags and "--mtp-draft-tokens" in self.flags:
            return "branch"
        return None
