"""Shipped data: the top-level build_profiles/, patches/ and templates/ reach the wheel, and every file
loads through the one loader (llmtp.adapters.shipped) from an installed wheel and from this checkout."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

import llmtp
from llmtp.adapters import shipped
from llmtp.core.pin import parse_series
from llmtp.core.profiles import parse_profile

ROOT = Path(llmtp.__file__).resolve().parent.parent
SHIPPED_DIRS = {"build_profiles": "*.toml", "patches": "series", "templates": "llmtp.*"}

# Run inside the fresh venv: only the stdlib and the installed wheel, so nothing can come from ROOT.
LOAD_ALL = """
import hashlib, json, llmtp
from llmtp.adapters import shipped
out = {"package": llmtp.__file__, "profiles": {}, "data": {}}
for name in shipped.profile_names():
    out["profiles"][name] = shipped.profile_file(name).read_text(encoding="utf-8")
out["series"] = (shipped.shipped_patch_dir() / "series").read_text(encoding="utf-8")
out["patch_dir"] = str(shipped.shipped_patch_dir())
out["patches"] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in shipped.shipped_patch_dir().glob("*.patch")}
out["templates"] = {n: shipped.template_text(n) for n in ("llmtp.service", "llmtp.plist")}
for n in ("catalog.toml", "gpus.toml", "pin.toml"):
    out["data"][n] = hashlib.sha256(shipped.data_text(n).encode()).hexdigest()
print(json.dumps(out))
"""


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_package_list_names_every_package_of_the_tree():
    # pyproject lists packages by hand (find cannot map top-level dirs); a new subpackage must be added.
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "llmtp").rglob("__init__.py")}
    mapped = {f"llmtp._shipped.{d}" for d in SHIPPED_DIRS}
    assert listed == on_disk | mapped | {"llmtp.data"}
    assert _pyproject()["tool"]["setuptools"]["package-dir"] == {f"llmtp._shipped.{d}": d for d in SHIPPED_DIRS}


def test_shipped_data_sits_at_the_top_level_and_nowhere_in_the_package():
    for d, pattern in SHIPPED_DIRS.items():
        assert list((ROOT / d).glob(pattern)), d
        assert not (ROOT / "llmtp" / d).exists(), d


def test_the_checkout_reads_through_the_loader():
    # The editable install: the loader resolves the mapped packages to the top-level directories.
    assert shipped.shipped_patch_dir() == ROOT / "patches"
    assert sorted(p.stem for p in (ROOT / "build_profiles").glob("*.toml")) == shipped.profile_names()
    assert shipped.template_text("llmtp.service") == (ROOT / "templates" / "llmtp.service").read_text(encoding="utf-8")


@pytest.mark.slow
def test_a_built_wheel_installs_and_loads_every_shipped_file(tmp_path: Path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("llmtp-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    # The venv's own pip: this interpreter's pip would first uninstall the editable install it runs from.
    inst = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert inst.returncode == 0, inst.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(
        [str(py), "-I", "-c", LOAD_ALL], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)

    site = Path(got["package"]).parent.parent
    assert site.is_relative_to(venv), got["package"]  # the wheel's copy, not this checkout
    assert Path(got["patch_dir"]) == site / "llmtp" / "_shipped" / "patches"
    want = sorted(p.stem for p in (ROOT / "build_profiles").glob("*.toml"))
    assert sorted(got["profiles"]) == want and len(want) >= 6
    for name, text in got["profiles"].items():
        assert text == (ROOT / "build_profiles" / f"{name}.toml").read_text(encoding="utf-8")
        assert parse_profile(text, name, name).name == name
    # Only the header-conditional Vulkan patch (tests/test_vulkan_headers.py): no patch applies to every build.
    series = parse_series(got["series"], "series")
    assert [e.when for e in series] == ["vulkan-headers-lack-layer-settings"]
    assert got["patches"] == {e.name: e.sha256 for e in series}  # the wheel carries the patch the series names
    for name, text in got["templates"].items():
        assert text == (ROOT / "templates" / name).read_text(encoding="utf-8")
    for name, digest in got["data"].items():
        assert digest == hashlib.sha256((ROOT / "llmtp" / "data" / name).read_bytes()).hexdigest()
