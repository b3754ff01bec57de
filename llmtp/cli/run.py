"""`llmtp run MODEL [PROMPT]`: one streamed answer, or a chat, from the llmtp server of MODEL."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.cli._complete import model_names
from llmtp.core import limits


def run(
    model: str = typer.Argument(..., help="Alias (`llmtp models list`), GGUF path, or hf:org/repo:QUANT.",
                                    autocompletion=model_names),
    prompt: Optional[str] = typer.Argument(None, help="The question; without it, an interactive chat."),
    max_tokens: int = typer.Option(512, "--max-tokens", help="Longest answer, in tokens.",
                                   **limits.option(limits.NPredict)),
    temperature: float = typer.Option(0.0, help="Sampling temperature (0: greedy, where MTP drafts best).",
                                      **limits.option(limits.Temperature)),
    ctx: Optional[int] = typer.Option(None, "--ctx", help="Context size when a server is started; overrides the plan.",
                                      **limits.option(limits.Ctx)),
    server: Optional[str] = typer.Option(None, help="Start this llama-server instead of the current build."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer and its timings as JSON (needs PROMPT)."),
) -> None:
    """Ask MODEL: uses its running llmtp server or starts one (and says so); prints tok/s and MTP acceptance."""
    from pathlib import Path

    from llmtp.cli._out import emit_json
    from llmtp.errors import UsageError
    from llmtp.services import run as svc
    from llmtp.settings import load_settings

    if as_json and prompt is None:
        raise UsageError("--json needs a PROMPT: an interactive chat has no single answer to print",
                         'Pass the question: `llmtp run MODEL "PROMPT" --json`.')
    settings = load_settings().settings

    def note(line: str) -> None:
        typer.echo(f"note: {line}", err=True)

    target = svc.ensure_server(settings, model, server=Path(server) if server else None, ctx=ctx, on_note=note)
    if prompt is not None:
        messages = [{"role": "user", "content": prompt}]
        if as_json:
            answer, stats = svc.ask(target, messages, max_tokens=max_tokens, temperature=temperature)
            emit_json({"answer": answer, "model_name": target.model_name, "port": target.port,
                       "started_server": target.started, "tokens": stats.tokens,
                       "tokens_per_second": stats.tokens_per_second, "prompt_tokens": stats.prompt_tokens,
                       "mtp_drafted": stats.drafted, "mtp_accepted": stats.accepted,
                       "mtp_acceptance": stats.mtp_acceptance})
            return
        _answer(target, messages, max_tokens, temperature)
        return
    typer.echo(f"chatting with {target.model_name or model}; an empty line or Ctrl-D ends", err=True)
    messages: list[dict[str, str]] = []
    while True:
        try:
            line = input("> ")
        except EOFError:
            typer.echo("", err=True)
            return
        if not line.strip():
            return
        messages.append({"role": "user", "content": line})
        messages.append({"role": "assistant", "content": _answer(target, messages, max_tokens, temperature)})


def _answer(target, messages: list[dict[str, str]], max_tokens: int, temperature: float) -> str:  # noqa: ANN001
    import sys

    from llmtp.services import run as svc

    def show(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    answer, stats = svc.ask(target, messages, max_tokens=max_tokens, temperature=temperature, on_text=show)
    typer.echo("")
    typer.echo(f"({stats.line()})", err=True)
    return answer


def register(app: typer.Typer) -> None:
    app.command("run")(run)
