"""Doctor: each pure check with its fix, and the service on a fresh home."""

from __future__ import annotations

from llmtp.core import doctor as d
from llmtp.core.hardware import CPU, GPU, HardwareSnapshot, Recommendation


def test_driver_vs_toolkit():
    assert d.check_driver_toolkit("12.4", "12.6").status == "fail"
    assert d.check_driver_toolkit("12.4", "12.6").fix.startswith("update the NVIDIA driver")
    assert d.check_driver_toolkit("12.8", "12.6").status == "ok"
    assert d.check_driver_toolkit(None, "12.6").status == "skip"


def test_build_sees_gpu():
    assert d.check_build_sees_gpu("cuda", [], 1).status == "fail"
    assert d.check_build_sees_gpu("cuda", ["CUDA0"], 1).status == "ok"
    assert d.check_build_sees_gpu("cpu", [], 1).status == "warn"
    assert d.check_build_sees_gpu("cpu", [], 0).status == "ok"
    assert d.check_build_sees_gpu(None, None, 0).fix == "run `llmtp build`"


def test_mtp_service_disk_stale_hf():
    assert d.check_mtp_build(None).status == "fail" and d.check_mtp_build("upstream").status == "ok"
    assert d.check_mtp_model("m.gguf", False).status == "warn"
    assert d.check_service("failed").status == "fail" and d.check_service(None).status == "skip"
    assert d.check_disk("models", 5 * d.GiB, d.MIN_FREE_MODELS).detail == "5.0 GiB free, want 20 GiB"
    stale = d.check_stale_builds(["a", "b", "c"], "c", "b", {"a": 2 * d.GiB})
    assert stale.status == "warn" and stale.detail == "1 stale: a (2.0 GiB)"
    assert d.check_stale_builds(["b", "c"], "c", "b", {}).status == "ok"
    assert d.check_hf_cache("/x", True, None, False).status == "fail"
    assert d.overall([d.Check(name="a", status="ok", detail=""), d.Check(name="b", status="warn", detail="")]) == "warn"


def test_doctor_on_a_fresh_home(tmp_path):
    from llmtp.services.machine.doctor import run_doctor
    from llmtp.settings import load_settings

    hw = HardwareSnapshot(
        os="linux",
        cpu=CPU(),
        recommendation=Recommendation(profile="cuda", reason="gpu"),
        gpus=[GPU(index=0, vendor="nvidia", name="RTX", source="nvml", cuda_driver_version="12.4")],
    )
    report = run_doctor(load_settings().settings, hw=hw, service_state=lambda: "active", hf_cache=tmp_path / "none")
    by_name = {c.name: c for c in report.checks}
    assert report.status == "fail"
    assert by_name["build sees the GPU"].detail == "no current build"
    assert by_name["service unit"].status == "ok"
    assert by_name["stale builds"].status == "ok"
    assert by_name["Hugging Face cache"].detail == "no cache yet"
