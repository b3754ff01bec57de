"""Pure parsers for CPU facts: Linux /proc/cpuinfo and macOS sysctl output -> llmtp.core.hardware.CPU."""

from __future__ import annotations

import re

from llmtp.core.hardware import CPU

# The x86 flags llama.cpp's CPU backend selects kernels by (ggml-cpu variants, GGML_AVX*/AMX options),
# in the spelling /proc/cpuinfo uses. `pni` is the kernel's name for SSE3.
X86_FLAGS = (
    "sse3",
    "ssse3",
    "sse4_1",
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "bmi2",
    "avx_vnni",
    "avx512f",
    "avx512bw",
    "avx512dq",
    "avx512vl",
    "avx512cd",
    "avx512vbmi",
    "avx512_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
_X86_ALIASES = {"pni": "sse3"}

# aarch64 /proc/cpuinfo "Features" -> the names llama.cpp uses (GGML_USE_NEON, DOTPROD, MATMUL_INT8, SVE...).
_ARM_FEATURES = {
    "asimd": "neon",
    "asimddp": "dotprod",
    "asimdhp": "fp16",
    "i8mm": "i8mm",
    "bf16": "bf16",
    "sve": "sve",
    "sve2": "sve2",
    "sme": "sme",
}
ARM_FLAGS = ("neon", "dotprod", "fp16", "i8mm", "bf16", "sve", "sve2", "sme")

# "CPU implementer"/"CPU part" -> core name, for the aarch64 cores llama.cpp users run on;
# anything else is reported by its ids rather than guessed.
_ARM_PARTS = {
    ("0x41", "0xd03"): "ARM Cortex-A53",
    ("0x41", "0xd05"): "ARM Cortex-A55",
    ("0x41", "0xd08"): "ARM Cortex-A72",
    ("0x41", "0xd0b"): "ARM Cortex-A76",
    ("0x41", "0xd0c"): "ARM Neoverse-N1",
    ("0x41", "0xd40"): "ARM Neoverse-V1",
    ("0x41", "0xd49"): "ARM Neoverse-N2",
    ("0x41", "0xd4f"): "ARM Neoverse-V2",
}


def _blocks(text: str) -> list[dict[str, str]]:
    """/proc/cpuinfo is blank-line separated `key<TAB>: value` blocks, one per logical CPU
    (aarch64 adds a trailing block with machine-wide keys)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if current:
                blocks.append(current)
                current = {}
            continue
        key, sep, value = line.partition(":")
        if sep:
            current[key.strip()] = value.strip()
    if current:
        blocks.append(current)
    return blocks


def parse_proc_cpuinfo(text: str, arch: str | None = None) -> CPU:
    """Parse /proc/cpuinfo.

    x86_64 sample:  `model name	: AMD EPYC` ... `flags		: fpu vme ... avx2 ... avx512f ...`
    aarch64 sample: `Features	: fp asimd evtstrm aes ... asimddp sve i8mm bf16` with
                    `CPU implementer	: 0x41` and `CPU part	: 0xd40` (no model name line)
    Physical cores come from distinct (physical id, core id) pairs; aarch64 has none -> None.
    """
    blocks = _blocks(text)
    processors = [b for b in blocks if "processor" in b]
    model = next((b["model name"] for b in processors if b.get("model name")), None)
    flags: list[str] = []
    x86_flags = next((b["flags"] for b in processors if "flags" in b), None)
    arm_features = next((b["Features"] for b in processors if "Features" in b), None)
    if x86_flags is not None:
        have = {_X86_ALIASES.get(f, f) for f in x86_flags.split()}
        flags = [f for f in X86_FLAGS if f in have]
        arch = arch or "x86_64"
    elif arm_features is not None:
        have = {_ARM_FEATURES[f] for f in arm_features.split() if f in _ARM_FEATURES}
        flags = [f for f in ARM_FLAGS if f in have]
        arch = arch or "aarch64"
        if model is None:
            first = processors[0] if processors else {}
            impl, part = first.get("CPU implementer"), first.get("CPU part")
            if impl and part:
                model = _ARM_PARTS.get((impl.lower(), part.lower()), f"ARM implementer {impl} part {part}")
    cores = {(b.get("physical id"), b.get("core id")) for b in processors if "core id" in b}
    return CPU(
        model=model, arch=arch, cores_physical=len(cores) or None, cores_logical=len(processors) or None, flags=flags
    )


def parse_sysctl_values(text: str) -> dict[str, str]:
    """`sysctl hw.optional machdep.cpu.brand_string ...` output: one `name: value` per line.

    Sample: `hw.optional.arm.FEAT_DotProd: 1` / `machdep.cpu.brand_string: Apple M2 Pro`
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


# macOS names -> llmtp names. arm64: hw.optional.*; Intel Macs: words in machdep.cpu.*features.
_MAC_ARM = {
    "hw.optional.neon": "neon",
    "hw.optional.arm.FEAT_DotProd": "dotprod",
    "hw.optional.arm.FEAT_FP16": "fp16",
    "hw.optional.arm.FEAT_I8MM": "i8mm",
    "hw.optional.arm.FEAT_BF16": "bf16",
    "hw.optional.arm.FEAT_SME": "sme",
}
_MAC_X86 = {
    "SSE3": "sse3",
    "SSSE3": "ssse3",
    "SSE4.1": "sse4_1",
    "SSE4.2": "sse4_2",
    "AVX1.0": "avx",
    "AVX2": "avx2",
    "FMA": "fma",
    "F16C": "f16c",
    "BMI2": "bmi2",
    "AVX512F": "avx512f",
    "AVX512BW": "avx512bw",
    "AVX512DQ": "avx512dq",
    "AVX512VL": "avx512vl",
    "AVX512CD": "avx512cd",
    "AVX512VNNI": "avx512_vnni",
}


def parse_sysctl_cpu(values: dict[str, str], arch: str | None) -> CPU:
    """CPU facts from sysctl values (see parse_sysctl_values): brand string, hw.physicalcpu,
    hw.logicalcpu, and the ISA features of Apple silicon or Intel Macs."""
    flags: set[str] = {name for key, name in _MAC_ARM.items() if values.get(key) == "1"}
    words = (values.get("machdep.cpu.features", "") + " " + values.get("machdep.cpu.leaf7_features", "")).split()
    flags |= {_MAC_X86[w] for w in words if w in _MAC_X86}
    order = ARM_FLAGS if (arch or "").startswith(("arm", "aarch")) else X86_FLAGS
    return CPU(
        model=values.get("machdep.cpu.brand_string") or None,
        arch=arch,
        cores_physical=_int(values.get("hw.physicalcpu")),
        cores_logical=_int(values.get("hw.logicalcpu")),
        flags=[f for f in order if f in flags],
    )


def _int(text: str | None) -> int | None:
    if text is None or not re.fullmatch(r"\s*\d+\s*", text):
        return None
    return int(text)
