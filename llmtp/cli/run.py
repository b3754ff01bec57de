"""`llmtp run MODEL [PROMPT]`: one streamed answer, or a chat, from the llmtp server of MODEL."""

from __future__ import annotations

from typing import Optional

import typer

from llmtp.cli._complete import model_names
from llmtp.core import limits


def run(
    model: str = typer.Argument(
        ..., help="Alias (`llmtp models list`), GGUF path, or hf:org/repo:QUANT.", autocompletion=model_names
    ),
    prompt: Optional[str] = typer.Argument(None, help="The question; without it, an interactive chat."),
    max_tokens: int = typer.Option(
        512, "--max-tokens", help="Longest answer, in tokens.", **limits.option(limits.NPredict)
    ),
    temperature: float = typer.Option(
        0.0, help="Sampling temperature (0: greedy, where MTP drafts best).", **limits.option(limits.Temperature)
    ),
    ctx: Optional[int] = typer.Option(
        None, "--ctx", help="Context size when a server is started; overrides the plan.", **limits.option(limits.Ctx)
    ),
    server: Optional[str] = typer.Option(None, help="Start this llama-server instead of the current build."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer and its timings as JSON (needs PROMPT)."),
    no_pull: bool = typer.Option(
        False,
        "--no-pull",
        help="Refuse a model that is not on disk instead of downloading it (also the setting pull_missing = false).",
    ),
) -> None:
    """Ask MODEL: uses its running llmtp server or starts one (and says so); prints tok/s and MTP acceptance."""
    from pathlib import Path

    from llmtp.cli._out import emit_json
    from llmtp.errors import UsageError
    from llmtp.services.serve import run_prompt as svc
    from llmtp.settings import load_settings

    if as_json and prompt is None:
        raise UsageError(
            "--json needs a PROMPT: an interactive chat has no single answer to print",
            'Pass the question: `llmtp run MODEL "PROMPT" --json`.',
        )
    settings = load_settings().settings

    def note(line: str) -> None:
        typer.echo(f"note: {line}", err=True)

    from llmtp.core.launch_plan import LaunchRequest

    request = LaunchRequest(model=model, ctx=ctx, server=str(Path(server).expanduser().resolve()) if server else None)
    # as `llmtp serve`: a model not on disk is pulled first (what, how big, free disk are shown)
    target = svc.ensure_server(settings, request, on_note=note, pull=not no_pull, say=lambda m: typer.echo(m, err=True))
    if prompt is not None:
        messages = [{"role": "user", "content": prompt}]
        if as_json:
            answer, stats = svc.ask(target, messages, max_tokens=max_tokens, temperature=temperature)
            emit_json(
                {
                    "answer": answer,
                    "model_name": target.model_name,
                    "port": target.port,
                    "started_server": target.started,
                    "tokens": stats.tokens,
                    "tokens_per_second": stats.tokens_per_second,
                    "prompt_tokens": stats.prompt_tokens,
                    "mtp_drafted": stats.drafted,
                    "mtp_accepted": stats.accepted,
                    "mtp_acceptance": stats.mtp_acceptance,
                }
            )
            return
        _answer(target, messages, max_tokens, temperature)
        return
    chat(target, model, max_tokens, temperature)


def chat(target, model: str, max_tokens: int, temperature: float) -> None:  # noqa: ANN001 - services.serve.run_prompt.Target
    """The interactive chat: /bye, /?, /clear are llmtp's; Ctrl-C stops an answer, at the prompt the chat."""
    from llmtp.core.chat import CHAT_HELP, chat_command

    typer.echo(f"chatting with {target.model_name or model}; /? for help, /bye to end", err=True)
    messages: list[dict[str, str]] = []
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):  # Ctrl-D, or Ctrl-C at the prompt: the chat ends
            typer.echo("", err=True)
            return
        command = chat_command(line)
        if not line.strip() or command == "bye":
            return
        if command == "help":
            typer.echo(CHAT_HELP, err=True)
            continue
        if command == "clear":
            messages.clear()
            typer.echo("(conversation cleared)", err=True)
            continue
        if command == "unknown":
            typer.echo(f"unknown command {line.split()[0]}; /? lists them (start with // to send it)", err=True)
            continue
        messages.append({"role": "user", "content": line[1:] if line.startswith("//") else line})
        answer, stopped = _answer(target, messages, max_tokens, temperature, interruptible=True)
        messages.append({"role": "assistant", "content": answer})
        if stopped:
            typer.echo("(stopped; Ctrl-C at the prompt ends the chat)", err=True)


def _answer(
    target,
    messages: list[dict[str, str]],
    max_tokens: int,
    temperature: float,  # noqa: ANN001
    interruptible: bool = False,
):
    """Stream one answer. With `interruptible`, Ctrl-C stops it (closing the stream stops llama-server's
    generation) and (the text so far, True) comes back; else the answer text."""
    import sys

    from llmtp.services.serve import run_prompt as svc

    shown: list[str] = []

    def show(text: str) -> None:
        shown.append(text)
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        answer, stats = svc.ask(target, messages, max_tokens=max_tokens, temperature=temperature, on_text=show)
    except KeyboardInterrupt:
        if not interruptible:
            raise
        typer.echo("")
        return "".join(shown), True
    typer.echo("")
    typer.echo(f"({stats.line()})", err=True)
    return (answer, False) if interruptible else answer


def register(app: typer.Typer) -> None:
    app.command("run")(run)
