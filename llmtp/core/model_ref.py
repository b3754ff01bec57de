"""Model references as users write them: `hf:org/repo:QUANT`, llama.cpp's `org/repo:QUANT` and
`hf.co/org/repo:QUANT`, a catalog alias, or a path. Pure: whether a path exists is the caller's fact.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from llmtp.errors import UsageError

# llama.cpp `-hf` takes `<user>/<model>[:quant]` (common/arg.cpp); Ollama takes `hf.co/<user>/<model>:quant`.
_HUB_PREFIXES = ("hf:", "hf.co/", "huggingface.co/", "https://huggingface.co/", "https://hf.co/")
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO_RE = re.compile(rf"^({_NAME})/({_NAME})(?::([A-Za-z0-9._-]+))?$")


@dataclass(frozen=True)
class HubRef:
    repo: str  # "org/name"
    quant: str | None  # upper case; None: not given

    def text(self) -> str:
        return f"hf:{self.repo}" + (f":{self.quant}" if self.quant else "")


def parse_hub_ref(ref: str, *, path_exists: bool = False) -> HubRef | None:
    """The hub repo (and quant) a reference names; None when it is not a hub reference (an alias or a
    path). A bare `org/repo[:QUANT]` is a hub reference unless a file or folder of that name exists
    or it ends in .gguf. A prefixed reference that does not parse raises UsageError."""
    body = ref
    for prefix in _HUB_PREFIXES:
        if ref.startswith(prefix):
            body = ref[len(prefix) :].rstrip("/")
            break
    else:
        if path_exists or ref.lower().endswith(".gguf") or ref.startswith((".", "/", "~")):
            return None
    m = _REPO_RE.match(body)
    if m is None:
        if body is ref:
            return None
        raise UsageError(
            f"Bad Hugging Face reference {ref!r}",
            "Write it as org/repo:QUANT, hf.co/org/repo:QUANT or hf:org/repo:QUANT, "
            "e.g. hf:unsloth/Qwen3.6-27B-MTP-GGUF:Q4_K_M.",
        )
    quant = m.group(3)
    return HubRef(repo=f"{m.group(1)}/{m.group(2)}", quant=quant.upper() if quant else None)
