"""The llama.cpp build pipeline: source -> preflight -> configure -> compile -> install -> probe -> switch current."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, Field

from llmtp.adapters import shipped
from llmtp.adapters.files import read_json_store, write_text_atomic
from llmtp.adapters.runner import Runner
from llmtp.core.buildlog import Progress, distill, parse_progress
from llmtp.core.hardware import HardwareSnapshot
from llmtp.core.pin import PatchEntry, Pin, parse_pin, parse_series
from llmtp.core.profiles import (CUDA_ARCHS, GFX_TARGETS, FoundTool, Profile, build_jobs, cmake_build_argv,
                                 cmake_configure_argv, effective_cmake_options, parse_cmake_args,
                                 parse_tool_version, preflight_problems)
from llmtp.errors import BuildError, ConfigError, UsageError
from llmtp.services.builds import (MANIFEST, BuildManifest, InstalledBuild, PatchRecord, SourceKind, _now,
                                   build_id, current_build, find_installed, load_profile, probe_binary,
                                   probe_failure, use_build)
from llmtp.services.builds import adopt, list_builds, profile_names, prune, rollback
from llmtp.settings import Settings

# The registry moved to llmtp.services.builds; these stay importable from here for older callers.
_REEXPORTED = (adopt, list_builds, profile_names, prune, rollback)


# --- shipped data ---------------------------------------------------------------------------------

def load_pin() -> Pin:
    f = shipped.data_file("pin.toml")
    return parse_pin(f.read_text(encoding="utf-8"), str(f))


def user_patches(settings: Settings) -> Path:
    """Where the user's own patch sets live (one directory per profile `patch_set`)."""
    return settings.data_dir / "patches"  # type: ignore[operator]


def patch_dir(profile: Profile, patches_root: Path | None) -> Path | None:
    """The directory of the profile's series; None for a user set when no data dir is known."""
    if profile.patch_set and patches_root is None:
        return None
    return shipped.patch_dir(profile.patch_set, patches_root)  # type: ignore[arg-type]


def load_patches(profile: Profile, patches_root: Path | None = None) -> list[PatchEntry]:
    """The profile's patches in order. A named set is read from `patches_root` (the data dir's
    patches/, see `user_patches`); the shipped series otherwise."""
    d = patch_dir(profile, patches_root)
    series = d / "series" if d is not None else None
    entries = (parse_series(series.read_text(encoding="utf-8"), str(series))
               if series is not None and series.is_file() else [])
    if profile.require_patches and not entries:
        where = series or Path("<data dir>/patches", profile.patch_set, "series")
        raise ConfigError(f"Profile {profile.name} needs a patch set, but {where} lists no patch",
                          "llmtp ships no patch for this profile. Upstream MTP needs none: use --profile "
                          f"cuda. To build the branch dialect, put its patch into {where.parent} and "
                          "list it in that series file as `NAME.patch SHA256` (sha256sum NAME.patch).")
    return entries


# --- models ---------------------------------------------------------------------------------------

class BuildRequest(BaseModel):
    profile: str | None = None  # None: the detected recommendation
    source: SourceKind = "git"
    path: Path | None = None
    ref: str | None = None  # git tag/commit; default: the pinned tag
    cmake_args: list[str] = Field(default_factory=list)  # KEY=VALUE overrides
    jobs: int | None = None
    native: bool = True  # build for this machine (GGML_NATIVE=ON, its own GPU archs)
    make_current: bool = True


@dataclass(frozen=True)
class BuildEvent:
    phase: str  # "source", "preflight", "configure", "compile", "install", "probe", "done", "reused"
    text: str = ""
    done: int | None = None
    total: int | None = None


ProgressFn = Callable[[BuildEvent], None]


# --- planning -------------------------------------------------------------------------------------

@dataclass
class BuildPlan:
    profile: Profile
    options: dict[str, str]  # effective cmake options (provenance included once the source is known)
    targets: list[str]
    patches: list[PatchEntry]


def _needs_hw(profile: Profile) -> bool:
    return any(v in (CUDA_ARCHS, GFX_TARGETS) for v in profile.cmake.values())


def detect_if_needed(profile_name: str | None, hw: HardwareSnapshot | None) -> HardwareSnapshot | None:
    if hw is not None:
        return hw
    if profile_name is not None and not _needs_hw(load_profile(profile_name)):
        return None
    try:
        from llmtp.services.detect import detect_hardware
    except ImportError:  # detection not available: GPU values must come from --cmake-arg
        return None
    return detect_hardware()


