"""Console entry point: a repeat `llmtp serve ... --foreground` starts its llama-server before the
CLI loads (llmtp.services.serve.warm_start); every command then runs through llmtp.cli.main as usual."""

from __future__ import annotations

import os
import sys


def run(argv: list[str] | None = None) -> None:
    from llmtp.services.serve.warm_start import WarmStart

    # The one WarmStart of this process: started now, handed to the command, closed on the way out
    # (a normal return, an error's SystemExit or Ctrl-C alike), which stops whatever nobody took over.
    with WarmStart(sys.argv[1:] if argv is None else argv, os.environ) as warm:
        from llmtp.cli.main import run as run_cli

        run_cli(argv, warm=warm)
