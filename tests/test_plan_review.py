"""plan warns where it should (issue 26): under 5 tok/s, memory under a safety floor, a context past the
trained one (refused far past it without --force); a CPU plan never speaks of VRAM or the GPU."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from llmtp.cli.main import app
from llmtp.core.catalog_model import model_info_from_catalog
from llmtp.core.plan import make_plan
from llmtp.core.plan_review import FAR_BEYOND_TRAINED, check_ctx, device_wording
from llmtp.core.plan_types import GiB, PlanHardware, PlanRequest
from llmtp.errors import UsageError
from llmtp.services.models.catalog import load_catalog


def _quants(alias: str):
    e = load_catalog().get(alias)
    return [model_info_from_catalog(e, q.name) for q in e.quants]


def _cpu(ram_gib: float, bw: float | None = 20.0) -> PlanHardware:
    return PlanHardware(ram_bytes=int(ram_gib * GiB), ram_bandwidth_gbps=bw, backend="cpu")


def test_the_issue_box_warns_slow_and_tight():
    """`plan qwen3.6-27b` on 22.3 GiB of RAM at 20 GB/s: Q5_K_M at 21.5 GiB, about 1 tok/s - both warned."""
    plan = make_plan(_quants("qwen3.6-27b"), _cpu(22.3), PlanRequest())
    text = " ".join(plan.warnings)
    assert "under 5 tok/s" in text and "safety floor" in text
    words = " ".join([d.reason for d in plan.decisions] + [c.lost or "" for c in plan.candidates])
    assert "VRAM" not in words and "GPU" not in words


def test_a_roomy_fast_plan_says_nothing_new():
    plan = make_plan(_quants("smollm2-135m"), _cpu(64, 60), PlanRequest())
    assert not any("tok/s" in w or "safety floor" in w or "trained" in w for w in plan.warnings)


def test_unknown_speed_is_not_called_slow():
    plan = make_plan(_quants("qwen3.6-27b"), _cpu(64, None), PlanRequest())
    assert plan.decode_tok_s is None and not any("tok/s" in w for w in plan.warnings)


def test_ctx_beyond_the_trained_context_warns_and_far_beyond_is_refused():
    trained = model_info_from_catalog(load_catalog().get("smollm2-135m"), "Q4_1").context_length
    assert trained == 8192
    plan = make_plan(_quants("smollm2-135m"), _cpu(64, 60), PlanRequest(ctx=16384))
    assert any("beyond the trained context 8192" in w for w in plan.warnings)
    with pytest.raises(UsageError, match=r"122x the context this model was trained for \(8192\)"):
        make_plan(_quants("smollm2-135m"), _cpu(64, 60), PlanRequest(ctx=1_000_000))
    forced = make_plan(_quants("smollm2-135m"), _cpu(512, 60), PlanRequest(ctx=1_000_000, force=True))
    assert forced.ctx == 1_000_000
    check_ctx(FAR_BEYOND_TRAINED * 8192, 8192, force=False)  # the limit itself passes
    check_ctx(10**6, None, force=False)  # unknown trained context: nothing to compare with


def test_not_fitting_at_a_requested_ctx_says_so():
    plan = make_plan(_quants("smollm2-135m"), _cpu(0.1, 60), PlanRequest(ctx=32768))
    assert any(w.startswith("does not fit at --ctx 32768") for w in plan.warnings)
    assert not any("smallest context" in w for w in plan.warnings)


def test_device_wording():
    assert device_wording("quantized to keep it in VRAM", on_gpu=False) == "quantized to keep it in RAM"
    assert device_wording("keeps most layers on the GPU", on_gpu=False) == "keeps most layers in RAM"
    assert device_wording("fits in VRAM", on_gpu=True) == "fits in VRAM"


def test_cli_force_and_refusal():
    r = CliRunner().invoke(app, ["plan", "smollm2-135m", "--ctx", "1000000", "--ram-bw", "20"])
    assert isinstance(r.exception, UsageError) and "--force" in r.exception.hint
    r = CliRunner().invoke(app, ["plan", "smollm2-135m", "--ctx", "1000000", "--ram-bw", "20", "--force", "--json"])
    assert r.exit_code == 0, r.output


def test_offline_note_is_said_in_full_once_a_day(llmtp_home):
    from llmtp.services.stores.said_notes import first_today
    from llmtp.settings import load_settings

    s = load_settings().settings
    assert first_today(s, "k", now=1_765_000_000) and not first_today(s, "k", now=1_765_000_100)
    assert first_today(s, "k", now=1_765_000_000 + 86400)


def test_measured_ram_bandwidth_is_cached(llmtp_home):
    from llmtp.services.machine.ram_bandwidth import ram_bandwidth
    from llmtp.settings import load_settings

    s = load_settings().settings
    calls = []
    measure = lambda: calls.append(1) or 12.5  # noqa: E731
    assert ram_bandwidth(s, measure, now=1000.0) == (12.5, "measured now")
    gbps, how = ram_bandwidth(s, measure, now=2000.0)
    assert gbps == 12.5 and how.startswith("measured ") and calls == [1]
    assert ram_bandwidth(s, lambda: None, now=1000.0 + 8 * 86400) == (None, "could not be measured")
