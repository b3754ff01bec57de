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
