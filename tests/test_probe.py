"""Capability probe parsers on captured b11434 output and written samples of other dialects."""

from __future__ import annotations

from pathlib import Path

from llmtp.core.capabilities import Device
from llmtp.core.probe import capabilities_from, parse_help, parse_list_devices, parse_version

FIX = Path(__file__).parent / "fixtures" / "llama"
CPU = FIX / "b11434-cpu"
WRITTEN = FIX / "written"


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def test_new_version_format_with_unknown_commit():
    v = parse_version(read(CPU / "server-version.txt"))
    assert (v.version, v.build_number, v.commit, v.compiler, v.target) == (
        "0.6.0-dev",
        11434,
        None,
        "GNU 12.2.0",
        "Linux x86_64",
    )


def test_new_version_format_with_commit():
    v = parse_version("version: 0.4.1-dev (build 10991, commit 930e2fa59)\nbuilt with GNU 13.3.0 for Linux x86_64\n")
    assert (v.version, v.build_number, v.commit) == ("0.4.1-dev", 10991, "930e2fa59")


def test_old_version_format():
    v = parse_version(read(WRITTEN / "old-version.txt"))
    assert (v.version, v.build_number, v.commit) == (None, 8783, "e21cdc11a")
    assert v.target == "x86_64-linux-gnu"


def test_no_version_line_is_unknown():
    v = parse_version("error: unknown argument\n")
    assert v.build_number is None and v.commit is None


def test_b11434_server_help_flags_and_enums():
    flags, enums = parse_help(read(CPU / "server-help.txt"))
    for flag in (
        "-h",
        "--help",
        "--usage",
        "-m",
        "--model",
        "--spec-type",
        "--spec-draft-n-max",
        "-lm",
        "--load-mode",
        "--fit",
        "-fit",
        "-ngl",
        "--n-gpu-layers",
        "-ctkd",
        "--metrics",
        "--port",
        "-ot",
        "--override-tensor",
        "-ncffn",
        "--n-cpu-ffn",
    ):  # the planner's FFN spill
        assert flag in flags, flag
    for removed in ("--no-mmap", "--draft-max", "--mtp"):
        assert removed not in flags
    assert enums["--spec-type"] == [
        "none",
        "draft-simple",
        "draft-eagle3",
        "draft-mtp",
        "draft-dflash",
        "draft-dspark",
        "ngram-simple",
        "ngram-map-k",
        "ngram-map-k4v",
        "ngram-mod",
        "ngram-cache",
    ]
    assert enums["-fa"] == enums["--flash-attn"] == ["on", "off", "auto"]
    assert enums["--load-mode"] == ["auto", "none", "mmap", "mlock", "mmap+mlock", "dio"]
    assert enums["-ctk"] == ["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
    assert enums["--split-mode"] == ["none", "layer", "row", "tensor"]
    assert enums["--fit"] == ["on", "off"]
    assert "-ngl" not in enums  # `N`, 'auto' or 'all' is prose, not a listed choice


def test_bench_help_indented_style():
    flags, enums = parse_help(read(CPU / "bench-help.txt"))
    assert {"-r", "--repetitions", "-o", "--output", "-fitt", "--fit-target", "-hf", "--hf-repo"} <= set(flags)
    assert enums["--output"] == ["csv", "json", "jsonl", "md", "sql"]


def test_capabilities_of_the_pinned_cpu_build():
    caps = capabilities_from(
        read(CPU / "server-version.txt"), read(CPU / "server-help.txt"), read(CPU / "list-devices.txt")
    )
    assert caps.mtp_dialect == "upstream"
    assert caps.devices == []
    assert caps.first_of("--no-mmap", "--load-mode") == "--load-mode"


def test_old_help_dialect():
    flags, enums = parse_help(read(WRITTEN / "old-server-help.txt"))
    assert {"--no-mmap", "--mlock", "--draft-max", "--draft", "--draft-n", "-md"} <= set(flags)
    assert "--load-mode" not in flags and "--spec-type" not in flags
    caps = capabilities_from(read(WRITTEN / "old-version.txt"), read(WRITTEN / "old-server-help.txt"), None)
    assert caps.mtp_dialect is None and caps.devices is None
    assert caps.first_of("--load-mode", "--no-mmap") == "--no-mmap"


def test_branch_dialect():
    caps = capabilities_from("", read(WRITTEN / "branch-server-help.txt"), None)
    assert caps.mtp_dialect == "branch"
    assert caps.spec_types == []


def test_cuda_list_devices():
    devices = parse_list_devices(read(WRITTEN / "cuda-list-devices.txt"))
    assert devices == [
        Device(id="CUDA0", backend="CUDA", name="NVIDIA GeForce RTX 4060 Ti", total_mib=16379, free_mib=14900),
        Device(id="CUDA1", backend="CUDA", name="NVIDIA GeForce RTX 3090", total_mib=24135, free_mib=23811),
    ]


def test_cpu_list_devices_and_failure():
    assert parse_list_devices(read(CPU / "list-devices.txt")) == []
    assert parse_list_devices("error: invalid argument: --list-devices\n") is None
    assert parse_list_devices(
        "Available devices:\n  Vulkan0: AMD Radeon RX 7900 XTX (RADV NAVI31) (24560 MiB, 24000 MiB free)\n"
    ) == [
        Device(
            id="Vulkan0", backend="Vulkan", name="AMD Radeon RX 7900 XTX (RADV NAVI31)", total_mib=24560, free_mib=24000
        )
    ]


def test_removed_flags_are_not_accepted():
    caps = capabilities_from("", read(CPU / "server-help.txt"), None)
    assert {"--draft", "--draft-n", "--draft-max", "--draft-min", "--draft-n-min"} <= set(caps.removed_flags)
    assert not caps.accepts("--draft-max")
    assert caps.accepts("--spec-draft-n-max")


def test_b10752_server_help_the_older_release_of_the_upgrade_test():
    """b10752 (llmtp/testbed/releases.py), captured from its test bed build: draft-mtp is there with the same
    spec flags as b11434, and the load flags of both spellings (b11434 keeps only -lm/--load-mode)."""
    fixtures = Path(__file__).parent / "fixtures/llama"
    old_flags, old_enums = parse_help((fixtures / "b10752-cpu/server-help.txt").read_text(encoding="utf-8"))
    new_flags, new_enums = parse_help((fixtures / "b11434-cpu/server-help.txt").read_text(encoding="utf-8"))
    assert "draft-mtp" in old_enums["--spec-type"] and old_enums["--spec-type"] == new_enums["--spec-type"]
    for flag in ("--spec-draft-n-max", "--spec-draft-p-min", "-lm", "--load-mode", "--metrics", "--fit"):
        assert flag in old_flags and flag in new_flags, flag
    assert sorted(set(old_flags) - set(new_flags)) == [
        "--direct-io",
        "--mlock",
        "--mmap",
        "--no-direct-io",
        "--no-mmap",
        "-dio",
        "-ndio",
    ]
    assert sorted(set(new_flags) - set(old_flags)) == [
        "--log-jsonl",
        "--no-log-jsonl",
        "--rpc",
        "--spec-draft-sampling",
    ]
    version = parse_version((fixtures / "b10752-cpu/server-version.txt").read_text(encoding="utf-8"))
    assert (version.build_number, version.commit) == (10752, None)