def provenance_options(source: SourceKind, ref: str | None, pin: Pin, *, is_git: bool,
                       commit: str | None, build_number: int | None) -> dict[str, str]:
    """Without a full git checkout upstream's CMake says `build 0, commit unknown` (or reads the commit
    of an enclosing repository): pass what llmtp knows instead."""
    out: dict[str, str] = {}
    if build_number is not None:
        out["LLAMA_BUILD_NUMBER"] = str(build_number)
    if not is_git:
        # An explicit value also stops CMake from picking up the HEAD of a repo the tree happens to sit in.
        out["LLAMA_BUILD_COMMIT"] = commit[:9] if commit else "unknown"
    return out


def plan(request: BuildRequest, hw: HardwareSnapshot | None, pin: Pin,
         provenance: dict[str, str] | None = None, patches_root: Path | None = None) -> BuildPlan:
    name = request.profile or (hw.recommendation.profile if hw else "cpu")
    profile = load_profile(name)
    patches = load_patches(profile, patches_root)
    overrides = parse_cmake_args(request.cmake_args)
    options = effective_cmake_options(profile, hw, native=request.native, overrides=overrides,
                                      provenance=provenance, cpu_flags=_cpu_flags(hw, request.native))
    return BuildPlan(profile, options, list(profile.targets), patches)


def _cpu_flags(hw: HardwareSnapshot | None, native: bool) -> list[str] | None:
    """This CPU's flags for a native build whose profile detected nothing (None: the core reads
    them from `hw`, or a portable build needs none)."""
    if hw is not None or not native:
        return None
    if sys.platform != "linux":
        return []  # AMX is x86 Linux; macOS sysctl names no AMX flag
    from llmtp.adapters.cpuinfo import read_proc_cpuinfo
    from llmtp.core.cpu_parse import parse_proc_cpuinfo

    text = read_proc_cpuinfo()
    return parse_proc_cpuinfo(text).flags if text else []


def inputs_hash(identity: str, p: BuildPlan) -> str:
    """What makes two builds the same: source, profile, options, targets, patches, environment."""
    data = {"source": identity, "profile": p.profile.name, "options": sorted(p.options.items()),
            "targets": p.targets, "patches": [(e.name, e.sha256) for e in p.patches],
            "env": sorted(p.profile.env.items())}
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# --- running a build ------------------------------------------------------------------------------

def find_tools(profile: Profile, runner: Runner) -> dict[str, FoundTool]:
    found: dict[str, FoundTool] = {}
    for spec in profile.tools:
        path = next((p for c in spec.commands if (p := runner.which(c))), None)
        version = None
        if path:
            try:
                done = runner.run([path, *spec.version_args], timeout=30)
                version = parse_tool_version(done.output, spec.version_regex)
            except Exception:  # a tool that cannot print its version is still usable; version unknown
                version = None
        found[spec.name] = FoundTool(name=spec.name, path=path, version=version)
    return found


def default_jobs(settings: Settings) -> int:
    if settings.build_jobs:
        return settings.build_jobs
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return build_jobs(cores, psutil.virtual_memory().available)


def fetch_source(settings: Settings, request: BuildRequest, pin: Pin, runner: Runner):
    from llmtp.adapters import sources

    if request.source == "pypi":
        if request.ref and request.ref not in (pin.pypi.version, f"b{pin.build}"):
            raise UsageError(f"--source pypi builds only the pinned version ({pin.pypi.version})",
                             "Use --source git --ref REF for another version.")
        return sources.fetch_pypi(pin, settings.cache_dir, runner, offline=settings.offline)
    if request.source == "path":
        if request.path is None:
            raise UsageError("--source path needs --path DIR")
        return sources.use_path(request.path, runner)
    return sources.fetch_git(pin.git.url, request.ref or pin.git.tag, settings.cache_dir, runner,
                             offline=settings.offline)


def _build_tree(settings: Settings, identity: str, profile: str) -> Path:
    """One CMake build tree per (source, profile), kept so an option change rebuilds incrementally."""
    return settings.cache_dir / "build-trees" / f"{hashlib.sha256(identity.encode()).hexdigest()[:12]}-{profile}"


