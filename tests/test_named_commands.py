"""Every `llmtp ...` command a message, docstring or doc names exists in the Typer app, with its options;
every `llmtp.x.y` / `llmtp/x/y.py` module it names exists in the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import typer.main

import llmtp
from llmtp.cli.main import app

ROOT = Path(llmtp.__file__).resolve().parent.parent
PY = sorted((ROOT / "llmtp").rglob("*.py")) + sorted((ROOT / "bench").rglob("*.py"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

SPAN = re.compile(r"`(llmtp(?:\s[^`]*)?)`")
MODULE = re.compile(r"\bllmtp(?:\.[a-z_]+)+\b|\bllmtp/[a-z_]+(?:/[a-z_]+)*\.py\b")


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module (f-strings with each `{...}` read as X), with its line."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.JoinedStr):
            out.append((node.lineno, "".join(v.value if isinstance(v, ast.Constant) else "X" for v in node.values)))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
    return out


def _markdown_commands(text: str) -> list[tuple[int, str]]:
    """Code spans everywhere, and command lines inside fenced blocks (`$ ` prompt, `\\` continuations);
    a ```text block is program output, not commands."""
    out, fenced, output, pending = [], False, False, ""
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced, output = not fenced, line.strip() == "```text"
            continue
        if fenced and not output:
            line = pending + line.strip().removeprefix("$ ")
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1] + " "
                continue
            if line.startswith("llmtp ") or line == "llmtp":
                out.append((n, line.split(" #")[0]))
        else:
            out.extend((n, m.group(1)) for m in SPAN.finditer(line))
    return out


def named_commands() -> list[tuple[str, str]]:
    found = []
    for path in PY:
        for line, text in _strings(path):
            found += [(f"{path.relative_to(ROOT)}:{line}", m.group(1)) for m in SPAN.finditer(text)]
    for path in DOCS:
        found += [(f"{path.relative_to(ROOT)}:{n}", cmd) for n, cmd in _markdown_commands(path.read_text("utf-8"))]
    return found


def _options(cmd) -> set[str]:
    return {o for p in cmd.params for o in (*(p.opts or []), *(p.secondary_opts or []))} | {"--help"}


def problem(command: str) -> str | None:
    """Why `command` is not one the app accepts; None when it is."""
    cmd = typer.main.get_command(app)  # typer's own click: a group is what has .commands
    words = command.split()[1:]
    path = "llmtp"
    while hasattr(cmd, "commands") and words and not words[0].startswith("-"):
        word = words.pop(0)
        if missing := [w for w in word.split("|") if w not in cmd.commands]:  # `llmtp builds list|use`
            return f"`{path}` has no command {missing[0]!r} (it has: {', '.join(sorted(cmd.commands))})"
        if "|" in word:
            return None
        cmd, path = cmd.commands[word], f"{path} {word}"
    known = _options(cmd)
    for word in words:
        if word == "--":  # what follows goes to llama-server
            break
        name = word.split("=")[0].rstrip(".,;:)")
        if re.fullmatch(r"--?[A-Za-z][\w-]*", name) and name not in known:
            return f"`{path}` has no option {name}"
    return None


def test_the_collector_finds_commands_in_code_and_docs():
    found = named_commands()
    where = {w.split(":")[0] for w, _ in found}
    assert "README.md" in where and any(w.startswith("llmtp/services/") for w in where)
    assert len(found) > 50


@pytest.mark.parametrize(
    "command,why",
    [
        ("llmtp config edit default_model X", "has no command 'edit'"),
        ("llmtp fetch X", "has no command 'fetch'"),
        ("llmtp config set default_model X", None),
        ("llmtp pull X", None),  # the habit alias of `llmtp models pull`
        ("llmtp build --list", "has no option --list"),
        ("llmtp serve X --port 8080 -- --mtp 1", None),
        ("llmtp builds list", None),
        ("llmtp builds list|use|prune", None),
        ("llmtp builds list|remove", "has no command 'remove'"),
    ],
)
def test_the_checker_knows_a_wrong_command(command, why):
    got = problem(command)
    assert (got is None) if why is None else (why in got)


def test_every_named_command_exists():
    wrong = [f"{where}: {cmd} -> {why}" for where, cmd in named_commands() if (why := problem(cmd))]
    assert wrong == []


TOP = {p.stem for p in (ROOT / "llmtp").iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()}
TOP |= {"data"}


def _module_exists(name: str) -> bool:
    """`llmtp/x/y.py` is a file of the tree; `llmtp.x.y[.attr]` imports (the longest module prefix) and
    has the attributes named after it. Other dotted words (the unit file llmtp.service) are not modules."""
    if "/" in name:
        return (ROOT / name).is_file()
    parts = name.split(".")
    if parts[1] not in TOP:
        return True
    import importlib

    for cut in range(len(parts), 1, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def test_every_named_module_exists():
    wrong = []
    for path in PY:
        for line, text in _strings(path):
            wrong += [f"{path.relative_to(ROOT)}:{line}: {m}" for m in MODULE.findall(text) if not _module_exists(m)]
    for path in DOCS:
        text = path.read_text(encoding="utf-8")
        wrong += [f"{path.relative_to(ROOT)}: {m}" for m in MODULE.findall(text) if not _module_exists(m)]
    assert wrong == []
