"""`llmtp logs` without --raw: errors, warnings, starts and one line per request, with absolute times;
tested on logs captured from the real llama-server (tests/fixtures)."""

from __future__ import annotations

from pathlib import Path

from llmtp.core.logview import START_MARK, LogView, view

FIX = Path(__file__).parent / "fixtures"


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def test_one_line_per_request_with_absolute_times():
    log = _lines(FIX / "server-logs" / "b11434-cpu-tiny-agree-c2048-mtp-lv4.log")
    shown = view([f"{START_MARK}1765100000.000000\n", *log])
    requests = [s for s in shown if s.level == "request"]
    assert [s.text for s in requests] == [
        "request 0: prompt 3 tokens, 32 tokens at 191.7 tok/s (MTP 23/23 drafts accepted)"
    ]
    assert requests[0].at == 1765100000 + 3.236134  # the release line's stamp, 0.03.236.134
    assert [s.level for s in shown].count("warning") == 1  # the no-API-key note
    assert any(s.text.startswith("listening on http://127.0.0.1:9123") for s in shown)
    assert len(shown) < 10 < len(log)  # 253 lines of -lv 4 output, the sampler dump included, fold to a few
    assert not any("sampler" in s.text or "repeat_last_n" in s.text for s in shown)


def test_errors_are_kept_and_unstamped_lines_are_errors():
    shown = view(_lines(FIX / "llama" / "b11434-cpu" / "serve-missing-model.log"))
    errors = [s.text for s in shown if s.level == "error"]
    assert "llama_server: exiting due to model loading error" in " ".join(errors)
    assert any("failed to open GGUF file '/nonexist.gguf'" in e for e in errors)
    assert all(s.at is None for s in shown)  # no start mark: the time is unknown, never invented
    assert LogView().feed("terminate called after throwing an instance of 'std::bad_alloc'\n")[0].level == "error"


def test_two_requests_and_a_restart_restart_the_clock():
    log = _lines(FIX / "server-logs" / "b11434-cpu-tiny-agree-mtp-two-requests.log")
    v = LogView()
    first = [s for line in [f"{START_MARK}100.0\n", *log] for s in v.feed(line)]
    second = [s for line in [f"{START_MARK}5000.0\n", *log] for s in v.feed(line)]
    assert len([s for s in first if s.level == "request"]) == 2
    assert [round(s.at - 4900, 6) for s in second if s.level == "request"] == [
        round(s.at, 6) for s in first if s.level == "request"
    ]