class TreeState(BaseModel):
    """What llmtp last configured a build tree with (tree/llmtp-options.json)."""

    options: dict[str, str] = Field(default_factory=dict)
    generator: str | None = None
    source: str | None = None


TREE_STATE = "llmtp-options.json"


def _tree_state(tree: Path) -> TreeState | None:
    """None when the tree has no state, or a damaged one. It is a cache of what CMake was told: the
    caller then configures the tree from scratch, which loses nothing."""
    try:
        return read_json_store(tree / TREE_STATE, TreeState, what="build tree state", hint="", aside=False)
    except ConfigError:
        return None


def _configure_argv(cmake: str, src: Path, tree: Path, options: dict[str, str], generator: str | None,
                    launcher: str | None) -> list[str]:
    """Configure argv, with `-U` for options a previous llmtp configure of this tree set and this one
    does not: CMake would otherwise keep the stale cached value."""
    previous = (_tree_state(tree) or TreeState()).options
    argv = cmake_configure_argv(cmake, str(src), str(tree), options, generator=generator, launcher=launcher)
    for key in sorted(set(previous) - set(options)):
        argv.append(f"-U{key}")
    return argv


def _stream(runner: Runner, argv: list[str], log, emit: ProgressFn, phase: str, env: dict[str, str],
            cwd: Path | None = None) -> int:
    log.write(f"\n$ {' '.join(argv)}\n")
    log.flush()

    def on_line(line: str) -> None:
        p: Progress | None = parse_progress(line)
        if p is not None:
            emit(BuildEvent(phase, p.text, p.done, p.total))

    rc = runner.stream(argv, on_line=on_line, log=log, cwd=cwd, env=env or None)
    log.flush()  # the distiller reads the file back on failure
    return rc


def _fail(message: str, log_path: Path, hint: str) -> BuildError:
    d = distill(log_path.read_text(encoding="utf-8", errors="replace"))
    return BuildError(message, f"{hint} Full log: {log_path}", details=d.lines())


def build(settings: Settings, request: BuildRequest, runner: Runner,
          on_progress: ProgressFn | None = None, *, hw: HardwareSnapshot | None = None,
          configure_only: bool = False) -> InstalledBuild:
    """Build, install, probe; switch current when asked and the probe passed. Reuses an identical build.

    `configure_only`: stop after a successful CMake configure (checks a toolchain in seconds) and raise
    nothing; the return value is then the current build, if any.
    """
    from filelock import FileLock

    emit = on_progress or (lambda e: None)
    pin = load_pin()
    hw = detect_if_needed(request.profile, hw)
    emit(BuildEvent("source", f"getting the {request.source} source"))
    src = fetch_source(settings, request, pin, runner)
    prov = provenance_options(request.source, src.ref, pin, is_git=src.is_git, commit=src.commit,
                              build_number=src.build_number)
    p = plan(request, hw, pin, provenance=prov, patches_root=user_patches(settings))
    src.patches = p.patches
    digest = inputs_hash(src.identity, p)
    number = p.options.get("LLAMA_BUILD_NUMBER", "")
    src.build_number = int(number) if number.isdigit() else src.build_number  # a --cmake-arg wins
    bid = build_id(src.build_number, p.profile.name, digest)

    # One build of these inputs at a time, and the "already installed" check under the same lock: a
    # second `llmtp build` started meanwhile waits, then finds and reuses the first one's build
    # instead of compiling again and installing over (deleting) it.
    locks = settings.cache_dir / "build-locks"
    locks.mkdir(parents=True, exist_ok=True)
    with FileLock(str(locks / f"{digest[:32]}.lock")):
        existing = None if configure_only else find_installed(settings, digest)
        if existing is not None:
            emit(BuildEvent("reused", existing.id))
            return use_build(settings, existing.id) if request.make_current else existing
        return _build_locked(settings, request, runner, emit, p, src, digest, bid, hw, configure_only)


