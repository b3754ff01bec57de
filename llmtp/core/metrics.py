"""Parse llama-server's Prometheus /metrics text and derive what `status` and `verify` report.

Sample (b11434, with --metrics):
  # TYPE llamacpp:spec_decode_num_accepted_tokens_total counter
  llamacpp:spec_decode_num_accepted_tokens_total 0
"""

from __future__ import annotations

import re

from pydantic import BaseModel

# `name{label="v"} 1.5` or `name 1.5`; labels are kept in the key as written.
_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*(?:\{[^}]*\})?)\s+(\S+)(?:\s+\d+)?$")


def parse_prometheus(text: str) -> dict[str, float]:
    """Metric name (with labels, if any) -> value. Comments and unparsable lines are skipped."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            out[m.group(1)] = float(m.group(2))
        except ValueError:
            continue
    return out


class ServerMetrics(BaseModel):
    """The few numbers status shows; None when the server did not report them."""

    tokens_predicted: float | None = None
    predicted_tokens_per_second: float | None = None  # server-wide average
    draft_tokens: float | None = None
    accepted_tokens: float | None = None
    drafts: float | None = None

    @property
    def mtp_acceptance(self) -> float | None:
        """Accepted / drafted tokens; None when nothing was drafted (no evidence either way)."""
        if not self.draft_tokens or self.accepted_tokens is None:
            return None
        return self.accepted_tokens / self.draft_tokens


def server_metrics(values: dict[str, float]) -> ServerMetrics:
    p = "llamacpp:"
    return ServerMetrics(
        tokens_predicted=values.get(p + "tokens_predicted_total"),
        predicted_tokens_per_second=values.get(p + "predicted_tokens_seconds"),
        draft_tokens=values.get(p + "spec_decode_num_draft_tokens_total"),
        accepted_tokens=values.get(p + "spec_decode_num_accepted_tokens_total"),
        drafts=values.get(p + "spec_decode_num_drafts_total"),
    )


# llama-server's log, one block per finished request (b11434, tools/server print_timings):
#   slot print_timing: id  0 | task 6 |        eval time =       7.37 ms /    32 tokens (    0.24 ms per token,  4203.96 tokens per second)  # noqa: E501
#   slot print_timing: id  0 | task 6 | draft acceptance = 1.00000 (   23 accepted /    23 generated), mean len =  3.88
_EVAL = re.compile(
    r"print_timing: id\s+\d+ \| task (?P<task>\d+) \|\s+eval time =\s+(?P<ms>[\d.]+) ms /\s*"
    r"(?P<n>\d+) tokens \(.*?(?P<tps>[\d.]+|inf|nan) tokens per second\)"
)
_DRAFT = re.compile(
    r"print_timing: id\s+\d+ \| task (?P<task>\d+) \| draft acceptance = (?P<rate>[\d.]+) "
    r"\(\s*(?P<acc>\d+) accepted /\s*(?P<gen>\d+) generated\)"
)


class LastRequest(BaseModel):
    """The most recent finished request in a llama-server log."""

    task: int
    tokens: int
    tokens_per_second: float | None  # None for a request that generated nothing
    eval_ms: float | None = None
    drafted: int | None = None  # None: no draft line (MTP off, or nothing drafted)
    accepted: int | None = None

    @property
    def mtp_acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None


def last_request(log_text: str) -> LastRequest | None:
    found = requests(log_text)
    return found[-1] if found else None


def requests(log_text: str) -> list[LastRequest]:
    """Every finished request in a log, in order, with its draft counts when it drafted."""
    out: list[LastRequest] = []
    for line in log_text.splitlines():
        m = _EVAL.search(line)
        if m:
            tps = float(m.group("tps")) if m.group("tps") not in ("inf", "nan") and int(m.group("n")) else None
            out.append(
                LastRequest(
                    task=int(m.group("task")),
                    tokens=int(m.group("n")),
                    tokens_per_second=tps,
                    eval_ms=float(m.group("ms")),
                )
            )
            continue
        m = _DRAFT.search(line)
        if m and out and int(m.group("task")) == out[-1].task:
            out[-1].drafted, out[-1].accepted = int(m.group("gen")), int(m.group("acc"))
    return out
