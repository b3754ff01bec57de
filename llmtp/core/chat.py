"""`llmtp run`, pure part: one line of an OpenAI chat stream, and the speed figures of an answer.

llama-server (b11434, tools/server/server-task.cpp) streams `/v1/chat/completions` as server-sent
events and puts its own `timings` (server_slot_stats::to_json) on the last chunk, e.g.
  data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],...,"timings":{"prompt_n":9,
  "predicted_n":8,"predicted_ms":61.2,"predicted_per_second":130.7,"draft_n":6,"draft_n_accepted":6}}
  data: [DONE]
draft_n / draft_n_accepted are only present when speculative decoding drafted something.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(frozen=True)
class StreamEvent:
    text: str = ""  # the delta's content ("" for role-only or final chunks)
    timings: dict | None = None  # llama-server's timings, on the last chunk
    done: bool = False  # `data: [DONE]`


def parse_sse_line(line: str) -> StreamEvent | None:
    """One line of the event stream: an event, or None for blank lines, comments and other fields.
    Raises ValueError on a `data:` line that is not JSON (a broken stream, not a skip)."""
    if not line.startswith("data:"):
        return None
    payload = line[5:].strip()
    if payload == "[DONE]":
        return StreamEvent(done=True)
    obj = json.loads(payload)
    if not isinstance(obj, dict):
        raise ValueError(f"a stream event that is not an object: {payload[:80]}")
    if "error" in obj:
        err = obj["error"]
        raise ValueError(err.get("message", str(err)) if isinstance(err, dict) else str(err))
    text = ""
    for choice in obj.get("choices") or []:
        text += (choice.get("delta") or {}).get("content") or ""
    timings = obj.get("timings")
    return StreamEvent(text=text, timings=timings if isinstance(timings, dict) else None)


@dataclass(frozen=True)
class AnswerStats:
    tokens: int | None
    tokens_per_second: float | None
    prompt_tokens: int | None
    drafted: int | None  # None: nothing was drafted (MTP off, or no draft in this answer)
    accepted: int | None

    @property
    def mtp_acceptance(self) -> float | None:
        return None if not self.drafted else (self.accepted or 0) / self.drafted

    def line(self) -> str:
        """`8 tokens, 130.7 tok/s, MTP acceptance 100% (6/6 drafted)` for people."""
        parts = [
            f"{self.tokens} tokens" if self.tokens is not None else "tokens unknown",
            f"{self.tokens_per_second:.1f} tok/s" if self.tokens_per_second is not None else "tok/s unknown",
        ]
        if self.drafted:
            parts.append(f"MTP acceptance {self.mtp_acceptance:.0%} ({self.accepted}/{self.drafted} drafted)")
        else:
            parts.append("no MTP drafts")
        return ", ".join(parts)


def answer_stats(timings: dict | None) -> AnswerStats:
    t = timings or {}

    def num(key: str, kind=float):
        v = t.get(key)
        return kind(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    return AnswerStats(
        tokens=num("predicted_n", int),
        tokens_per_second=num("predicted_per_second"),
        prompt_tokens=num("prompt_n", int),
        drafted=num("draft_n", int),
        accepted=num("draft_n_accepted", int),
    )


# The chat's own commands (ollama's spelling, which people type from habit); never sent to the model.
CHAT_COMMANDS = {"/bye": "bye", "/exit": "bye", "/quit": "bye", "/?": "help", "/help": "help", "/clear": "clear"}
CHAT_HELP = (
    "/bye (or /exit): end the chat   /clear: forget the conversation so far   /?: this help\n"
    "Ctrl-C stops an answer; Ctrl-C at the prompt, Ctrl-D or an empty line ends the chat. "
    "Start a line with // to send one that begins with /."
)


def chat_command(line: str) -> str | None:
    """ "bye", "help", "clear", "unknown" (a /word llmtp does not know), or None for a message (`//x` sends
    `/x`)."""
    word = line.strip().split(maxsplit=1)[0] if line.strip() else ""
    if not word.startswith("/") or word.startswith("//"):
        return None
    return CHAT_COMMANDS.get(word.lower(), "unknown")
