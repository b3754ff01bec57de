"""CPU parsers on captured /proc/cpuinfo (this machine's x86_64 and an aarch64 Graviton3) and macOS sysctl."""

from __future__ import annotations

from pathlib import Path

from llmtp.core.cpu_parse import parse_proc_cpuinfo, parse_sysctl_cpu, parse_sysctl_values

FIX = Path(__file__).parent / "fixtures"


def test_x86_64_cpuinfo_captured_here():
    cpu = parse_proc_cpuinfo((FIX / "cpuinfo/x86_64-amd-epyc-2cpu.txt").read_text())
    assert cpu.model_dump() == {
        "model": "AMD EPYC",
        "arch": "x86_64",
        "cores_physical": 2,
        "cores_logical": 2,
        "flags": [
            "sse3",
            "ssse3",
            "sse4_1",
            "sse4_2",
            "avx",
            "avx2",
            "fma",
            "f16c",
            "bmi2",
            "avx512f",
            "avx512bw",
            "avx512dq",
            "avx512vl",
            "avx512cd",
            "avx512vbmi",
            "avx512_vnni",
            "avx512_bf16",
        ],
    }


def test_aarch64_cpuinfo():
    cpu = parse_proc_cpuinfo((FIX / "cpuinfo/aarch64-neoverse-v1-2cpu.txt").read_text())
    assert cpu.model_dump() == {
        "model": "ARM Neoverse-V1",
        "arch": "aarch64",
        "cores_physical": None,
        "cores_logical": 2,
        "flags": ["neon", "dotprod", "fp16", "i8mm", "bf16", "sve"],
    }


def test_unknown_arm_part_is_reported_by_id_not_guessed():
    text = "processor\t: 0\nFeatures\t: fp asimd\nCPU implementer\t: 0x51\nCPU part\t: 0x001\n"
    cpu = parse_proc_cpuinfo(text)
    assert (cpu.model, cpu.flags) == ("ARM implementer 0x51 part 0x001", ["neon"])


def test_empty_cpuinfo_is_all_unknown():
    assert parse_proc_cpuinfo("").model_dump() == {
        "model": None,
        "arch": None,
        "cores_physical": None,
        "cores_logical": None,
        "flags": [],
    }


def test_macos_sysctl_apple_silicon():
    values = parse_sysctl_values((FIX / "apple/m2pro-sysctl.txt").read_text())
    assert values["hw.memsize"] == "34359738368"
    cpu = parse_sysctl_cpu(values, "arm64")
    assert cpu.model_dump() == {
        "model": "Apple M2 Pro",
        "arch": "arm64",
        "cores_physical": 12,
        "cores_logical": 12,
        "flags": ["neon", "dotprod", "fp16", "i8mm", "bf16"],
    }


def test_macos_sysctl_intel():
    values = parse_sysctl_values(
        "machdep.cpu.brand_string: Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz\n"
        "machdep.cpu.features: FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT PSE36 CLFSH DS "
        "ACPI MMX FXSR SSE SSE2 SS HTT TM PBE SSE3 PCLMULQDQ DTES64 MON DSCPL VMX SMX EST TM2 SSSE3 FMA CX16 "
        "TPR PDCM SSE4.1 SSE4.2 x2APIC MOVBE POPCNT AES PCID XSAVE OSXSAVE SEGLIM64 TSCTMR AVX1.0 RDRAND F16C\n"
        "machdep.cpu.leaf7_features: RDWRFSGS TSC_THREAD_OFFSET SGX BMI1 HLE AVX2 SMEP BMI2 ERMS INVPCID RTM FPU_CSDS "
        "MPX RDSEED ADX SMAP CLFSOPT IPT SGXLC MDCLEAR TSXFA IBRS STIBP L1DF SSBD\n"
        "hw.physicalcpu: 8\nhw.logicalcpu: 16\n"
    )
    cpu = parse_sysctl_cpu(values, "x86_64")
    assert cpu.flags == ["sse3", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "bmi2"]
    assert (cpu.model, cpu.cores_physical, cpu.cores_logical) == ("Intel(R) Core(TM) i9-9880H CPU @ 2.30GHz", 8, 16)
