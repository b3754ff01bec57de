"""The llama.cpp build service: shipped pin and patches, the plan and its inputs hash, and `build` (fetch the
source, then the steps of services/build/steps.py under the inputs' lock: preflight -> configure -> compile ->
install -> probe -> switch current). The request, plan and event types are services/build/request.py's."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

from llmtp.adapters import files, shipped, sources
from llmtp.adapters.cpuinfo import read_proc_cpuinfo
from llmtp.adapters.runner import Runner
from llmtp.adapters.sources import build_number_from_ref
from llmtp.adapters.vulkan_sdk import installed_vulkan_headers
from llmtp.core.cpu_parse import parse_proc_cpuinfo
from llmtp.core.hardware import HardwareSnapshot
from llmtp.core.pin import PatchEntry, Pin, parse_pin, parse_series
from llmtp.core.profiles import CUDA_ARCHS, GFX_TARGETS, Profile, effective_cmake_options, parse_cmake_args
from llmtp.core.ui import BUCKET_URL, NO_UI_HINT, UiPlan, choose_ui, node_major, ui_cmake_options
from llmtp.core.vulkan_headers import VulkanHeaders, condition_holds
from llmtp.errors import ConfigError, UsageError
from llmtp.services.build.installed import InstalledBuild, SourceKind, build_id, find_installed, load_profile, use_build
from llmtp.services.build.request import (
    BuildEvent,
    BuildPlan,
    BuildRequest,
    ProgressFn,
    default_jobs,
    patch_dir,
    user_patches,
)
from llmtp.services.build.steps import BuildJob, run_steps
from llmtp.services.machine.detect import detect_hardware
from llmtp.settings import Settings

# The RPC worker binary of `llmtp build --rpc` (tools/rpc/ in b11434; older trees called it rpc-server).
RPC_WORKER = "ggml-rpc-server"


# --- shipped data ---------------------------------------------------------------------------------


def load_pin() -> Pin:
    f = shipped.data_file("pin.toml")
    return parse_pin(files.read_text(f), str(f))


def load_patches(
    profile: Profile, patches_root: Path | None = None, vulkan: VulkanHeaders | None = None
) -> list[PatchEntry]:
    """The profile's patches in order. A named set is read from `patches_root` (the data dir's
    patches/, see `user_patches`); the shipped series otherwise. A `when=` patch is kept only where its
    condition holds for this profile's backend and these headers, with the reason attached."""
    d = patch_dir(profile, patches_root)
    series = d / "series" if d is not None else None
    listed = parse_series(files.read_text(series), str(series)) if series is not None and series.is_file() else []
    entries = []
    for e in listed:
        reason = condition_holds(e.when, profile.backend, vulkan) if e.when else None
        if e.when is None or reason is not None:
            entries.append(e.model_copy(update={"reason": reason}))
    if profile.require_patches and not entries:
        where = series or Path("<data dir>/patches", profile.patch_set, "series")
        raise ConfigError(
            f"Profile {profile.name} needs a patch set, but {where} lists no patch",
            "llmtp ships no patch for this profile. Upstream MTP needs none: use --profile "
            f"cuda. To build the branch dialect, put its patch into {where.parent} and "
            "list it in that series file as `NAME.patch SHA256` (sha256sum NAME.patch).",
        )
    return entries


# --- planning -------------------------------------------------------------------------------------


def _needs_hw(profile: Profile) -> bool:
    return any(v in (CUDA_ARCHS, GFX_TARGETS) for v in profile.cmake.values())


def detect_if_needed(profile_name: str | None, hw: HardwareSnapshot | None) -> HardwareSnapshot | None:
    if hw is not None:
        return hw
    if profile_name is not None and not _needs_hw(load_profile(profile_name)):
        return None

    return detect_hardware()


def provenance_options(
    source: SourceKind, ref: str | None, pin: Pin, *, is_git: bool, commit: str | None, build_number: int | None
) -> dict[str, str]:
    """Without a full git checkout upstream's CMake says `build 0, commit unknown` (or reads the commit
    of an enclosing repository): pass what llmtp knows instead."""
    out: dict[str, str] = {}
    if build_number is not None:
        out["LLAMA_BUILD_NUMBER"] = str(build_number)
    if not is_git:
        # An explicit value also stops CMake from picking up the HEAD of a repo the tree happens to sit in.
        out["LLAMA_BUILD_COMMIT"] = commit[:9] if commit else "unknown"
    return out


