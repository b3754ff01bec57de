"""The steps of one build, each a small function of a `BuildJob`: preflight, tree, configure, compile,
install, probe, switch. services/build/pipeline.py plans the build and runs them in order under its lock; the types
they share are services/build/request.py's."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from llmtp.adapters import files
from llmtp.adapters.files import write_text_atomic
from llmtp.adapters.runner import Runner
from llmtp.adapters.toolchains import cublas_found, cuda_toolkit_root
from llmtp.core.buildlog import Progress, distill, parse_progress
from llmtp.core.hardware import HardwareSnapshot
from llmtp.core.profiles import (
    FoundTool,
    Profile,
    cmake_build_argv,
    cmake_configure_argv,
    parse_tool_version,
    preflight_problems,
)
from llmtp.core.ui import UiRecord, ui_header_has_assets, ui_how_from_options, ui_log_lines, ui_record
from llmtp.errors import BuildError, ToolMissingError
from llmtp.services.build.installed import (
    MANIFEST,
    BuildManifest,
    InstalledBuild,
    PatchRecord,
    current_build,
    probe_binary,
    probe_failure,
    use_build,
    utc_timestamp,
)
from llmtp.services.build.request import (
    BuildEvent,
    BuildPlan,
    BuildRequest,
    ProgressFn,
    default_jobs,
)
from llmtp.services.build.tree import TREE_STATE, TreeState, build_tree, source_and_tree, tree_state, tree_variant
from llmtp.services.serve.web_ui import probe_served_ui
from llmtp.settings import Settings


@dataclass
class BuildJob:
    """One build under way: what every step reads, instead of a dozen positional arguments."""

    settings: Settings
    request: BuildRequest
    runner: Runner
    emit: ProgressFn
    plan: BuildPlan
    src: object  # adapters.sources.SourceTree (imported lazily: it pulls in tarfile and git helpers)
    digest: str  # the inputs hash
    bid: str  # the build id
    hw: HardwareSnapshot | None


@dataclass
class Tools:
    """What preflight found: every tool of the profile, and the three the build steps call."""

    found: dict[str, FoundTool]
    cmake: str
    generator: str | None  # "Ninja" when ninja is there
    launcher: str | None  # ccache


@dataclass
class Compiled:
    tree: Path
    targets: list[str]
    log_path: Path
    started: str
    seconds: float
    ui: UiRecord | None = None


# --- preflight ------------------------------------------------------------------------------------


def find_tools(profile: Profile, runner: Runner) -> dict[str, FoundTool]:
    found: dict[str, FoundTool] = {}
    for spec in profile.tools:
        path = next((p for c in spec.commands if (p := runner.which(c))), None)
        version = None
        if path:
            try:
                done = runner.run([path, *spec.version_args], timeout=30)
                version = parse_tool_version(done.output, spec.version_regex, spec.name)
            except Exception:  # a tool that cannot print its version is still usable; version unknown
                version = None
        found[spec.name] = FoundTool(name=spec.name, path=path, version=version)
    return found


def preflight(job: BuildJob) -> Tools:
    """The profile's tools, or the first missing one raised with the others in its details."""
    p = job.plan
    found = find_tools(p.profile, job.runner)
    problems = preflight_problems(p.profile, found, p.options, job.hw.os if job.hw else _os_name())
    problems += _cuda_library_problems(p.profile, found)
    if problems:
        first = problems[0]
        first.details = [e.render() for e in problems[1:]] + first.details
        raise first
    generator = "Ninja" if found.get("ninja") and found["ninja"].path else None
    launcher = found["ccache"].path if found.get("ccache") and found["ccache"].path else None
    return Tools(found, found["cmake"].path or "cmake", generator, launcher)


def _cuda_library_problems(profile: Profile, found: dict[str, FoundTool]) -> list:
    """ggml-cuda links cuBLAS; a toolkit without it fails at CMake's generate step (seen with a bare
    nvcc 13.0 install), so look for it next to nvcc before configuring."""

    nvcc = found.get("nvcc")
    if profile.backend != "cuda" or nvcc is None or nvcc.path is None:
        return []

    root = cuda_toolkit_root(nvcc.path)
    if cublas_found(root):
        return []
    return [
        ToolMissingError(
            f"cuBLAS not found for the CUDA toolkit at {root} (nvcc {nvcc.version})",
            "Install NVIDIA's libcublas-dev-X-Y (or cuda-libraries-dev-X-Y) matching nvcc; "
            "Debian's nvidia-cuda-toolkit includes it.",
        )
    ]


def _os_name() -> str:
    return {"linux": "linux", "darwin": "darwin", "win32": "windows"}.get(sys.platform, sys.platform)


# --- configure and compile ------------------------------------------------------------------------


