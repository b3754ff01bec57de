"""The source and the CMake build tree of a build: one tree per (source, profile, variant), kept so an option
change rebuilds incrementally; the patched source copy and its own tree when the plan has patches."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from llmtp.adapters import files
from llmtp.adapters.files import read_json_store
from llmtp.adapters.sources import patched_copy
from llmtp.core.profiles import cmake_on
from llmtp.core.ui import ui_how_from_options
from llmtp.errors import ConfigError
from llmtp.services.build.request import BuildEvent, patch_dir, user_patches
from llmtp.settings import Settings

if TYPE_CHECKING:
    from llmtp.services.build.steps import BuildJob


class TreeState(BaseModel):
    """What llmtp last configured a build tree with (tree/llmtp-options.json)."""

    options: dict[str, str] = Field(default_factory=dict)
    generator: str | None = None
    source: str | None = None


TREE_STATE = "llmtp-options.json"


def tree_state(tree: Path) -> TreeState | None:
    """None when the tree has no state, or a damaged one. It is a cache of what CMake was told: the
    caller then configures the tree from scratch, which loses nothing."""
    try:
        return read_json_store(tree / TREE_STATE, TreeState, what="build tree state", hint="", aside=False)
    except ConfigError:
        return None


def build_tree(settings: Settings, identity: str, profile: str) -> Path:
    """One CMake build tree per (source, profile), kept so an option change rebuilds incrementally."""
    return settings.cache_dir / "build-trees" / f"{hashlib.sha256(identity.encode()).hexdigest()[:12]}-{profile}"


def tree_variant(options: dict[str, str]) -> str:
    """The build tree's suffix for options that must not share a tree with the plain build:
    - `-rpc` (GGML_RPC=ON): toggling the RPC backend rewrites ggml's configuration, so a tree shared
      between `llmtp build` and `llmtp build --rpc` recompiled nearly everything at each switch
      (measured: 216 of 216 steps for the next plain build after an RPC one);
    - `-ui` (the web UI): upstream's UI script embeds whatever tools/ui/dist a tree holds, so a tree
      that once built the UI would keep putting it into builds that asked for none."""
    return ("-rpc" if cmake_on(options.get("GGML_RPC")) else "") + (
        "-ui" if ui_how_from_options(options) is not None else ""
    )


def source_and_tree(job: BuildJob, tree: Path, generator: str | None) -> tuple[Path, Path]:
    """(source dir, build tree): the patched copy and its own tree when the plan has patches; a tree
    CMake cannot reuse (another generator or source dir, a damaged state) is started clean."""
    p, src_dir = job.plan, job.src.path  # type: ignore[attr-defined]
    if p.patches:
        job.emit(BuildEvent("source", f"applying {len(p.patches)} patch(es)"))
        ps_hash = hashlib.sha256("".join(e.sha256 for e in p.patches).encode()).hexdigest()
        src_dir = patched_copy(
            job.src,
            patch_dir(p.profile, user_patches(job.settings)),
            ps_hash,  # type: ignore[arg-type]
            job.settings.cache_dir,
            job.runner,
        )
        tree = tree.with_name(tree.name + f"-p{ps_hash[:8]}")
    old = tree_state(tree)
    if (
        (tree / "CMakeCache.txt").is_file()
        and (tree / TREE_STATE).is_file()
        and (old is None or old.generator != generator or old.source != str(src_dir))
    ):
        files.remove_tree(tree)  # CMake cannot switch generator or source dir in place; a damaged state: start clean
    files.make_dirs(tree)
    return src_dir, tree
