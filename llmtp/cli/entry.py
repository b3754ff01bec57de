"""Console entry point: a repeat `llmtp serve ... --foreground` starts its llama-server before the
CLI loads (llmtp.services.warm_start); every command then runs through llmtp.cli.main as usual."""

from __future__ import annotations

import sys


def run(argv: list[str] | None = None) -> None:
    from llmtp.services import warm_start

    warm_start.maybe_start(sys.argv[1:] if argv is None else argv)
    from llmtp.cli.main import run as run_cli

    run_cli(argv)
