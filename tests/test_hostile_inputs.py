"""Hostile and broken input at the door: every command and subcommand of the INSTALLED `llmtp` entry point
(the console script next to sys.executable, in a subprocess, as a user runs it) with an unknown option, a
missing argument and out-of-range or unparsable values for each numeric option and setting. Each must
exit 2 with a usage message and no traceback, and nothing outside LLMTP_HOME may change.

The table is built from the command tree itself (typer's registered commands and their signatures), so a
new command or numeric option is covered without editing this file, and an unbounded one fails
test_every_numeric_option_has_bounds. The runs go through a thread pool: ~130 subprocesses, 20-60 s on 2 cores.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmtp.cli.main import app

LLMTP = Path(sys.executable).with_name("llmtp")
PLACEHOLDER = "M"  # any required argument: parsing fails before a command body could use it


def _leaves(typer_app, prefix: tuple[str, ...] = ()):
    """(command path, callback) for every command, nested groups included."""
    for info in typer_app.registered_commands:
        yield (*prefix, info.name or info.callback.__name__.replace("_", "-")), info.callback
    for group in typer_app.registered_groups:
        yield from _leaves(group.typer_instance, (*prefix, group.name))


def _groups(typer_app, prefix: tuple[str, ...] = ()):
    for group in typer_app.registered_groups:
        yield (*prefix, group.name)
        yield from _groups(group.typer_instance, (*prefix, group.name))


def _params(callback):
    """(name, typer info, type) per parameter; the info sits in the default, or in Annotated[...] (the
    launch options declared once in cli/_serve_options.py)."""
    hints = typing.get_type_hints(callback, include_extras=True)
    for name, p in inspect.signature(callback).parameters.items():
        hint, info = hints[name], p.default
        if typing.get_origin(hint) is typing.Annotated:
            hint, *meta = typing.get_args(hint)
            info = next((m for m in meta if type(m).__name__ in ("OptionInfo", "ArgumentInfo")), info)
        yield name, info, hint


def _scalar(hint) -> type | None:
    """int or float inside Optional[...] / list[...], else None."""
    if hint in (int, float):
        return hint
    for arg in typing.get_args(hint):
        found = _scalar(arg)
        if found is not None:
            return found
    return None


def _flag(name: str, info) -> str:
    decls = [d for d in (getattr(info, "param_decls", None) or ()) if d.startswith("--")]
    return decls[0] if decls else "--" + name.replace("_", "-")


def _required_args(callback) -> list[str]:
    return [
        PLACEHOLDER for _, info, _ in _params(callback) if type(info).__name__ == "ArgumentInfo" and info.default is ...
    ]


def _numeric_options(callback):
    """(flag, int|float, lowest, highest, typer callback) for each numeric option of a command."""
    for name, info, hint in _params(callback):
        kind = _scalar(hint)
        if kind is not None and type(info).__name__ == "OptionInfo":
            yield _flag(name, info), kind, info.min, info.max, info.callback


@dataclass
class Case:
    argv: list[str]
    expect: str  # a fragment of the message
    rc: int = 2
    env: dict[str, str] = field(default_factory=dict)
    config: str | None = None  # config.toml text written into this case's LLMTP_HOME

    @property
    def id(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.env.items())
        return " ".join(
            ["llmtp", *self.argv] + ([f"[{extra}]"] if extra else []) + (["[config.toml]"] if self.config else [])
        )


def _out_of_range(kind, lo, hi) -> list[str]:
    """Just past each bound, and nan for floats (click's FloatRange lets it through every comparison)."""
    values = []
    if lo is not None:
        values.append(str(lo - 1) if kind is int else str(lo - 0.5))
    if hi is not None:
        values.append(str(hi + 1) if kind is int else str(hi + 0.5))
    return values + (["nan"] if kind is float else [])


def _cases() -> list[Case]:
    cases = [Case([], "Usage: llmtp"), Case(["no-such-command"], "No such command")]
    for group in _groups(app):
        cases += [Case(list(group), "Usage: llmtp"), Case([*group, "no-such-command"], "No such command")]
    for path, callback in _leaves(app):
        args = _required_args(callback)
        cases.append(Case([*path, *args, "--no-such-flag"], "No such option"))
        if args:
            cases.append(Case(list(path), "Missing argument"))
        for i, (flag, kind, lo, hi, _) in enumerate(_numeric_options(callback)):
            # text where a number belongs: once per command (typer parses every number the same way)
            values = _out_of_range(kind, lo, hi) + (["abc"] if i == 0 else [])
            cases += [Case([*path, *args, flag, v], "Invalid value") for v in values]
    # the exact command lines of issue 12 (a loop that ate all memory, AssertionErrors, values that reached
    # llama-server or were silently replaced by 8080)
    cases += [
        Case(["plan", PLACEHOLDER, "--ctx", "-5"], "Invalid value"),
        Case(["plan", PLACEHOLDER, "--ctx", "99999999999"], "Invalid value"),
        Case(["plan", PLACEHOLDER, "--parallel", "100000000000"], "Invalid value"),
        Case(["serve", PLACEHOLDER, "--ctx", "0"], "Invalid value"),
        Case(["serve", PLACEHOLDER, "--parallel", "-3"], "Invalid value"),
        Case(["serve", PLACEHOLDER, "--port", "0"], "Invalid value"),
        Case(["serve", PLACEHOLDER, "--port", "99999"], "Invalid value"),
        Case(["serve", "--port", "abc", PLACEHOLDER], "Invalid value"),
        Case(["serve", PLACEHOLDER, "--foreground", "--port", "0"], "Invalid value"),
        Case(["service", "install", PLACEHOLDER, "--ctx", "-5", "--dry-run"], "Invalid value"),
        Case(["plan", PLACEHOLDER, "--jsn"], "No such option"),
    ]
    # numeric settings from the environment and config.toml, through a command that loads them
    for env in (
        {"LLMTP_PORT": "0"},
        {"LLMTP_PORT": "99999"},
        {"LLMTP_PORT": "abc"},
        {"LLMTP_BUILD_JOBS": "0"},
        {"LLMTP_BUILD_JOBS": "100000"},
    ):
        cases.append(Case(["config", "show"], "error: Invalid setting", env=env))
    cases.append(Case(["serve", PLACEHOLDER, "--dry-run"], "error: Invalid setting", env={"LLMTP_PORT": "-1"}))
    cases.append(
        Case(["service", "install", PLACEHOLDER, "--dry-run"], "error: Invalid setting", env={"LLMTP_PORT": "70000"})
    )
    cases.append(Case(["config", "show"], "error: Invalid setting", config="port = 0\n"))
    cases.append(Case(["config", "show"], "error: Invalid setting", config="build_jobs = -4\n"))
    # bad text where llmtp's own checks answer (an LlmtpError: "error: ..." in one paragraph, exit 2)
    cases += [
        Case(["plan", PLACEHOLDER, "--vram", "abc"], "error: Cannot read the size"),
        Case(["plan", PLACEHOLDER, "--vram", "-1GiB"], "error: Cannot read the size"),
        Case(["plan", PLACEHOLDER, "--vram", "0GiB"], "is outside 256MiB..16TiB"),
        Case(["plan", PLACEHOLDER, "--vram", "99999999TiB"], "is outside 256MiB..16TiB"),
        Case(["plan", PLACEHOLDER, "--gpu", "no-such-card"], "error: Unknown GPU"),
        Case(["plan", "/nonexistent/m.gguf"], "error: Model file not found"),
        Case(["inspect", "/nonexistent/m.gguf"], "error: model file not found"),
        Case(["models", "show", "no-such-alias"], "error: Unknown model alias"),
        Case(["models", "pull", "no-such-alias"], "error: Unknown model alias"),
        Case(["builds", "use", "no-such-build"], "is not a build id"),
    ]
    return cases


CASES = _cases()


def _snapshot(root: Path, skip: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        d = Path(dirpath)
        if d == skip:
            dirnames.clear()
            continue
        for name in filenames + dirnames:
            p = d / name
            if p == skip:
                continue
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run every case once, in parallel; each in its own LLMTP_HOME under a fake HOME, cwd and TMPDIR."""
    if not LLMTP.is_file():
        pytest.fail(f"no installed `llmtp` entry point at {LLMTP}: `pip install -e .` in this environment first")
    root = tmp_path_factory.mktemp("hostile")
    homes = root / "llmtp-homes"
    for sub in ("home", "cwd", "tmp", "llmtp-homes"):
        (root / sub).mkdir()
    (root / "home" / "keep.txt").write_text("a user's file\n")
    envs = []
    for i, case in enumerate(CASES):
        home = homes / str(i)
        if case.config is not None:
            (home / "config").mkdir(parents=True)
            (home / "config" / "config.toml").write_text(case.config)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(root / "home"),
            "TMPDIR": str(root / "tmp"),
            "LANG": "C.UTF-8",
            "LLMTP_HOME": str(home),
            "PYTHONDONTWRITEBYTECODE": "1",
            **case.env,
        }
        envs.append(env)
    before = _snapshot(root, homes)

    def run(i: int):
        return subprocess.run(
            [str(LLMTP), *CASES[i].argv],
            env=envs[i],
            cwd=root / "cwd",
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(run, range(len(CASES))))
    return {"results": results, "before": before, "after": _snapshot(root, homes)}


@pytest.mark.parametrize("index", range(len(CASES)), ids=[c.id for c in CASES])
def test_usage_error_exits_2_with_a_message_and_no_traceback(runs, index):
    case, done = CASES[index], runs["results"][index]
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == case.rc, output
    assert case.expect in output, output
    if case.expect.startswith("error:"):  # llmtp's own errors: one paragraph on stderr, nothing on stdout
        assert done.stdout == "" and done.stderr.strip().count("\n") == 0, output


def test_nothing_outside_llmtp_home_changed(runs):
    assert runs["after"] == runs["before"]


def test_table_covers_every_command_and_numeric_option():
    leaves = list(_leaves(app))
    assert len(leaves) >= 25  # detect ... setup, builds *, service *, models *, config show
    for path, callback in leaves:
        argv = [*path, *_required_args(callback), "--no-such-flag"]
        assert any(c.argv == argv for c in CASES), path
    numeric = {(" ".join(path), flag) for path, cb in leaves for flag, *_ in _numeric_options(cb)}
    assert {("serve", "--port"), ("serve", "--ctx"), ("plan", "--parallel"), ("service install", "--ctx")} <= numeric
    assert len(numeric) >= 20


def test_every_numeric_option_has_bounds():
    """An unbounded number reaches llama-server or the planner (issue 12 item 3): each has a min and a max."""
    unbounded = [
        f"{' '.join(path)} {flag}"
        for path, cb in _leaves(app)
        for flag, _, lo, hi, _ in _numeric_options(cb)
        if lo is None or hi is None
    ]
    assert unbounded == []
    # click's FloatRange (typer < 0.26) lets nan and inf through: float options carry limits' finite check
    unchecked = [
        f"{' '.join(path)} {flag}"
        for path, cb in _leaves(app)
        for flag, kind, _, _, check in _numeric_options(cb)
        if kind is float and check is None
    ]
    assert unchecked == []


def test_ctrl_c_exits_130_without_a_traceback(tmp_path):
    """A user's Ctrl-C in a running command: typer turns it into exit 130; no traceback on any version."""
    import signal
    import time

    log = tmp_path / "state" / "logs" / "server-8080.log"
    log.parent.mkdir(parents=True)
    log.write_text("ready\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LLMTP_HOME": str(tmp_path)}
    # SIGINT as a terminal's process has it: a shell's background job (`bash .ci/run &`) starts with it
    # ignored, which Python and so the child inherit, and then Ctrl-C rightly does nothing
    proc = subprocess.Popen(
        [str(LLMTP), "logs", "-f", "--raw"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout.readline() == "ready\n"  # following the log now
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert "Traceback" not in out + err
    assert proc.returncode == 130
