"""The installed-build registry: manifests, the current/previous links, use/rollback/prune/adopt, and the probe."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from llmtp import __version__
from llmtp.adapters import files, shipped
from llmtp.adapters.files import read_json_store, write_text_atomic
from llmtp.adapters.runner import Runner
from llmtp.core.capabilities import Capabilities
from llmtp.core.hardware import HardwareSnapshot
from llmtp.core.probe import capabilities_from
from llmtp.core.profiles import DEVICE_PREFIX, FoundTool, Profile, gpus_without_cuda_code, parse_profile
from llmtp.core.ui import UiRecord
from llmtp.errors import BuildError, ConfigError, UsageError
from llmtp.settings import Settings

SourceKind = Literal["git", "pypi", "path", "adopted"]


# --- shipped profiles (a build is probed against the profile it was built from) ---------------------


def load_profile(name: str) -> Profile:
    f = shipped.profile_file(name)
    if not f.is_file():
        raise UsageError(f"No build profile {name!r}", f"Profiles: {', '.join(shipped.profile_names())}.")
    return parse_profile(files.read_text(f), name, str(f))


# --- models ---------------------------------------------------------------------------------------


class PatchRecord(BaseModel):
    name: str
    sha256: str
    reason: str | None = None  # why a conditional (`when=`) patch was applied to this build


class BuildManifest(BaseModel):
    id: str
    status: Literal["ok", "failed"] = "ok"
    failure: str | None = None
    source: SourceKind
    url: str | None = None
    ref: str | None = None
    commit: str | None = None
    build_number: int | None = None
    sdist_sha256: str | None = None
    source_identity: str
    profile: str
    backend: str
    cmake_options: dict[str, str]
    targets: list[str]
    patches: list[PatchRecord] = Field(default_factory=list)
    toolchain: dict[str, FoundTool] = Field(default_factory=dict)
    inputs_hash: str
    started_at: str
    finished_at: str | None = None
    build_seconds: float | None = None
    log_file: str | None = None
    capabilities: Capabilities = Field(default_factory=Capabilities)
    ui: UiRecord | None = None  # None: built before llmtp recorded the UI (or adopted): not known
    llmtp_version: str = __version__


@dataclass
class InstalledBuild:
    id: str
    path: Path
    manifest: BuildManifest
    current: bool = False

    @property
    def bin_dir(self) -> Path:
        return self.path / "bin"

    def _bin(self, name: str) -> Path | None:
        p = self.bin_dir / name
        return p if p.is_file() else None

    @property
    def server(self) -> Path:
        return self.bin_dir / "llama-server"

    @property
    def bench(self) -> Path | None:
        return self._bin("llama-bench")

    @property
    def fit_params(self) -> Path | None:
        return self._bin("llama-fit-params")


# --- installed builds -----------------------------------------------------------------------------

MANIFEST = "manifest.json"

# The ids llmtp generates (build_id below): b11434-cpu-1a2b3c4d, bunknown-cuda-mtp-branch-1a2b3c4d,
# b11434-cpu-1a2b3c4d-adopted. An id from the user, a symlink or a manifest becomes a path under
# builds/ only when it has this shape: no separator, no `..`, nothing absolute.
BUILD_ID = re.compile(r"b(?:\d+|unknown)-[a-z0-9]+(?:-[a-z0-9]+)*-[0-9a-f]{8}(?:-adopted)?")


def is_build_id(value: object) -> bool:
    return isinstance(value, str) and BUILD_ID.fullmatch(value) is not None


def build_path(settings: Settings, build_id: str) -> Path:
    """builds/<id> for an id that came from the user or a file; a UsageError for anything that is
    not a plain build id or that would resolve outside the builds directory."""
    if not is_build_id(build_id):
        raise UsageError(
            f"{build_id!r} is not a build id",
            "Build ids look like b11434-cpu-1a2b3c4d; `llmtp builds list` shows the installed ones.",
        )
    root = settings.builds_dir
    path = root / build_id
    if path.is_symlink() or (path.exists() and path.resolve().parent != root.resolve()):
        raise UsageError(
            f"{path} is not a directory llmtp installed (it is a link)",
            "Remove it; `llmtp builds list` shows the installed builds.",
        )
    return path


@dataclass
class BrokenBuild:
    """A build directory whose manifest is missing or damaged: listed with the error, never dropped."""

    id: str
    path: Path
    error: str
    current: bool = False


def _read_manifest(file: Path) -> BuildManifest | None:
    # Not moved aside: the manifest is what identifies the build, and the build must stay listed.
    return read_json_store(
        file,
        BuildManifest,
        what="build manifest",
        aside=False,
        hint=f"The build cannot be used until it is rebuilt (`llmtp build`) or removed (delete {file.parent}).",
    )


def _read(path: Path, current_id: str | None) -> InstalledBuild | None:
    """The build at `path`; None when it has no manifest; a ConfigError naming a damaged manifest."""
    m = _read_manifest(path / MANIFEST)
    if m is None:
        return None
    return InstalledBuild(id=path.name, path=path, manifest=m, current=path.name == current_id)


def _link_target(settings: Settings, name: str) -> str | None:
    """The build id builds/<name> (current, previous) points at; None when there is no link or it
    points anywhere but at a build id beside it (a link llmtp did not write is never followed)."""
    target = files.read_link(settings.builds_dir / name)
    return target if target is not None and is_build_id(target) else None


def _build_dirs(settings: Settings) -> list[Path]:
    d = settings.builds_dir
    if not d.is_dir():
        return []
    # Temp dirs of running or interrupted builds (.tmp-*) and links are not builds.
    return sorted(p for p in files.list_dir(d) if p.is_dir() and not p.is_symlink() and is_build_id(p.name))


def list_builds(settings: Settings) -> list[InstalledBuild]:
    """Finished builds (ok and failed), oldest first; broken ones are in list_broken."""
    cur = _link_target(settings, "current")
    found = []
    for p in _build_dirs(settings):
        try:
            b = _read(p, cur)
        except ConfigError:
            continue
        if b is not None:
            found.append(b)
    return sorted(found, key=lambda b: (b.manifest.finished_at or "", b.id))


def list_broken(settings: Settings) -> list[BrokenBuild]:
    """Build directories whose manifest is missing or damaged, with the reason."""
    cur = _link_target(settings, "current")
    out = []
    for p in _build_dirs(settings):
        try:
            b = _read(p, cur)
        except ConfigError as exc:
            out.append(BrokenBuild(p.name, p, exc.message, p.name == cur))
            continue
        if b is None:
            out.append(BrokenBuild(p.name, p, f"{p / MANIFEST} is missing", p.name == cur))
    return out


def current_build(settings: Settings) -> InstalledBuild | None:
    cur = _link_target(settings, "current")
    if cur is None:
        return None
    b = _read(build_path(settings, cur), cur)
    return b if b is not None and b.manifest.status == "ok" else None


def _switch_link(settings: Settings, name: str, target: str) -> None:
    """Point builds/<name> at builds/<target> atomically: a new symlink renamed over the old one."""
    files.switch_link(settings.builds_dir / name, target)


def use_build(settings: Settings, build_id: str) -> InstalledBuild:
    b = _read(build_path(settings, build_id), None)
    if b is None:
        raise UsageError(f"No installed build {build_id!r}", "`llmtp builds list` shows the installed builds.")
    if b.manifest.status != "ok":
        raise UsageError(
            f"Build {build_id} failed its probe and cannot be used: {b.manifest.failure}",
            "Pick another build or rebuild.",
        )
    cur = _link_target(settings, "current")
    if cur == build_id:
        b.current = True
        return b
    if cur is not None and (settings.builds_dir / cur).is_dir():
        _switch_link(settings, "previous", cur)
    _switch_link(settings, "current", build_id)
    b.current = True
    return b


def rollback(settings: Settings) -> InstalledBuild:
    prev = _link_target(settings, "previous")
    if prev is None or _read(build_path(settings, prev), None) is None:
        raise UsageError(
            "There is no previous build to roll back to",
            "`llmtp builds list` shows the builds; `llmtp builds use ID` picks one.",
        )
    return use_build(settings, prev)


def adopt(settings: Settings, bin_dir: Path, runner: Runner, *, make_current: bool = True) -> InstalledBuild:
    """Register an existing llama.cpp bin dir as a build, without compiling: its files are linked,
    not copied (llmtp never owns them), and it is probed like any build before it can be current.

    An llmtp build from another home keeps its manifest's provenance (but never its id: a fresh one
    is made here, so a manifest cannot name a path); a foreign build records only what the binary
    says about itself.
    """
    bin_dir = Path(bin_dir).expanduser().resolve()
    if not (bin_dir / "llama-server").is_file():
        raise UsageError(
            f"No llama-server in {bin_dir}",
            "Point at the directory holding llama-server (a llama.cpp build's bin/ directory).",
        )
    caps = probe_binary(bin_dir, runner)
    known = bin_dir.parent / MANIFEST
    backends = [d.backend for d in caps.devices or []]
    backend = next(
        (
            name
            for name, prefixes in DEVICE_PREFIX.items()
            if prefixes and any(b.startswith(prefixes) for b in backends)
        ),
        "cpu",
    )
    digest = hashlib.sha256(f"adopted:{bin_dir}".encode()).hexdigest()[:8]
    manifest = _read_manifest(known)
    if manifest is not None:
        manifest.capabilities = caps
        name = manifest.profile if manifest.profile in shipped.profile_names() else backend
        manifest.id = build_id(caps.version.build_number, name, digest) + "-adopted"
    else:
        manifest = BuildManifest(
            id=build_id(caps.version.build_number, backend, digest) + "-adopted",
            source="adopted",
            url=str(bin_dir),
            source_identity=f"adopted:{bin_dir}",
            commit=caps.version.commit,
            build_number=caps.version.build_number,
            profile=backend,
            backend=backend,
            cmake_options={},
            targets=["llama-server"],
            inputs_hash=f"adopted:{digest}",
            started_at=utc_timestamp(),
            capabilities=caps,
        )
    failure = (
        probe_failure(load_profile(manifest.profile), caps) if manifest.profile in shipped.profile_names() else None
    )
    manifest.status, manifest.failure = ("failed", failure) if failure else ("ok", None)
    builds = settings.builds_dir
    tmp = builds / f".tmp-{manifest.id}-{os.getpid()}"
    files.remove_tree(tmp, ignore_errors=True)
    files.make_dirs(tmp / "bin")
    for f in files.list_dir(bin_dir):
        if f.is_file():
            files.symlink(f, tmp / "bin" / f.name)
    write_text_atomic(tmp / MANIFEST, manifest.model_dump_json(indent=2))
    final = build_path(settings, manifest.id)
    if final.exists():
        files.remove_tree(final)  # an earlier adoption of the same bin dir (the same id)
    files.move(tmp, final)
    if failure:
        raise BuildError(
            f"Adopted {manifest.id} but it failed its probe: {failure}",
            "It was kept for inspection but not made current.",
        )
    return (
        use_build(settings, manifest.id)
        if make_current
        else InstalledBuild(id=manifest.id, path=final, manifest=manifest)
    )


def prune(settings: Settings, keep: int) -> list[str]:
    """Delete all but the `keep` newest builds; current and previous always stay. Returns removed ids."""
    if keep < 0:
        raise UsageError("--keep must be 0 or more")
    protected = {_link_target(settings, "current"), _link_target(settings, "previous")}
    builds = list_builds(settings)
    newest = {b.id for b in builds[len(builds) - keep :]} if keep else set()
    removed = []
    for b in builds:
        if b.id not in protected and b.id not in newest:
            files.remove_tree(b.path)
            removed.append(b.id)
    return removed


def build_id(build_number: int | None, profile: str, digest: str) -> str:
    return f"b{build_number if build_number is not None else 'unknown'}-{profile}-{digest[:8]}"


def find_installed(settings: Settings, digest: str) -> InstalledBuild | None:
    for b in reversed(list_builds(settings)):
        if b.manifest.inputs_hash == digest and b.manifest.status == "ok" and b.server.is_file():
            return b
    return None


def utc_timestamp() -> str:
    # Milliseconds: list order (and so prune) must not depend on two builds finishing in one second.
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# --- probing --------------------------------------------------------------------------------------


def probe_binary(bin_dir: Path, runner: Runner, server: Path | None = None) -> Capabilities:
    """Probe bin_dir/llama-server, or `server` itself (a --server binary may have another name)."""
    server = str(server if server is not None else bin_dir / "llama-server")
    version = runner.run([server, "--version"], timeout=60)
    help_ = runner.run([server, "--help"], timeout=60)
    devices = runner.run([server, "--list-devices"], timeout=120)
    caps = capabilities_from(version.output, help_.output, devices.output)
    worker = Path(server).parent / "ggml-rpc-server"  # services/build.RPC_WORKER (a --rpc build)
    if worker.is_file():
        caps.rpc_worker = worker.name
    return caps


def probe_failure(
    profile: Profile, caps: Capabilities, options: dict[str, str] | None = None, hw: HardwareSnapshot | None = None
) -> str | None:
    """Why this binary is not what the profile promised (None: it is)."""
    if caps.version.build_number is None:
        return "llama-server --version printed no version line"
    if not caps.flags:
        return "llama-server --help listed no options"
    prefixes = DEVICE_PREFIX.get(profile.backend, ())
    if prefixes:
        if caps.devices is None:
            return "llama-server --list-devices did not print a device list"
        if not any(d.backend.startswith(prefixes) for d in caps.devices):
            return (
                f"the {profile.backend} build lists no {profile.backend} device "
                f"(found: {', '.join(d.id for d in caps.devices) or 'none'}): a silent CPU-only build, "
                "or no GPU/driver visible"
            )
    missing = gpus_without_cuda_code(options or {}, hw) if profile.backend == "cuda" else []
    if missing:
        return (
            f"it was compiled for CMAKE_CUDA_ARCHITECTURES={(options or {}).get('CMAKE_CUDA_ARCHITECTURES')}, "
            f"which cannot run on {', '.join(missing)}: rebuild without overriding the architectures"
        )
    return None
