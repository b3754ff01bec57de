"""The `python -m llmtp serve ... --foreground` command line, built here for every caller (detach, warm start,
setup, service unit).

Stdlib only: the warm start (cli/entry.py) builds it before anything heavy is imported.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

_DETACHED_ONLY = ("--json", "--foreground")  # the detached parent's words, not the supervising child's


def foreground_args(args: Sequence[str]) -> list[str]:
    """`serve ...` as the supervising child runs it: `--foreground` added before `--`, `--json` dropped.
    Only llmtp's own words change: what follows `--` is llama-server's and passes as given."""
    if "--" in args:
        i = list(args).index("--")
        own, rest = list(args[:i]), list(args[i:])
    else:
        own, rest = list(args), []
    return [*(a for a in own if a not in _DETACHED_ONLY), "--foreground", *rest]


# `-m` puts the current directory first on sys.path: a detached serve started from another checkout of llmtp (or
# any directory holding an `llmtp` folder) would import that one. Python 3.11's -P leaves the directory out.
SAFE_PATH = ("-P",) if sys.version_info >= (3, 11) else ()


def foreground_command(args: Sequence[str]) -> list[str]:
    """The whole command: this interpreter with `-m llmtp` (it survives venv moves of the script shim,
    and a service unit needs no PATH; `-P` so the caller's directory cannot shadow this llmtp), then
    `foreground_args(args)`; `args` starts with "serve" (or "worker")."""
    return [sys.executable, *SAFE_PATH, "-m", "llmtp", *foreground_args(args)]
