"""Prometheus /metrics parsing and the MTP acceptance derived from it (captured b11434 output)."""

from __future__ import annotations

from pathlib import Path

from llmtp.core.metrics import ServerMetrics, parse_prometheus, server_metrics

FIX = Path(__file__).parent / "fixtures/llama/b11434-cpu/metrics.txt"


def test_parse_captured_metrics():
    values = parse_prometheus(FIX.read_text(encoding="utf-8"))
    assert values["llamacpp:tokens_predicted_total"] == 4
    assert values["llamacpp:spec_decode_num_draft_tokens_total"] == 0
    assert len(values) == 15
    m = server_metrics(values)
    assert m.tokens_predicted == 4
    assert m.mtp_acceptance is None  # nothing drafted: no evidence, not 0 %


def test_labels_and_garbage():
    values = parse_prometheus('a{slot="0"} 1.5\n# c\nbad line here x\nb NaN\nc 2 1700000000\n')
    assert values["a{slot=\"0\"}"] == 1.5
    assert values["c"] == 2
    assert "bad" not in values


def test_acceptance():
    assert ServerMetrics(draft_tokens=40, accepted_tokens=30).mtp_acceptance == 0.75
    assert ServerMetrics(draft_tokens=None, accepted_tokens=None).mtp_acceptance is None