def _configure_argv(
    cmake: str, src: Path, tree: Path, options: dict[str, str], generator: str | None, launcher: str | None
) -> list[str]:
    """Configure argv, with `-U` for options a previous llmtp configure of this tree set and this one
    does not: CMake would otherwise keep the stale cached value."""
    previous = (tree_state(tree) or TreeState()).options
    argv = cmake_configure_argv(cmake, str(src), str(tree), options, generator=generator, launcher=launcher)
    for key in sorted(set(previous) - set(options)):
        argv.append(f"-U{key}")
    return argv


def _stream(
    runner: Runner,
    argv: list[str],
    log: TextIO,
    emit: ProgressFn,
    phase: str,
    env: dict[str, str],
    cwd: Path | None = None,
) -> int:
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
    d = distill(files.read_text(log_path, errors="replace"))
    return BuildError(message, f"{hint} Full log: {log_path}", details=d.lines())


def configure(job: BuildJob, tools: Tools, src_dir: Path, tree: Path, log: TextIO, log_path: Path) -> None:
    p = job.plan
    job.emit(BuildEvent("configure", " ".join(f"-D{k}={v}" for k, v in p.options.items())))
    argv = _configure_argv(tools.cmake, src_dir, tree, p.options, tools.generator, tools.launcher)
    if _stream(job.runner, argv, log, job.emit, "configure", dict(p.profile.env)) != 0:
        raise _fail(
            f"CMake configure failed for profile {p.profile.name}",
            log_path,
            "Fix what is named below (a missing toolkit or library), then run the build again.",
        )
    write_text_atomic(
        tree / TREE_STATE,
        TreeState(options=p.options, generator=tools.generator, source=str(src_dir)).model_dump_json(),
    )


def compile_targets(job: BuildJob, tools: Tools, tree: Path, log: TextIO, log_path: Path) -> list[str]:
    """Compile the plan's targets (the optional ones this tree defines); returns what was built."""
    p = job.plan
    jobs = job.request.jobs or default_jobs(job.settings)
    targets = _available_targets(job.runner, tools.cmake, tree, p.targets, p.profile.optional_targets)
    job.emit(BuildEvent("compile", f"{len(targets)} targets, {jobs} jobs", 0, None))
    if (
        _stream(
            job.runner,
            cmake_build_argv(tools.cmake, str(tree), targets, jobs),
            log,
            job.emit,
            "compile",
            dict(p.profile.env),
        )
        != 0
    ):
        raise _fail(f"Compiling llama.cpp failed for profile {p.profile.name}", log_path, "The first errors are below.")
    return targets


def _available_targets(runner: Runner, cmake: str, tree: Path, targets: list[str], optional: list[str]) -> list[str]:
    """Drop optional targets this source tree does not define (llama-fit-params is recent)."""
    done = runner.run([cmake, "--build", str(tree), "--target", "help"], timeout=120)
    listed = done.output if done.returncode == 0 else ""
    return [t for t in targets if t not in optional or not listed or f"{t}:" in listed or f" {t}" in listed]


def compile_build(job: BuildJob, tools: Tools, configure_only: bool) -> Compiled | None:
    """Source, tree, configure and compile under the tree's lock; None after `configure_only`."""
    from filelock import FileLock

    tree = build_tree(job.settings, job.src.identity, job.plan.profile.name)  # type: ignore[attr-defined]
    tree = tree.with_name(tree.name + tree_variant(job.plan.options))
    files.make_dirs(tree.parent)
    with FileLock(str(tree) + ".lock"):
        src_dir, tree = source_and_tree(job, tree, tools.generator)
        logs = job.settings.state_dir / "build-logs"
        files.make_dirs(logs)
        log_path = logs / f"{job.bid}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        started, t0 = utc_timestamp(), time.monotonic()
        with files.open_log(log_path) as log:
            configure(job, tools, src_dir, tree, log, log_path)
            if configure_only:
                job.emit(BuildEvent("done", f"configured {tree}"))
                return None
            forget_stale_ui(job, tree)
            targets = compile_targets(job, tools, tree, log, log_path)
        return Compiled(tree, targets, log_path, started, time.monotonic() - t0, check_ui(job, tree, log_path))


# --- the web UI -----------------------------------------------------------------------------------


def forget_stale_ui(job: BuildJob, tree: Path) -> None:
    """A build without the UI must not embed the assets an earlier UI build left in this tree:
    scripts/ui-assets.cmake embeds any tools/ui/dist it finds, "stale" or not."""
    if ui_how_from_options(job.plan.options) is None:
        files.remove_tree(tree / "tools" / "ui" / "dist", ignore_errors=True)
        files.remove(tree / "tools" / "ui" / ".ui-stamp")