def _build_locked(settings: Settings, request: BuildRequest, runner: Runner, emit: ProgressFn, p: BuildPlan,
                  src, digest: str, bid: str, hw: HardwareSnapshot | None, configure_only: bool) -> InstalledBuild:
    from filelock import FileLock

    found = find_tools(p.profile, runner)
    problems = preflight_problems(p.profile, found, p.options, hw.os if hw else _os_name())
    problems += _cuda_library_problems(p.profile, found)
    if problems:
        first = problems[0]
        first.details = [e.render() for e in problems[1:]] + first.details
        raise first
    cmake = found["cmake"].path or "cmake"
    generator = "Ninja" if found.get("ninja") and found["ninja"].path else None
    launcher = found["ccache"].path if found.get("ccache") and found["ccache"].path else None

    tree = _build_tree(settings, src.identity, p.profile.name)
    tree.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(tree) + ".lock"):
        src_dir = src.path
        if p.patches:
            from llmtp.adapters.sources import patched_copy

            emit(BuildEvent("source", f"applying {len(p.patches)} patch(es)"))
            ps_hash = hashlib.sha256("".join(e.sha256 for e in p.patches).encode()).hexdigest()
            src_dir = patched_copy(src, patch_dir(p.profile, user_patches(settings)), ps_hash, settings.cache_dir, runner)
            tree = tree.with_name(tree.name + f"-p{ps_hash[:8]}")
        cache = tree / "CMakeCache.txt"
        old = _tree_state(tree)
        if cache.is_file() and (tree / TREE_STATE).is_file() and (
                old is None or old.generator != generator or old.source != str(src_dir)):
            shutil.rmtree(tree)  # CMake cannot switch generator or source dir in place; a damaged state: start clean
        tree.mkdir(parents=True, exist_ok=True)
        logs = settings.state_dir / "build-logs"
        logs.mkdir(parents=True, exist_ok=True)
        log_path = logs / f"{bid}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        started, t0 = _now(), time.monotonic()
        env = dict(p.profile.env)
        jobs = request.jobs or default_jobs(settings)
        with log_path.open("w", encoding="utf-8", buffering=1) as log:
            emit(BuildEvent("configure", " ".join(f"-D{k}={v}" for k, v in p.options.items())))
            argv = _configure_argv(cmake, src_dir, tree, p.options, generator, launcher)
            if _stream(runner, argv, log, emit, "configure", env) != 0:
                raise _fail(f"CMake configure failed for profile {p.profile.name}", log_path,
                            "Fix what is named below (a missing toolkit or library), then run the build again.")
            write_text_atomic(tree / TREE_STATE, TreeState(options=p.options, generator=generator,
                                                           source=str(src_dir)).model_dump_json())
            if configure_only:
                emit(BuildEvent("done", f"configured {tree}"))
                return current_build(settings)  # type: ignore[return-value]
            targets = _available_targets(runner, cmake, tree, p.targets, p.profile.optional_targets)
            emit(BuildEvent("compile", f"{len(targets)} targets, {jobs} jobs", 0, None))
            if _stream(runner, cmake_build_argv(cmake, str(tree), targets, jobs), log, emit, "compile", env) != 0:
                raise _fail(f"Compiling llama.cpp failed for profile {p.profile.name}", log_path,
                            "The first errors are below.")
        emit(BuildEvent("install", bid))
        return _install_and_probe(settings, request, runner, emit, p, src, found, digest, bid, tree, targets,
                                  started, time.monotonic() - t0, log_path, hw)