def plan(
    request: BuildRequest,
    hw: HardwareSnapshot | None,
    pin: Pin,
    provenance: dict[str, str] | None = None,
    patches_root: Path | None = None,
    ui: UiPlan | None = None,
    vulkan: VulkanHeaders | None = None,
) -> BuildPlan:
    """`vulkan`: the Vulkan headers the build compiles against (read from this machine for a vulkan
    profile when not given); they decide the header-conditional patches."""
    name = request.profile or (hw.recommendation.profile if hw else "cpu")
    profile = load_profile(name)
    if vulkan is None and profile.backend == "vulkan":
        vulkan = installed_vulkan_headers()
    patches = load_patches(profile, patches_root, vulkan)
    # The UI's options sit under the user's --cmake-arg, which may still set them by hand.
    overrides = ui_cmake_options(ui.how if ui else None) | parse_cmake_args(request.cmake_args)
    options = effective_cmake_options(
        profile,
        hw,
        native=request.native,
        overrides=overrides,
        provenance=provenance,
        cpu_flags=_cpu_flags(hw, request.native),
    )
    targets = list(profile.targets)
    if request.rpc:
        if options.get("GGML_RPC", "ON").upper() not in ("ON", "1", "TRUE"):
            raise UsageError(
                f"--rpc builds with GGML_RPC=ON, but --cmake-arg sets GGML_RPC={options['GGML_RPC']}",
                "Drop that --cmake-arg, or build without --rpc.",
            )
        # Added only on request: a build without --rpc keeps its options, and so its inputs hash.
        options["GGML_RPC"] = "ON"
        targets.append(RPC_WORKER)
    return BuildPlan(profile, options, targets, patches, ui)


def resolve_ui(settings: Settings, request: BuildRequest, runner: Runner, pin: Pin) -> UiPlan:
    """How this build gets its web UI: the bucket asked with a short timeout, then Node.js and npm looked
    up. Nothing is asked when the request turns the UI off."""

    if request.ui == "off":
        return choose_ui("off", bucket_ok=None, node_version=None, npm=False)

    bucket_ok = None
    if not settings.offline:
        from llmtp.adapters.http import url_answers

        bucket_ok = url_answers(BUCKET_URL.format(version=f"b{pin.build}"), timeout=5.0)
    node, npm = runner.which("node"), runner.which("npm")
    major = None
    if node:
        try:
            major = node_major(runner.run([node, "--version"], timeout=30).output)
        except Exception:  # a node that cannot say its version is not one to build with
            major = None
    return choose_ui(request.ui, bucket_ok=bucket_ok, node_version=major, npm=npm is not None)


def _cpu_flags(hw: HardwareSnapshot | None, native: bool) -> list[str] | None:
    """This CPU's flags for a native build whose profile detected nothing (None: the core reads
    them from `hw`, or a portable build needs none)."""
    if hw is not None or not native:
        return None
    if sys.platform != "linux":
        return []  # AMX is x86 Linux; macOS sysctl names no AMX flag

    text = read_proc_cpuinfo()
    return parse_proc_cpuinfo(text).flags if text else []