def check_ui(job: BuildJob, tree: Path, log_path: Path) -> UiRecord | None:
    """What the compile embedded (tools/ui/ui.h says), reported when a planned UI did not come."""
    plan = job.plan.ui
    if plan is None:
        return None
    header = tree / "tools" / "ui" / "ui.h"
    embedded = header.is_file() and ui_header_has_assets(files.read_text(header, errors="replace"))
    how = ui_how_from_options(job.plan.options)  # a --cmake-arg may have asked for it by hand
    if how != plan.how:
        plan = plan.model_copy(update={"how": how, "reason": None if how else plan.reason})
    record = ui_record(plan, embedded, ui_log_lines(files.read_text(log_path, errors="replace")))
    if plan.how is not None and not embedded:
        job.emit(BuildEvent("ui", f"web UI: none; {record.note}. Full log: {log_path}"))
    return record


# --- install, probe, switch -----------------------------------------------------------------------


def install(job: BuildJob, built: Compiled) -> Path:
    """Copy the targets and their shared libraries into a temporary dir beside the builds."""
    builds = job.settings.builds_dir
    files.make_dirs(builds)
    for stale in files.glob(builds, f".tmp-{job.bid}-*"):  # left by an interrupted install of the same build
        files.remove_tree(stale, ignore_errors=True)
    tmp = builds / f".tmp-{job.bid}-{os.getpid()}"
    if tmp.exists():
        files.remove_tree(tmp)
    files.make_dirs(tmp / "bin")
    out = built.tree / "bin"
    for t in built.targets:
        if not (out / t).is_file():
            raise BuildError(f"The build finished but {out / t} is missing", f"See {built.log_path}.")
        files.copy_file(out / t, tmp / "bin" / t)
    for lib in list(files.glob(out, "*.so*")) + list(files.glob(out, "*.dylib")) + list(files.glob(out, "*.metal")):
        files.copy_file(lib, tmp / "bin" / lib.name)  # shared-library builds need their libs beside the binary
    return tmp


def probe(job: BuildJob, tmp: Path, tools: Tools, built: Compiled) -> BuildManifest:
    """Probe the installed binary and write its manifest (status "failed" when the probe says so)."""
    p, src = job.plan, job.src
    job.emit(BuildEvent("probe", "llama-server --version / --help / --list-devices"))
    caps = probe_binary(tmp / "bin", job.runner)
    failure = probe_failure(p.profile, caps, p.options, job.hw)
    ui = built.ui
    if ui is not None and ui.embedded and failure is None:
        ui = ui.model_copy(update={"served": probe_served_ui(tmp / "bin" / "llama-server", caps)})
        if ui.served is False:
            job.emit(BuildEvent("probe", "web UI: embedded, but GET / did not serve it; see the build log"))
    manifest = BuildManifest(
        id=job.bid,
        status="failed" if failure else "ok",
        failure=failure,
        source=job.request.source,
        url=src.url,
        ref=src.ref,
        commit=src.commit,
        build_number=src.build_number,  # type: ignore[attr-defined]
        sdist_sha256=src.sdist_sha256,
        source_identity=src.identity,  # type: ignore[attr-defined]
        profile=p.profile.name,
        backend=p.profile.backend,
        cmake_options=p.options,
        targets=built.targets,
        patches=[PatchRecord(name=e.name, sha256=e.sha256, reason=e.reason) for e in p.patches],
        toolchain=tools.found,
        inputs_hash=job.digest,
        started_at=built.started,
        finished_at=utc_timestamp(),
        build_seconds=round(built.seconds, 1),
        log_file=str(built.log_path),
        capabilities=caps,
        ui=ui,
    )
    write_text_atomic(tmp / MANIFEST, manifest.model_dump_json(indent=2))
    return manifest


def switch(job: BuildJob, tmp: Path, manifest: BuildManifest, log_path: Path) -> InstalledBuild:
    """Move the build under its id; make it current when asked and its probe passed."""
    final = job.settings.builds_dir / job.bid
    if final.exists():
        files.remove_tree(final)  # a failed or broken earlier attempt with the same inputs
    files.move(tmp, final)  # only now does the build exist under its name
    if manifest.failure:
        raise BuildError(
            f"Build {job.bid} failed its probe: {manifest.failure}",
            "It was kept for inspection but not made current. Check the GPU driver "
            f"(`llmtp detect`) and the log {log_path}.",
        )
    job.emit(BuildEvent("done", job.bid))
    if job.request.make_current:
        return use_build(job.settings, job.bid)
    return InstalledBuild(id=job.bid, path=final, manifest=manifest)


def run_steps(job: BuildJob, configure_only: bool) -> InstalledBuild:
    """Every step in order (the caller holds the inputs' build lock). `configure_only` stops after
    CMake configure and returns the current build, if any."""
    tools = preflight(job)
    built = compile_build(job, tools, configure_only)
    if built is None:
        return current_build(job.settings)  # type: ignore[return-value]
    job.emit(BuildEvent("install", job.bid))
    tmp = install(job, built)
    return switch(job, tmp, probe(job, tmp, tools, built), built.log_path)