def _cuda_library_problems(profile: Profile, found: dict[str, FoundTool]) -> list:
    """ggml-cuda links cuBLAS; a toolkit without it fails at CMake's generate step (seen with a bare
    nvcc 13.0 install), so look for it next to nvcc before configuring."""
    from llmtp.errors import ToolMissingError

    nvcc = found.get("nvcc")
    if profile.backend != "cuda" or nvcc is None or nvcc.path is None:
        return []
    root = Path(nvcc.path).resolve().parent.parent
    roots = [root] + [Path(r) for r in (os.environ.get("CUDA_PATH"), os.environ.get("CUDAToolkit_ROOT"),
                                        "/usr/local/cuda") if r]  # nvcc may be a wrapper script on PATH
    dirs = [d for r in roots for d in (r / "lib64", r / "lib", *r.glob("targets/*/lib"))]
    dirs += [Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu")]
    if any(any(d.glob("libcublas.so*")) or (d / "libcublas_static.a").is_file() for d in dirs if d.is_dir()):
        return []
    return [ToolMissingError(f"cuBLAS not found for the CUDA toolkit at {root} (nvcc {nvcc.version})",
                             "Install NVIDIA's libcublas-dev-X-Y (or cuda-libraries-dev-X-Y) matching nvcc; "
                             "Debian's nvidia-cuda-toolkit includes it.")]


def _os_name() -> str:
    import sys

    return {"linux": "linux", "darwin": "darwin", "win32": "windows"}.get(sys.platform, sys.platform)


def _available_targets(runner: Runner, cmake: str, tree: Path, targets: list[str],
                       optional: list[str]) -> list[str]:
    """Drop optional targets this source tree does not define (llama-fit-params is recent)."""
    done = runner.run([cmake, "--build", str(tree), "--target", "help"], timeout=120)
    listed = done.output if done.returncode == 0 else ""
    return [t for t in targets if t not in optional or not listed or f"{t}:" in listed or f" {t}" in listed]


def _install_and_probe(settings, request, runner, emit, p: BuildPlan, src, found, digest, bid, tree,
                       targets, started, seconds, log_path, hw: HardwareSnapshot | None) -> InstalledBuild:
    builds = settings.builds_dir
    builds.mkdir(parents=True, exist_ok=True)
    for stale in builds.glob(f".tmp-{bid}-*"):  # left by an interrupted install of the same build
        shutil.rmtree(stale, ignore_errors=True)
    tmp = builds / f".tmp-{bid}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "bin").mkdir(parents=True)
    built = tree / "bin"
    for t in targets:
        if not (built / t).is_file():
            raise BuildError(f"The build finished but {built / t} is missing", f"See {log_path}.")
        shutil.copy2(built / t, tmp / "bin" / t)
    for lib in list(built.glob("*.so*")) + list(built.glob("*.dylib")) + list(built.glob("*.metal")):
        shutil.copy2(lib, tmp / "bin" / lib.name)  # shared-library builds need their libs beside the binary
    emit(BuildEvent("probe", "llama-server --version / --help / --list-devices"))
    caps = probe_binary(tmp / "bin", runner)
    failure = probe_failure(p.profile, caps, p.options, hw)
    manifest = BuildManifest(
        id=bid, status="failed" if failure else "ok", failure=failure, source=request.source, url=src.url,
        ref=src.ref, commit=src.commit, build_number=src.build_number, sdist_sha256=src.sdist_sha256,
        source_identity=src.identity, profile=p.profile.name, backend=p.profile.backend,
        cmake_options=p.options, targets=targets,
        patches=[PatchRecord(name=e.name, sha256=e.sha256) for e in p.patches],
        toolchain=found, inputs_hash=digest, started_at=started, finished_at=_now(),
        build_seconds=round(seconds, 1), log_file=str(log_path), capabilities=caps)
    write_text_atomic(tmp / MANIFEST, manifest.model_dump_json(indent=2))
    final = builds / bid
    if final.exists():
        shutil.rmtree(final)  # a failed or broken earlier attempt with the same inputs
    os.replace(tmp, final)  # only now does the build exist under its name
    installed = InstalledBuild(id=bid, path=final, manifest=manifest)
    if failure:
        raise BuildError(f"Build {bid} failed its probe: {failure}",
                         "It was kept for inspection but not made current. Check the GPU driver "
                         f"(`llmtp detect`) and the log {log_path}.")
    emit(BuildEvent("done", bid))
    if request.make_current:
        return use_build(settings, bid)
    return installed


def dry_run(settings: Settings, request: BuildRequest, *, hw: HardwareSnapshot | None = None) -> dict:
    """What `build` would do, without fetching or compiling: profile, effective options, targets, patches."""
    pin = load_pin()
    hw = detect_if_needed(request.profile, hw)
    if request.source == "pypi":
        number, is_git, commit, ref = pin.build, False, pin.git.commit, pin.pypi.version
    elif request.source == "git":
        from llmtp.adapters.sources import build_number_from_ref

        ref = request.ref or pin.git.tag
        number, is_git, commit = build_number_from_ref(ref), True, None
    else:
        number, is_git, commit, ref = None, (request.path / ".git").exists() if request.path else False, None, None
    prov = provenance_options(request.source, ref, pin, is_git=is_git, commit=commit, build_number=number)
    p = plan(request, hw, pin, provenance=prov, patches_root=user_patches(settings))
    return {"profile": p.profile.name, "backend": p.profile.backend, "source": request.source,
            "url": pin.git.url if request.source == "git" else (str(request.path) if request.path else
                                                                 f"pypi:{pin.pypi.name}=={pin.pypi.version}"),
            "ref": ref, "cmake_options": p.options, "targets": p.targets,
            "patches": [e.model_dump() for e in p.patches], "jobs": request.jobs or default_jobs(settings),
            "make_current": request.make_current}
