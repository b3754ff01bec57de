"""Serve a plan for real and check it against the server's own load lines: the layers it offloaded and its
model / KV / recurrent-state buffers per device. How a device budget's plan is proven on a real device."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from llmtp.adapters import files
from llmtp.core.calibrate import parse_load_log
from llmtp.core.launch_plan import LaunchRequest
from llmtp.core.load_check import CheckRow, Offload, check_plan, gpu_devices, parse_offloaded, split_draft
from llmtp.core.plan_types import PlanDevice, PlanHardware
from llmtp.services.serve.launch import launched
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch


@dataclass
class CheckedRun:
    plan: object  # core.plan.Plan
    argv_tail: list[str]  # the launch's flags after the model (what the plan turned into)
    offload: Offload | None
    rows: list[CheckRow]
    device_bytes: dict[str, int]  # device memory in use per GPU device, from the load log
    content: str
    timings: dict
    log_path: Path

    @property
    def ok(self) -> bool:
        return all(r.ok is not False for r in self.rows)


def device_budget(device: str, budget_bytes: int, ram_bytes: int | None, backend: str = "vulkan") -> PlanHardware:
    """Planning hardware for a `--vram`-style budget on one named device (e.g. "Vulkan0")."""
    return PlanHardware(gpus=[PlanDevice(name=device, free_bytes=budget_bytes)], ram_bytes=ram_bytes, backend=backend)


def serve_and_check(
    settings,
    request: LaunchRequest,
    hardware: PlanHardware,
    device: str,
    *,
    log_path: Path,
    prompt: str = "Hello world, the",
    n_predict: int = 16,
) -> CheckedRun:
    """Plan `request` (model, --server, port, ctx, ...) for `hardware` through serve's own path (the one launch
    plan), start it (launched), send one greedy completion, stop it, and compare the plan with the load log."""

    launch = resolve_launch(settings, request, LaunchDeps(hardware=hardware))
    argv = launch.argv_list
    # lavapipe compiles its shaders at load: more time than the file's size alone calls for
    with launched(launch, log_path=log_path, ready_timeout=launch.ready_timeout_s + 120) as proc:
        with proc.client(timeout=300) as client:
            answer = client.completion(prompt, n_predict)
    text = files.read_text(log_path, errors="replace")
    main, draft = split_draft(text)
    buffers = parse_load_log(main)
    offload = parse_offloaded(main)
    plan = launch.planned.plan  # type: ignore[union-attr]
    return CheckedRun(
        plan=plan,
        argv_tail=argv[argv.index("--port") + 2 :],
        offload=offload,
        rows=check_plan(plan, offload, buffers, device, draft=draft),
        device_bytes=gpu_devices(text),
        content=answer.get("content", ""),
        timings=answer.get("timings", {}),
        log_path=log_path,
    )