def inputs_hash(identity: str, p: BuildPlan) -> str:
    """What makes two builds the same: source, profile, options, targets, patches, environment."""
    data = {
        "source": identity,
        "profile": p.profile.name,
        "options": sorted(p.options.items()),
        "targets": p.targets,
        "patches": [(e.name, e.sha256) for e in p.patches],
        "env": sorted(p.profile.env.items()),
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


# --- running a build ------------------------------------------------------------------------------


def fetch_source(settings: Settings, request: BuildRequest, pin: Pin, runner: Runner):
    if request.source == "pypi":
        if request.ref and request.ref not in (pin.pypi.version, f"b{pin.build}"):
            raise UsageError(
                f"--source pypi builds only the pinned version ({pin.pypi.version})",
                "Use --source git --ref REF for another version.",
            )
        return sources.fetch_pypi(pin, settings.cache_dir, offline=settings.offline)
    if request.source == "path":
        if request.path is None:
            raise UsageError("--source path needs --path DIR")
        return sources.use_path(request.path, runner)
    return sources.fetch_git(
        pin.git.url, request.ref or pin.git.tag, settings.cache_dir, runner, offline=settings.offline
    )


def build(
    settings: Settings,
    request: BuildRequest,
    runner: Runner,
    on_progress: ProgressFn | None = None,
    *,
    hw: HardwareSnapshot | None = None,
    configure_only: bool = False,
    ui: UiPlan | None = None,
    pin: Pin | None = None,
) -> InstalledBuild:
    """Build, install, probe; switch current when asked and the probe passed. Reuses an identical build.

    `configure_only`: stop after a successful CMake configure (checks a toolchain in seconds) and raise
    nothing; the return value is then the current build, if any. `ui`: the UI plan already resolved
    (`resolve_ui`) by a caller that showed it; resolved here otherwise. `pin`: another release's pin
    (the test bed's older release, llmtp/testbed/releases.py), fetched and sha256-checked exactly as the
    shipped pin is; the shipped pin by default.
    """
    from filelock import FileLock

    emit = on_progress or (lambda e: None)
    pin = pin or load_pin()
    hw = detect_if_needed(request.profile, hw)
    if ui is None:
        ui = resolve_ui(settings, request, runner, pin)
        if request.ui != "off":
            emit(BuildEvent("ui", ui_line(ui)))
    emit(BuildEvent("source", f"getting the {request.source} source"))
    src = fetch_source(settings, request, pin, runner)
    prov = provenance_options(
        request.source, src.ref, pin, is_git=src.is_git, commit=src.commit, build_number=src.build_number
    )
    p = plan(request, hw, pin, provenance=prov, patches_root=user_patches(settings), ui=ui)
    src.patches = p.patches
    for e in p.patches:
        if e.reason:
            emit(BuildEvent("source", f"patch {e.name}: {e.reason}"))
    digest = inputs_hash(src.identity, p)
    number = p.options.get("LLAMA_BUILD_NUMBER", "")
    src.build_number = int(number) if number.isdigit() else src.build_number  # a --cmake-arg wins
    bid = build_id(src.build_number, p.profile.name, digest)

    # One build of these inputs at a time, and the "already installed" check under the same lock: a
    # second `llmtp build` started meanwhile waits, then finds and reuses the first one's build
    # instead of compiling again and installing over (deleting) it.
    locks = settings.cache_dir / "build-locks"
    files.make_dirs(locks)
    with FileLock(str(locks / f"{digest[:32]}.lock")):
        existing = None if configure_only else find_installed(settings, digest)
        if existing is not None:
            emit(BuildEvent("reused", existing.id))
            return use_build(settings, existing.id) if request.make_current else existing

        return run_steps(BuildJob(settings, request, runner, emit, p, src, digest, bid, hw), configure_only)


def ui_line(ui: UiPlan) -> str:
    """The one line a build prints about its UI."""

    if ui.how == "prebuilt":
        return "web UI: prebuilt assets from the upstream bucket (checked against their sha256)"
    if ui.how == "npm":
        return "web UI: npm build of tools/ui (a few minutes the first time; later builds reuse it)"
    if ui.mode == "off":
        return f"web UI: none, {ui.reason}"
    return f"web UI: none, {ui.reason}. {NO_UI_HINT}"


def dry_run(
    settings: Settings, request: BuildRequest, *, hw: HardwareSnapshot | None = None, ui: UiPlan | None = None
) -> dict:
    """What `build` would do, without fetching or compiling: profile, effective options, targets, patches."""
    pin = load_pin()
    hw = detect_if_needed(request.profile, hw)
    if request.source == "pypi":
        number, is_git, commit, ref = pin.build, False, pin.git.commit, pin.pypi.version
    elif request.source == "git":
        ref = request.ref or pin.git.tag
        number, is_git, commit = build_number_from_ref(ref), True, None
    else:
        number, is_git, commit, ref = None, (request.path / ".git").exists() if request.path else False, None, None
    prov = provenance_options(request.source, ref, pin, is_git=is_git, commit=commit, build_number=number)
    p = plan(request, hw, pin, provenance=prov, patches_root=user_patches(settings), ui=ui)
    return {
        "profile": p.profile.name,
        "backend": p.profile.backend,
        "source": request.source,
        "url": pin.git.url
        if request.source == "git"
        else (str(request.path) if request.path else f"pypi:{pin.pypi.name}=={pin.pypi.version}"),
        "ref": ref,
        "cmake_options": p.options,
        "targets": p.targets,
        "patches": [e.model_dump() for e in p.patches],
        "jobs": request.jobs or default_jobs(settings),
        "make_current": request.make_current,
        "ui": ui.model_dump() if ui else None,
    }
