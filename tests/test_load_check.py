"""Plans against llama-server's load lines (captured at -lv 4): layers offloaded, buffers per device; verify's
GPU marker from the same lines; status's device memory where NVML cannot see it."""

from __future__ import annotations

from pathlib import Path

from llmtp.core.calibrate import parse_load_log
from llmtp.core.load_check import check_plan, device_bytes, gpu_devices, last_load, parse_offloaded
from llmtp.core.plan_types import MemoryBreakdown, Plan
from llmtp.core.weights_marker import weights_marker
from llmtp.services.serve.device_memory import device_bytes_from_log

FIX = Path(__file__).parent / "fixtures" / "vulkan"
CPU_LOG = (FIX / "serve-cpu-tiny-agree-ngl99-lv4.log").read_text(encoding="utf-8")  # CPU test bed, -ngl 99
MiB = 1024 * 1024


def plan_of(ngl: int | None, gpu: MemoryBreakdown | None, cpu: MemoryBreakdown) -> Plan:
    return Plan(
        model="m",
        arch="qwen35",
        quant=None,
        fits=True,
        n_gpu_layers=ngl,
        n_layers=8,
        ctx=512,
        cache_type_k="f16",
        cache_type_v="f16",
        flash_attn="on",
        memory=[m for m in (gpu, cpu) if m is not None],
    )


def test_cpu_build_log_has_no_gpu_buffer_and_no_offload_line():
    buffers = parse_load_log(CPU_LOG)
    assert parse_offloaded(CPU_LOG) is None
    assert gpu_devices(CPU_LOG) == {}
    cpu = device_bytes(buffers, "CPU")
    assert cpu["model"] == round(1.72 * MiB) and cpu["KV"] == round(0.06 * MiB)


def test_weights_marker_on_the_cpu_build_given_a_gpu_plan():
    m = weights_marker(CPU_LOG, expect_gpu=True, listed=[])
    assert m.ok is False and "lists no GPU device" in m.detail and "system RAM" in m.detail
    m = weights_marker(CPU_LOG, expect_gpu=True, listed=["Vulkan0"])  # a GPU build that kept the weights in RAM
    assert m.ok is False and m.detail == "a GPU launch was planned, but every weight is in system RAM"
    assert weights_marker(CPU_LOG, expect_gpu=False, listed=[]).ok is None
    # the default verbosity prints no buffer line: the marker says how to get them
    m = weights_marker("main: model loaded\n", expect_gpu=True, listed=None)
    assert m.ok is False and "-lv 4" in m.detail


def test_check_plan_rows_and_tolerance():
    buffers = parse_load_log(CPU_LOG)
    cpu = MemoryBreakdown(
        device="CPU (system RAM)",
        weights=round(1.70 * MiB),
        kv_cache=round(0.06 * MiB),
        recurrent_state=round(0.01 * MiB),
    )
    rows = {r.what: r for r in check_plan(plan_of(None, None, cpu), None, buffers, "Vulkan0")}
    assert rows["model on CPU"].ok is True  # 1.70 vs 1.72 MiB: within 5%
    assert rows["model on Vulkan0"].ok is None  # nothing planned there, nothing measured
    assert "layers on Vulkan0" not in rows  # a CPU plan has no -ngl to compare
    off = cpu.model_copy(update={"weights": round(1.5 * MiB)})
    rows = {r.what: r for r in check_plan(plan_of(None, None, off), None, buffers, "Vulkan0")}
    assert rows["model on CPU"].ok is False
    gpu = MemoryBreakdown(device="Vulkan0", weights=MiB)
    rows = {r.what: r for r in check_plan(plan_of(99, gpu, cpu), None, buffers, "Vulkan0")}
    assert rows["layers on Vulkan0"].ok is False and rows["model on Vulkan0"].ok is False


def test_last_load_and_device_memory_from_a_restarted_log(tmp_path):
    log = tmp_path / "llama-server.log"
    log.write_text(CPU_LOG + CPU_LOG.replace("CPU_Mapped model", "Vulkan0 model"), encoding="utf-8")
    # only the second load counts: the first load's CPU buffers are not added to it
    assert "model" not in device_bytes(parse_load_log(last_load(log.read_text())), "CPU")
    assert device_bytes_from_log(log) == {"Vulkan0": round(1.72 * MiB)}
    log.write_text(CPU_LOG, encoding="utf-8")
    assert device_bytes_from_log(log) is None  # a CPU build holds no device memory
    assert device_bytes_from_log(tmp_path / "missing.log") is None


VK_LOG = (FIX / "serve-vulkan-bench-agree-mtp-ngl10-lv4.log").read_text(encoding="utf-8")  # lavapipe, MTP on


def test_vulkan_log_offload_buffers_and_the_draft_context():
    from llmtp.core.load_check import split_draft

    assert parse_offloaded(VK_LOG).model_dump() == {"layers": 10, "of": 10}
    main, draft = split_draft(VK_LOG)
    vk = device_bytes(parse_load_log(main), "Vulkan0")
    assert vk["model"] == round(290.05 * MiB) and vk["KV"] == MiB and vk["RS"] == round(12.56 * MiB)
    assert device_bytes(parse_load_log(draft), "Vulkan0")["KV"] == round(0.5 * MiB)  # the draft's own KV
    assert device_bytes(parse_load_log(main), "CPU")["model"] == round(0.59 * MiB)
    # `Vulkan_Host` buffers (pinned host memory) are not device memory; the draft context's compute buffer,
    # printed twice (re-reserved), counts once: 290.05 + 1.00 + 12.56 + 32.52 + 0.50 + 30.52 MiB
    assert gpu_devices(VK_LOG) == {
        "Vulkan0": sum(round(x * MiB) for x in (290.05, 1.00, 12.56, 0.50)) + round(32.52 * MiB) + round(30.52 * MiB)
    }


def test_weights_marker_sees_vulkan0():
    m = weights_marker(VK_LOG, expect_gpu=True, listed=["Vulkan0"])
    assert m.ok is True and m.detail == "model weights on Vulkan0 290.1 MiB, 10/10 layers offloaded"


def test_check_plan_against_the_vulkan_log():
    from llmtp.core.load_check import split_draft

    main, draft = split_draft(VK_LOG)
    gpu = MemoryBreakdown(
        device="Vulkan0",
        weights=round(290.1 * MiB),
        kv_cache=MiB,
        recurrent_state=round(12.56 * MiB),
        mtp_draft=502 * MiB,
    )
    cpu = MemoryBreakdown(device="CPU (system RAM)", weights=round(0.6 * MiB))
    rows = {
        r.what: r
        for r in check_plan(plan_of(10, gpu, cpu), parse_offloaded(main), parse_load_log(main), "Vulkan0", draft=draft)
    }
    assert all(
        rows[k].ok for k in ("layers on Vulkan0", "model on Vulkan0", "KV on Vulkan0", "RS on Vulkan0", "model on CPU")
    )
    d = rows["MTP draft context on Vulkan0 (KV + compute)"]
    assert d.ok is None and d.measured == round(0.5 * MiB) + round(30.52 * MiB)
    # the whole log (draft context included) would have counted its KV into the target's: 1.5 MiB, not 1.0
    whole = {r.what: r for r in check_plan(plan_of(10, gpu, cpu), None, parse_load_log(VK_LOG), "Vulkan0")}
    assert whole["KV on Vulkan0"].ok is False
