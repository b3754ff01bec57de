"""Two `llmtp build` runs of the same inputs at once: the second waits for the first and reuses its build."""

from __future__ import annotations

import threading
from pathlib import Path

from llmtp.adapters.runner import Completed, SubprocessRunner
from llmtp.services.build import installed
from llmtp.services.build import pipeline as svc
from llmtp.settings import load_settings

FIXTURES = Path(__file__).parent / "fixtures" / "llama" / "b11434-cpu"


class FakeCMake(SubprocessRunner):
    """Real tool discovery (cmake/c++ --version); configure and compile are simulated, and the
    probe answers with the captured b11434 output. The first compile blocks until released."""

    def __init__(self, compiling: threading.Event, release: threading.Event):
        self.compiling, self.release = compiling, release
        self.compiles = 0
        self.lock = threading.Lock()

    def run(self, argv, **kw):
        argv = [str(a) for a in argv]
        if argv[0].endswith("llama-server"):
            out = {
                "--version": "server-version.txt",
                "--help": "server-help.txt",
                "--list-devices": "list-devices.txt",
            }[argv[1]]
            return Completed(argv, 0, "", (FIXTURES / out).read_text())
        if "--build" in argv:  # `cmake --build TREE --target help`
            return Completed(argv, 0, "", "")
        return super().run(argv, **kw)

    def stream(self, argv, *, on_line, log, cwd=None, env=None):
        argv = [str(a) for a in argv]
        if "--build" not in argv:
            return 0  # configure
        with self.lock:
            self.compiles += 1
        self.compiling.set()
        assert self.release.wait(30)
        tree = Path(argv[argv.index("--build") + 1])
        (tree / "bin").mkdir(parents=True, exist_ok=True)
        for t in ("llama-server", "llama-bench", "llama-fit-params"):
            (tree / "bin" / t).write_text("#!/bin/sh\n")
        return 0


def test_second_build_of_same_inputs_waits_and_reuses(tmp_path):
    settings = load_settings().settings
    tree = tmp_path / "llama.cpp"
    (tree / "tools" / "server").mkdir(parents=True)
    (tree / "CMakeLists.txt").write_text("project(llama)\n")
    compiling, release = threading.Event(), threading.Event()
    runner = FakeCMake(compiling, release)
    req = svc.BuildRequest(profile="cpu", source="path", path=tree, cmake_args=["LLAMA_BUILD_NUMBER=11434"])
    results: dict[str, object] = {}
    phases: dict[str, list[str]] = {"first": [], "second": []}

    def go(name: str) -> None:
        try:
            results[name] = svc.build(settings, req, runner, lambda e: phases[name].append(e.phase))
        except Exception as exc:  # noqa: BLE001 - reported by the assertions below
            results[name] = exc

    first = threading.Thread(target=go, args=("first",))
    first.start()
    assert compiling.wait(30)  # the first is compiling, nothing installed yet
    second = threading.Thread(target=go, args=("second",))
    second.start()
    second.join(1.0)  # the second has had time to run its "already installed" check
    release.set()
    first.join(60)
    second.join(60)

    a, b = results["first"], results["second"]
    assert isinstance(a, svc.InstalledBuild), a
    assert isinstance(b, svc.InstalledBuild), b
    assert runner.compiles == 1, "the second build compiled again instead of reusing the first"
    assert b.id == a.id and "reused" in phases["second"]
    assert a.path.is_dir() and (a.path / "manifest.json").is_file()
    assert installed.current_build(settings).id == a.id
    assert [x.id for x in installed.list_builds(settings)] == [a.id]
