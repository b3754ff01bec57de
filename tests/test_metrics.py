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
    assert values['a{slot="0"}'] == 1.5
    assert values["c"] == 2
    assert "bad" not in values


def test_acceptance():
    assert ServerMetrics(draft_tokens=40, accepted_tokens=30).mtp_acceptance == 0.75
    assert ServerMetrics(draft_tokens=None, accepted_tokens=None).mtp_acceptance is None


def test_last_request_from_the_server_log():
    from pathlib import Path

    from llmtp.core.metrics import last_request

    text = (Path(__file__).parent / "fixtures/server-logs/b11434-cpu-tiny-agree-mtp-two-requests.log").read_text()
    last = last_request(text)
    assert (last.task, last.tokens, last.tokens_per_second) == (6, 32, 4203.96)
    assert (last.drafted, last.accepted, last.mtp_acceptance) == (23, 23, 1.0)
    first_only = text.split("task 6", 1)[0]
    assert last_request(first_only).tokens == 16
    assert last_request("no requests yet\n") is None
    # a plain (no MTP) request has no draft line: acceptance unknown, not 0
    plain = last_request(
        "slot print_timing: id  0 | task 2 |        eval time =      10.00 ms /     5 tokens "
        "(    2.00 ms per token,   500.00 tokens per second)\n"
    )
    assert plain.tokens_per_second == 500.0 and plain.mtp_acceptance is None
