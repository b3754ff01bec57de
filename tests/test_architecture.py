"""The layering holds: core does no I/O, and imports point cli -> services -> core."""

from __future__ import annotations

import ast
from pathlib import Path

import llmtp

PKG = Path(llmtp.__file__).parent
FORBIDDEN_IN_CORE = {"subprocess", "httpx", "psutil", "pynvml", "socket", "shutil", "huggingface_hub",
                     "llmtp.adapters", "llmtp.services", "llmtp.cli", "llmtp.settings"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _uses_environ(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.Attribute) and n.attr in {"environ", "getenv"} for n in ast.walk(tree))


def test_core_does_no_io():
    offenders = {}
    for path in sorted((PKG / "core").rglob("*.py")):
        bad = {name for name in _imports(path)
               if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_CORE)}
        if _uses_environ(path):
            bad.add("os.environ")
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_services_and_adapters_never_import_the_cli():
    for sub in ("services", "adapters", "core"):
        for path in sorted((PKG / sub).rglob("*.py")):
            assert not any(n.startswith("llmtp.cli") for n in _imports(path)), path


def test_adapters_never_import_services():
    for path in sorted((PKG / "adapters").rglob("*.py")):
        assert not any(n.startswith("llmtp.services") for n in _imports(path)), path


def test_no_shell_true_anywhere():
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                assert not (isinstance(node.value, ast.Constant) and node.value.value is True), path


# Modules over the size limit, each waiting for its split: none today (services/models.py, the last, was
# split into models, model_catalog and model_pulls). The list only shrinks.
OVERSIZE: set[str] = set()
MAX_LINES = 400


def test_no_module_over_the_size_limit():
    sizes = {str(p.relative_to(PKG)): len(p.read_text(encoding="utf-8").splitlines()) for p in PKG.rglob("*.py")}
    assert {name for name, n in sizes.items() if n > MAX_LINES} - OVERSIZE == set()
    assert sizes["services/build.py"] <= MAX_LINES and sizes["services/build_steps.py"] <= MAX_LINES
    assert all(sizes[m] <= MAX_LINES for m in ("services/setup.py", "services/setup_state.py",
                                                "services/setup_deps.py", "core/setup_rules.py",
                                                "cli/setup.py", "cli/_setup_text.py"))


