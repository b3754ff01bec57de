"""Parsers for llama-server's own memory reports, on output captured from the pinned b11434 CPU build."""

from __future__ import annotations

from pathlib import Path

from llmtp.core.calibrate import (
    CalibrationRecord,
    correction_factors,
    parse_fit_params,
    parse_load_log,
    parse_memory_breakdown,
)

LOGS = Path(__file__).parent / "fixtures" / "server-logs"
MiB = 1024 * 1024


def test_load_log_buffers_q8_cache():
    b = parse_load_log((LOGS / "b11434-cpu-smollm2-c8192-q8-fa-np1.log").read_text())
    assert b.n_ctx == 8192
    assert b.buffers["CPU"]["model"] == round(92.10 * MiB)
    assert b.buffers["CPU"]["KV"] == round(95.62 * MiB)
    assert b.buffers["CPU"]["compute"] == round(22.67 * MiB)
    assert b.total("output") == round(0.19 * MiB)


def test_memory_breakdown_host_row_takes_the_exit_table():
    rows = parse_memory_breakdown((LOGS / "b11434-cpu-smollm2-c2048-f16-np1-fa-off.log").read_text())
    assert [(r.name, r.self_, r.model, r.context, r.compute) for r in rows] == [("Host", 184, 92, 45, 47)]


def test_memory_breakdown_gpu_row_format():
    # template_gpu in common/fit.cpp (b11434); no GPU capture exists yet
    text = (
        "common_memory_breakdown_print: | memory breakdown [MiB] | total   free    self   model   context   compute    unaccounted |\n"
        "common_memory_breakdown_print: |   - CUDA0 (RTX 4090)   | 24080 =  1234 + (22000 = 20000 +    1500 +     500) +     846 |\n"
        "common_memory_breakdown_print: |   - Host               |                  741 =   741 +       0 +      12                |\n"
    )
    rows = parse_memory_breakdown(text)
    assert rows[0].name == "CUDA0 (RTX 4090)" and rows[0].total == 24080 and rows[0].free == 1234
    assert (rows[0].model, rows[0].context, rows[0].compute, rows[0].unaccounted) == (20000, 1500, 500, 846)
    assert rows[1].name == "Host" and rows[1].self_ == 741


def test_fit_params_stdout():
    fit = parse_fit_params((LOGS / "b11434-cpu-fit-params-smollm2-c8192.txt").read_text())
    assert fit is not None and (fit.ctx, fit.n_gpu_layers, fit.extra) == (8192, -1, [])
    assert parse_fit_params("-c 4096 -ngl 40 -ts 3,1\n").extra == ["-ts", "3,1"]  # type: ignore[union-attr]
    assert parse_fit_params("failed to fit") is None


def test_correction_factors_are_means_and_clamped():
    recs = [
        CalibrationRecord(
            model="m",
            build="b1",
            ctx=4096,
            cache_type="f16",
            predicted={"compute": 100, "context": 100},
            actual={"compute": 110, "context": 300},
        ),
        CalibrationRecord(
            model="m", build="b1", ctx=8192, cache_type="f16", predicted={"compute": 100}, actual={"compute": 90}
        ),
    ]
    assert correction_factors(recs) == {"compute": 1.0, "context": 1.5}
