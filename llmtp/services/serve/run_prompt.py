"""`llmtp run`: find (or start) the llmtp server for a model, stream one answer, measure it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmtp.adapters.ports import free_port, port_free
from llmtp.core.chat import AnswerStats, answer_stats, parse_sse_line
from llmtp.core.launch_plan import LaunchRequest, serve_args
from llmtp.errors import NetworkError
from llmtp.services.serve import launch as svc
from llmtp.services.serve.command_line import foreground_command
from llmtp.services.serve.supervisor import read_api_key


@dataclass(frozen=True)
class Target:
    """The server an answer comes from."""

    base_url: str
    api_key: str | None
    port: int
    model_name: str | None
    started: bool  # True: `llmtp run` started it (it keeps running; `llmtp stop --port N` stops it)


def running_for(state_dir: Path, model_path: str, on_note: Callable[[str], None] = lambda _line: None):
    """The ready llmtp serve of `model_path` (a GGUF path as recorded), or None."""
    from llmtp.services.stores import serve_records as st

    for line in st.sweep(state_dir):  # records of an llmtp that died are not servers
        on_note(line)
    for record in st.all_states(state_dir):
        if record.state == "ready" and Path(record.model) == Path(model_path):
            return record
    return None


def ensure_server(
    settings,
    request: LaunchRequest,
    *,
    on_note: Callable[[str], None] = lambda _line: None,
    pull: bool = True,
    say: Callable[[str], None] = lambda _m: None,
) -> Target:
    """Use the running llmtp server of the model, or start one in the background: `llmtp serve` with this
    request (the same launch plan, the model pulled first as serve does when `pull` and the settings allow;
    on a free port when the settings' port is taken)."""
    from llmtp.adapters.server_process import base_url_for
    from llmtp.services.stores import serve_records as st

    plan = svc.plan_for_serve(settings, request, pull=pull, say=say)
    record = running_for(settings.state_dir, plan.spec.model, on_note)
    if record is not None:
        on_note(f"using the llmtp server of {record.alias or record.model} on port {record.port}")
        return Target(
            base_url_for(record.host, record.port),
            read_api_key(record.api_key_file),
            record.port,
            record.alias,
            started=False,
        )
    port = plan.spec.port
    if st.read_state(settings.state_dir, port) is not None or not port_free(plan.spec.host, port):
        port = free_port()
    on_note(
        f"no llmtp server of {request.model} is running: starting one on port {port} "
        f"(it keeps running for the next question; `llmtp stop --port {port}` stops it)"
    )
    argv = foreground_command(serve_args(request.model_copy(update={"port": port})))
    record = svc.detach(settings.state_dir, port, argv, plan.ready_timeout_s)
    return Target(
        base_url_for(record.host, record.port),
        read_api_key(record.api_key_file),
        record.port,
        record.alias,
        started=True,
    )


def ask(
    target: Target,
    messages: list[dict[str, str]],
    *,
    max_tokens: int,
    temperature: float,
    on_text: Callable[[str], None] = lambda _t: None,
) -> tuple[str, AnswerStats]:
    """Stream one answer to `messages`; `on_text` gets each piece as it arrives."""
    from llmtp.adapters.http import LlamaClient

    pieces: list[str] = []
    timings = None
    with LlamaClient(target.base_url, target.api_key) as client:
        for line in client.chat_stream(messages, max_tokens=max_tokens, temperature=temperature):
            try:
                event = parse_sse_line(line)
            except ValueError as exc:
                raise NetworkError(
                    f"llama-server at {target.base_url} broke off the answer: {exc}",
                    f"See `llmtp logs --port {target.port}`.",
                ) from exc
            if event is None:
                continue
            if event.done:
                break
            if event.text:
                pieces.append(event.text)
                on_text(event.text)
            if event.timings is not None:
                timings = event.timings
    return "".join(pieces), answer_stats(timings)
