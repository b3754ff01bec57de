"""`llmtp detect` on this machine, through typer's CliRunner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from llmtp.cli.main import app


def _has_gpu_driver() -> bool:
    return Path("/proc/driver/nvidia").exists() or Path("/sys/class/kfd").exists()


def test_detect_json_describes_this_machine():
    result = CliRunner().invoke(app, ["detect", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["cpu"]["cores_logical"] >= 1
    assert data["ram_total_bytes"] > 0
    for name in ("cmake", "git"):
        assert data["toolchains"][name]["path"] == shutil.which(name)
    if shutil.which("cmake"):
        assert data["toolchains"]["cmake"]["version"]
    if not _has_gpu_driver():
        assert data["gpus"] == []
        assert data["recommendation"]["profile"] == "cpu"
    assert data["recommendation"]["reason"]


def test_detect_human_output_has_every_section():
    result = CliRunner().invoke(app, ["detect"])
    assert result.exit_code == 0, result.output
    for text in ("CPU: ", "RAM: ", "Toolchains", "Recommended build profile: "):
        assert text in result.stdout


def test_render_escapes_brackets_in_gpu_names(capsys):
    from llmtp.cli.detect import render
    from llmtp.core.hardware import CPU, GPU, HardwareSnapshot, Recommendation

    snap = HardwareSnapshot(
        os="linux",
        cpu=CPU(),
        recommendation=Recommendation(profile="rocm", reason="r"),
        gpus=[
            GPU(
                index=0,
                vendor="amd",
                name="Navi 31 [Radeon RX 7900 XTX]",
                vram_total_bytes=24 << 30,
                gfx_target="gfx1100",
                source="sysfs",
            )
        ],
    )
    render(snap)
    out = capsys.readouterr().out
    assert "Navi 31 [Radeon RX 7900 XTX]" in out and "gfx1100" in out and "24.0 GiB" in out
