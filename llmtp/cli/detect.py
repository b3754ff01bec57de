"""`llmtp detect`: print the hardware snapshot (GPUs, CPU/RAM, toolchains, recommended build profile)."""

from __future__ import annotations

import typer


def detect(json_out: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """Detect GPUs, CPU, RAM and build tools, and recommend a llama.cpp build profile."""
    from llmtp.cli._out import emit_json
    from llmtp.services.machine.detect import detect_hardware

    snapshot = detect_hardware(vulkan_server=_vulkan_server())
    if json_out:
        emit_json(snapshot)
        return
    render(snapshot)


def _vulkan_server():
    """The current build's llama-server when it is a Vulkan build: its --list-devices gives device memory."""
    from llmtp.services.build.installed import current_build
    from llmtp.settings import load_settings

    cur = current_build(load_settings().settings)
    return cur.server if cur is not None and cur.manifest.backend == "vulkan" and cur.server.is_file() else None


def _gb(n: int | None) -> str:
    from llmtp.cli._out import human_bytes

    return human_bytes(n)  # None -> "unknown"


def render(snap) -> None:
    """Human view of a HardwareSnapshot: the same data as --json, as tables."""
    from rich.markup import escape as e  # GPU names carry brackets: "Navi 31 [Radeon RX 7900 XTX]"
    from rich.table import Table

    from llmtp.cli._out import console
    from llmtp.core.vulkan_devices import VISIBLE_ENV

    out = console()
    # One block per GPU rather than a wide table: it stays readable in an 80-column terminal.
    for g in snap.gpus:
        out.print(f"GPU {g.vendor} {g.index}: [bold]{e(g.name)}[/bold] (via {g.source})")
        memory = f"{_gb(g.vram_total_bytes)} {'unified' if g.unified_memory else 'VRAM'}"
        if g.vram_free_bytes is not None:
            memory += f", {_gb(g.vram_free_bytes)} free"
        if g.gtt_total_bytes is not None:
            memory += f", GTT {_gb(g.gtt_total_bytes)}"
        facts = [memory]
        if g.compute_capability:
            facts.append(f"compute {g.compute_capability} (CUDA arch {g.cuda_arch})")
        if g.gfx_target:
            facts.append(g.gfx_target)
        if g.gpu_cores:
            facts.append(f"{g.gpu_cores} GPU cores")
        if g.pcie_generation and g.pcie_width:
            facts.append(f"PCIe gen{g.pcie_generation} x{g.pcie_width}")
        if g.memory_bandwidth_gbps:
            facts.append(f"{g.memory_bandwidth_gbps:.0f} GB/s")
        if g.driver_version:
            facts.append(
                f"driver {g.driver_version}" + (f" (CUDA {g.cuda_driver_version})" if g.cuda_driver_version else "")
            )
        out.print("    " + e(" · ".join(facts)))
    if not snap.gpus:
        out.print("GPUs: none found")
    for d in snap.vulkan_devices:
        kind = "CPU implementation, not a GPU" if d.cpu_type else (d.device_type or "type unknown")
        memory = f"{d.total_mib} MiB, {d.free_mib} MiB free" if d.total_mib is not None else "memory unknown"
        chosen = f", chosen by {VISIBLE_ENV}" if d.chosen else ""
        out.print(f"Vulkan {d.index}: {e(d.name)} ({kind}; {memory}{chosen}; via {d.source})")
    cpu = snap.cpu
    cores = f"{cpu.cores_physical or '?'} cores / {cpu.cores_logical or '?'} threads"
    out.print(f"CPU: {e(cpu.model or 'unknown')} ({cpu.arch or 'unknown arch'}, {cores})")
    out.print(f"     ISA: {' '.join(cpu.flags) or 'none of note'}")
    out.print(f"RAM: {_gb(snap.ram_total_bytes)} total, {_gb(snap.ram_available_bytes)} available")
    tools = Table("tool", "version", "path", title="Toolchains")
    for tool in snap.toolchains.values():
        version = " ".join(x for x in (tool.family, tool.version) if x)
        tools.add_row(tool.name, e(version) or ("?" if tool.path else "-"), e(tool.path or "not found"))
    out.print(tools)
    out.print(f"Recommended build profile: [bold]{snap.recommendation.profile}[/bold]")
    out.print(f"  {e(snap.recommendation.reason)}")
    for note in snap.notes:
        out.print(f"  note: {e(note)}")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect)
