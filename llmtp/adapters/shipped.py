"""The one reader of the data llmtp ships: build profiles, the patch series, unit templates, data/*.toml.

Profiles, patches and templates sit at the repository's top level; pyproject.toml maps them into the
package as `llmtp._shipped.<kind>`, so the same `importlib.resources` lookup works from a wheel and from
an editable install. Nothing here writes: user patch sets live under the data dir (see `patch_dir`).
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

PROFILES = "llmtp._shipped.build_profiles"
PATCHES = "llmtp._shipped.patches"
TEMPLATES = "llmtp._shipped.templates"
DATA = "llmtp.data"


def _root(package: str) -> Traversable:
    return resources.files(package)


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in _root(PROFILES).iterdir() if p.name.endswith(".toml"))


def profile_file(name: str) -> Traversable:
    """The profile's file; it may not exist (the caller names the known profiles)."""
    return _root(PROFILES).joinpath(f"{name}.toml")


def data_file(name: str) -> Traversable:
    """One of llmtp/data/*.toml: catalog.toml, gpus.toml, pin.toml."""
    return _root(DATA).joinpath(name)


def data_text(name: str) -> str:
    return data_file(name).read_text(encoding="utf-8")


def template_text(name: str) -> str:
    """A unit template: llmtp.service (systemd) or llmtp.plist (launchd)."""
    return _root(TEMPLATES).joinpath(name).read_text(encoding="utf-8")


def shipped_patch_dir() -> Path:
    """The patch series llmtp ships (empty: upstream needs no patch). A real directory: `git apply`
    and `patch` read the files by path."""
    return Path(str(_root(PATCHES)))


def patch_dir(patch_set: str, user_patches: Path) -> Path:
    """Where a profile's patch series lives. "" is the shipped series. A named set (a profile's
    `patch_set`) is the user's: `<data dir>/patches/<set>/`, never inside the installed package."""
    return user_patches / patch_set if patch_set else shipped_patch_dir()