def test_architecture_md_lists_every_module():
    """docs/architecture.md's "Every module" section names each module of the tree once, and no other."""
    import re

    doc = (PKG.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc.split("## Every module", 1)[1]
    listed = re.findall(r"^- `(llmtp/[\w/]+\.py)`: \S", section, flags=re.M)
    tree = {str(p.relative_to(PKG.parent)) for p in PKG.rglob("*.py")
            if p.name != "__init__.py" or p.parent.name == "_shipped"}
    assert len(listed) == len(set(listed))
    assert set(listed) == tree


def test_the_serve_foreground_command_is_built_in_one_place():
    """`python -m llmtp serve ... --foreground` (detach, warm start, setup, the service unit) comes from
    services/serve_command.py alone: one place decides the interpreter, `--foreground` and `--`."""
    builders = sorted(str(p.relative_to(PKG)) for p in PKG.rglob("*.py")
                      if '"-m", "llmtp"' in p.read_text(encoding="utf-8"))
    assert builders == ["services/serve_command.py"]


def _top_level_names(tree) -> tuple[set[str], set[str]]:
    """(names a module defines, names it imports) at its top level."""
    defined, imported = set(), set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                defined |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= {a.asname or a.name.split(".")[0] for a in node.names}
    return defined, imported


def test_no_module_re_exports_another_modules_names():
    """`from llmtp.a import X` names the module that defines X, not one that merely imported it: no
    re-exports "for older callers" (a name moves, its callers move with it)."""
    modules = {}
    for path in PKG.rglob("*.py"):
        name = ".".join(path.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = _top_level_names(ast.parse(path.read_text(encoding="utf-8")))
    through = []
    for path in [*PKG.rglob("*.py"), *(PKG.parent / "tests").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module in modules:
                defined, imported = modules[node.module]
                through += [f"{path.name}: {node.module}.{a.name}" for a in node.names
                            if a.name in imported and a.name not in defined]
    assert through == []


# --- services do their I/O through adapters (issue 16 item 3) ---------------------------------------
# Modules that talk to the outside world (processes, signals, sockets, trees of files, the environment
# of the machine): a service imports none of them; it asks an adapter (proctree, ports, files, spawn,
# signals, cpuinfo, toolchains, hf, ...), passed in or imported, so tests can swap or patch one place.
IO_MODULES = {"subprocess", "psutil", "signal", "socket", "shutil", "tempfile", "fcntl", "select", "ctypes",
              "platform", "httpx", "urllib.request", "http.client", "pynvml", "huggingface_hub", "multiprocessing"}
# Path methods that read or change the file system: a service asks adapters/files.py instead
# (read_text, write_text, remove, make_dirs, list_dir, glob, stat, ...). Queries of existence
# (exists, is_file, is_dir) and pure path arithmetic stay allowed.
PATH_IO = {"read_text", "write_text", "read_bytes", "write_bytes", "open", "unlink", "mkdir", "rmdir", "touch",
           "rename", "symlink_to", "hardlink_to", "chmod", "iterdir", "glob", "rglob", "stat", "lstat"}
# What a service may take from os and sys: facts about this process, no I/O.
ALLOWED_ATTRS = {"os": {"getpid", "getuid", "geteuid", "getcwd"},
                 "sys": {"platform", "executable", "prefix", "version_info"}}
# Known exceptions, each with its reason. The list only shrinks: an entry no longer used fails too.
SERVICE_IO_EXCEPTIONS = {
    # the warm start runs before anything but the stdlib loads (a test checks), and adapters/files.py
    # imports pydantic: it stamps the binary and model (size, mtime) itself
    "services/warm_start.py": {"os.stat", "Path.read_text"},
}


def _service_io(path: Path) -> set[str]:
    """The I/O a module does itself: imports of IO_MODULES, os/sys attributes beyond ALLOWED_ATTRS,
    the builtin open(), and file-system methods called on anything but an imported module (a Path)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    aliases: dict[str, str] = {}  # local name -> module, for os/sys and the I/O modules
    imported = {a.asname or a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
                for a in n.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if any(a.name == m or a.name.startswith(m + ".") for m in IO_MODULES):
                    found.add(a.name)
                if a.name in ALLOWED_ATTRS or a.name in IO_MODULES:
                    aliases[a.asname or a.name] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if any(node.module == m or node.module.startswith(m + ".") for m in IO_MODULES):
                found.add(node.module)
            elif node.module in ALLOWED_ATTRS:
                found.update(f"{node.module}.{a.name}" for a in node.names
                             if a.name not in ALLOWED_ATTRS[node.module])
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            module = aliases[node.value.id]
            if module in IO_MODULES or node.attr not in ALLOWED_ATTRS[module]:
                found.add(f"{module}.{node.attr}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "open":
            found.add("open()")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in PATH_IO \
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id in imported):
            found.add(f"Path.{node.func.attr}")
    return found


def test_services_do_io_only_through_adapters():
    offenders = {}
    for path in sorted((PKG / "services").rglob("*.py")):
        name = str(path.relative_to(PKG))
        extra = _service_io(path) - SERVICE_IO_EXCEPTIONS.get(name, set())
        if extra:
            offenders[name] = sorted(extra)
    assert offenders == {}, "do this through an adapter (llmtp/adapters/), or list it with a reason"


def test_service_io_exceptions_are_still_needed():
    """An exception that is no longer used goes: the list only shrinks."""
    for name, allowed in SERVICE_IO_EXCEPTIONS.items():
        path = PKG / name
        assert path.is_file(), name
        assert allowed <= _service_io(path), (name, allowed - _service_io(path))


def test_the_service_io_check_catches_each_kind(tmp_path):
    """The checker itself: each way a service could do I/O on its own is found."""
    cases = {
        "import psutil\npsutil.virtual_memory()": {"psutil", "psutil.virtual_memory"},
        "import os\nos.kill(1, 0)": {"os.kill"},
        "import os\nx = os.environ.get('A')": {"os.environ"},
        "from os import environ": {"os.environ"},
        "import shutil as sh\nsh.rmtree('x')": {"shutil", "shutil.rmtree"},
        "def f():\n    import socket\n    socket.create_connection(('h', 1))": {"socket", "socket.create_connection"},
        "from urllib.request import urlopen": {"urllib.request"},
        "open('x')": {"open()"},
        "from pathlib import Path\nPath('x').read_text()": {"Path.read_text"},
        "def f(p):\n    p.parent.mkdir(parents=True)\n    (p / 'a').unlink()": {"Path.mkdir", "Path.unlink"},
        "def f(d):\n    return [x.stat().st_size for x in d.glob('*')]": {"Path.stat", "Path.glob"},
        "from llmtp.adapters import files\nfiles.read_text('x'); files.glob('d', '*')": set(),
        "def f(p):\n    return p.is_file() and p.exists()": set(),
        "import os, sys\nos.getpid(); sys.platform; os.getcwd()": set(),
    }
    for i, (source, expected) in enumerate(cases.items()):
        path = tmp_path / f"m{i}.py"
        path.write_text(source, encoding="utf-8")
        assert _service_io(path) == expected, source


def test_one_answer_to_is_this_pid_alive():
    """Whether a pid is (still) a live process is proctree's answer alone (a zombie is not alive):
    psutil, os.kill and os.waitpid appear in no other module of the package outside the adapters."""
    for path in sorted(PKG.rglob("*.py")):
        if path.parent.name == "adapters":
            continue
        text = path.read_text(encoding="utf-8")
        assert not any(n == "psutil" or n.startswith("psutil.") for n in _imports(path)), path
        assert "os.kill(" not in text and "os.waitpid(" not in text, path


# --- no import cycle (issue 22) ----------------------------------------------------------------------

def _module_name(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def _runtime_top_imports(tree: ast.Module) -> list[ast.stmt]:
    """Import statements that run when the module is imported: its top level, and the bodies of top-level
    if/try blocks, but not `if TYPE_CHECKING:` (never executed)."""
    out: list[ast.stmt] = []
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If):
            if "TYPE_CHECKING" not in ast.unparse(node.test):
                todo += node.body + node.orelse
        elif isinstance(node, ast.Try):
            todo += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    return out


def import_graph(pkg: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports at module level (`from a import b` counts a.b when
    b is a module, else a)."""
    root = pkg.parent
    modules = {_module_name(p, root): p for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in _runtime_top_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
            elif node.level == 0 and node.module in modules:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    deps.add(sub if sub in modules else node.module)
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    """No two llmtp modules import each other, directly or around a loop, at module level: a shared type
    lives in a module of its own (core/plan_types.py, services' build request), not behind a lazy import."""
    assert cycles(import_graph(PKG)) == []


def test_the_cycle_check_finds_a_cycle(tmp_path):
    pkg = tmp_path / "demo"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from demo.sub import b\n")
    (pkg / "sub" / "b.py").write_text("import demo.c\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import demo.d\n"
                              "def f():\n    import demo.d\nfrom demo.a import X\n")
    (pkg / "d.py").write_text("import demo.c\n")
    assert cycles(import_graph(pkg)) == [["demo.a", "demo.c", "demo.sub.b"]]
