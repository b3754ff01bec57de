"""What one llama.cpp build is asked for and planned as: the request, the plan, the progress events, and
where its patches and job count come from. services/build/pipeline.py plans and runs it; services/build/steps.py
holds the steps; both read these types from here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from llmtp.adapters import shipped
from llmtp.adapters.cpuinfo import memory, usable_cores
from llmtp.core.pin import PatchEntry
from llmtp.core.profiles import Profile, build_jobs
from llmtp.core.ui import UiMode, UiPlan
from llmtp.services.build.installed import SourceKind
from llmtp.settings import Settings


class BuildRequest(BaseModel):
    profile: str | None = None  # None: the detected recommendation
    source: SourceKind = "git"
    path: Path | None = None
    ref: str | None = None  # git tag/commit; default: the pinned tag
    cmake_args: list[str] = Field(default_factory=list)  # KEY=VALUE overrides
    jobs: int | None = None
    native: bool = True  # build for this machine (GGML_NATIVE=ON, its own GPU archs)
    make_current: bool = True
    # The web UI (core/ui.py). "off" here, so a caller that says nothing (the test bed) keeps the build
    # it had; `llmtp build`, `setup` and `upgrade` pass the build_ui setting ("auto" by default).
    ui: UiMode = "off"
    rpc: bool = False  # also the RPC backend (GGML_RPC=ON) and its worker binary, for `llmtp worker`


@dataclass(frozen=True)
class BuildEvent:
    phase: str  # "source", "ui", "preflight", "configure", "compile", "install", "probe", "done", "reused"
    text: str = ""
    done: int | None = None
    total: int | None = None


ProgressFn = Callable[[BuildEvent], None]


@dataclass
class BuildPlan:
    profile: Profile
    options: dict[str, str]  # effective cmake options (provenance included once the source is known)
    targets: list[str]
    patches: list[PatchEntry]
    ui: UiPlan | None = None  # None: a caller that planned without resolving the UI (dry runs of old callers)


def user_patches(settings: Settings) -> Path:
    """Where the user's own patch sets live (one directory per profile `patch_set`)."""
    return settings.data_dir / "patches"  # type: ignore[operator]


def patch_dir(profile: Profile, patches_root: Path | None) -> Path | None:
    """The directory of the profile's series; None for a user set when no data dir is known."""
    if profile.patch_set and patches_root is None:
        return None
    return shipped.patch_dir(profile.patch_set, patches_root)  # type: ignore[arg-type]


def default_jobs(settings: Settings) -> int:
    if settings.build_jobs:
        return settings.build_jobs
    return build_jobs(usable_cores(), memory()[1])
