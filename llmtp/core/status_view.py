"""What `llmtp status` says about one server instance, pure part: figures from its own cumulative /metrics
counters, whether it drafts at all (from its argv), and the words for the MTP column.

Why counters and not the gauge: llama-server's `llamacpp:predicted_tokens_seconds` is a bucket that every
GET /metrics empties (b11434 tools/server/server-task.cpp, `predict_bucket`), so a second `status` with no
new request read 0.0. The counters below only grow for the life of one llama-server process:
  llamacpp:tokens_predicted_total 21
  llamacpp:tokens_predicted_seconds_total 0.346
  llamacpp:spec_decode_num_draft_tokens_total 23
  llamacpp:spec_decode_num_accepted_tokens_total 23
A restarted server starts again from zero, so nothing here is ever carried from one instance to the next.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

_P = "llamacpp:"


class InstanceFigures(BaseModel):
    """Since this llama-server process started; None = it did not report the counter."""

    tokens: int | None = None
    seconds: float | None = None
    prompt_tokens: int | None = None
    drafted: int | None = None
    accepted: int | None = None

    @property
    def tokens_per_second(self) -> float | None:
        """Generated tokens over the time spent generating them; None before the first token."""
        if not self.tokens or not self.seconds:
            return None
        return self.tokens / self.seconds

    @property
    def mtp_acceptance(self) -> float | None:
        if not self.drafted or self.accepted is None:
            return None
        return self.accepted / self.drafted


def instance_figures(values: dict[str, float]) -> InstanceFigures:
    """From parse_prometheus()'s dict."""

    def count(name: str) -> int | None:
        v = values.get(_P + name)
        return None if v is None else int(v)

    seconds = values.get(_P + "tokens_predicted_seconds_total")
    return InstanceFigures(
        tokens=count("tokens_predicted_total"),
        seconds=seconds,
        prompt_tokens=count("prompt_tokens_total"),
        drafted=count("spec_decode_num_draft_tokens_total"),
        accepted=count("spec_decode_num_accepted_tokens_total"),
    )


def drafts_enabled(argv: Sequence[str]) -> bool | None:
    """Whether the recorded llama-server argv drafts (MTP or another speculative type); None when there
    is no argv to tell (a record written before its server started)."""
    if not argv:
        return None
    args = list(argv)
    for i, a in enumerate(args[:-1]):
        if a == "--spec-type":
            return any(t and t != "none" for t in args[i + 1].split(","))
        if a == "--mtp":
            return args[i + 1] not in ("0", "off")
    return False


def mtp_words(enabled: bool | None, acceptance: float | None) -> str:
    """The MTP column: `off`, `no drafts yet`, `87%`, or `unknown` before the server has an argv."""
    if enabled is False:
        return "off"
    if acceptance is not None:
        return f"{acceptance:.0%}"
    return "no drafts yet" if enabled else "unknown"


def instance_key(pid: int | None, create_time: float | None) -> str | None:
    """One llama-server process: its pid and start time (pids are reused; the pair is not)."""
    if pid is None or create_time is None:
        return None
    return f"{pid}@{create_time:.2f}"


def api_key_hint(required: bool, key_file: str | None = None) -> str:
    """What an OpenAI client must pass as its key. Clients (openai, litellm) refuse an empty one even when
    the server asks for none."""
    if required:
        return f"API key: one from {key_file}" if key_file else "API key: the one from --api-key-file"
    return "API key: none needed, but pass any non-empty key (OpenAI clients refuse an empty one)"
