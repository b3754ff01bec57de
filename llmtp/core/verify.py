"""MTP verification, pure part: samples, statistics, speedup, markers, warnings and the verdict.

The service (llmtp/services/verify/mtp_ab.py) launches servers and collects samples; everything that decides
what the numbers mean lives here, so it is tested without a server. Unknown stays None.
"""

from __future__ import annotations

import math
import re
import statistics
from enum import IntEnum
from typing import Literal

from pydantic import BaseModel, Field

from llmtp.core.concurrency import slots_warning
from llmtp.core.sequential import Sequential

PromptKind = Literal["code", "prose"]

# Acceptance depends on the task: code is repetitive and drafts well, prose less so.
PROMPTS: dict[str, str] = {
    "code": (
        "Write a Python module that implements a binary search tree with insert, delete, search and "
        "in-order traversal, with type hints, docstrings and unit tests using pytest.\n\n```python\n"
    ),
    "prose": (
        "Write a long, detailed essay about the history of the printing press, its inventors, how it "
        "spread across Europe, and how it changed science, religion and politics.\n\n"
    ),
}
# Their family in the tune suite's terms (core.families): both write new text rather than copy the prompt.
PROMPT_FAMILY: dict[str, str] = {"code": "open-ended", "prose": "open-ended"}
SEED = 42


class VerdictCode(IntEnum):
    """Exit codes of `llmtp verify`; kept clear of the error hierarchy's 1-7 (llmtp/errors.py)."""

    PASS = 0
    MTP_NOT_IN_BUILD = 10
    NO_MTP_HEADS = 11
    MTP_INACTIVE = 12
    MTP_SLOWER = 13
    REGRESSION = 14
    NOT_ON_GPU = 15


VERDICT_TITLES: dict[VerdictCode, str] = {
    VerdictCode.PASS: "MTP active and faster",
    VerdictCode.MTP_NOT_IN_BUILD: "MTP not available in the build",
    VerdictCode.NO_MTP_HEADS: "model has no MTP heads",
    VerdictCode.MTP_INACTIVE: "MTP inactive at runtime",
    VerdictCode.MTP_SLOWER: "MTP slower than plain",
    VerdictCode.REGRESSION: "regression against the stored baseline",
    VerdictCode.NOT_ON_GPU: "model weights not on the GPU",
}


class Method(BaseModel):
    """How the A/B is measured."""

    n_predict: int = 512
    warmups: int = 2
    runs: int = 5
    temperatures: list[float] = Field(default_factory=lambda: [0.0, 0.7])
    prompts: list[PromptKind] = Field(default_factory=lambda: ["code", "prose"])
    seed: int = SEED
    # Sequential (the CLI's default): alternate plain and MTP runs, `runs` pairs at least, and stop as
    # soon as the speedup's interval clears the threshold, or when `budget_s` of generation is spent.
    # Off: the full matrix, `runs` per case and arm.
    sequential: bool = False
    budget_s: float = 60.0

    @classmethod
    def preset(cls, name: Literal["default", "quick", "thorough"]) -> Method:
        if name == "thorough":  # the seed's method: 2,000-token completions, 5 warm-ups, median of 10
            return cls(n_predict=2000, warmups=5, runs=10)
        if name == "quick":  # for `llmtp setup`: enough to prove MTP is on, not a benchmark
            return cls(n_predict=128, warmups=1, runs=3, temperatures=[0.0])
        # short runs make many pairs in the budget; the interval, not the run length, makes it sound
        return cls(n_predict=128, warmups=1, runs=3, sequential=True)


class Sample(BaseModel):
    """One completion's `timings`."""

    tokens_per_s: float
    predicted_n: int
    prompt_n: int | None = None
    prompt_per_s: float | None = None
    draft_n: int | None = None  # present only when drafts happened
    draft_n_accepted: int | None = None


def sample_from_timings(timings: dict) -> Sample:
    """Parse a /completion `timings` object, e.g. (b11434, MTP on):
    {"cache_n":0,"prompt_n":31,"prompt_ms":41.2,"prompt_per_token_ms":1.33,"prompt_per_second":752.4,
     "predicted_n":128,"predicted_ms":610.5,"predicted_per_token_ms":4.77,"predicted_per_second":209.6,
     "draft_n":126,"draft_n_accepted":126}
    """
    return Sample(
        tokens_per_s=float(timings["predicted_per_second"]),
        predicted_n=int(timings["predicted_n"]),
        prompt_n=timings.get("prompt_n"),
        prompt_per_s=timings.get("prompt_per_second"),
        draft_n=timings.get("draft_n"),
        draft_n_accepted=timings.get("draft_n_accepted"),
    )


class Stats(BaseModel):
    n: int
    median: float
    min: float
    max: float
    q1: float
    q3: float


def summarize(values: list[float]) -> Stats | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    if len(vals) == 1:
        q1 = q3 = vals[0]
    else:
        q1, _, q3 = statistics.quantiles(vals, n=4, method="inclusive")
    return Stats(n=len(vals), median=statistics.median(vals), min=vals[0], max=vals[-1], q1=q1, q3=q3)


def acceptance(samples: list[Sample]) -> float | None:
    """draft_n_accepted / draft_n over the samples that report both; None when none does."""
    pairs = [
        (s.draft_n_accepted, s.draft_n) for s in samples if s.draft_n is not None and s.draft_n_accepted is not None
    ]
    total = sum(d for _, d in pairs)
    if not pairs or total == 0:
        return None
    return sum(a for a, _ in pairs) / total


def mean_accepted_length(accepted: float | None, drafts: float | None) -> float | None:
    """Tokens produced per verification step, as llama.cpp's slot log computes it: 1 + accepted/drafts."""
    if accepted is None or not drafts:
        return None
    return 1.0 + accepted / drafts


# Sample: `llamacpp:spec_decode_num_accepted_tokens_total 126`
_METRIC_RE = re.compile(r"^llamacpp:(spec_decode_num_\w+_total) ([0-9.eE+-]+)$", re.MULTILINE)


def parse_spec_metrics(text: str | None) -> dict[str, float]:
    """The speculative counters of /metrics (needs --metrics): draft_tokens, accepted_tokens, drafts."""
    if not text:
        return {}
    return {
        m.group(1).removeprefix("spec_decode_num_").removesuffix("_total"): float(m.group(2))
        for m in _METRIC_RE.finditer(text)
    }


# Sample (load log): `llama_kv_cache:        CPU KV buffer size =    64.00 MiB`
_KV_RE = re.compile(r"llama_kv_cache:\s+(\S+) KV buffer size =\s+([0-9.]+) MiB")


def parse_kv_buffers(log: str) -> dict[str, float]:
    """KV buffer MiB per backend buffer name (CPU, CUDA0, ...) from a llama-server load log."""
    out: dict[str, float] = {}
    for m in _KV_RE.finditer(log):
        out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def roofline_pct(tokens_per_s: float | None, bytes_per_token: int | None, bandwidth_gbps: float | None) -> float | None:
    """Share of the memory-bandwidth roofline: each decoded token reads the weights once."""
    if not tokens_per_s or not bytes_per_token or not bandwidth_gbps:
        return None
    return 100.0 * tokens_per_s * bytes_per_token / (bandwidth_gbps * 1e9)


class Case(BaseModel):
    prompt: PromptKind
    temperature: float

    @property
    def key(self) -> str:
        return f"{self.prompt}@{self.temperature:g}"


class CaseReport(BaseModel):
    case: Case
    plain: Stats | None
    mtp: Stats | None
    speedup: float | None  # median(mtp) / median(plain)
    speedup_low: float | None  # min(mtp) / max(plain): the worst pairing of the runs
    speedup_high: float | None  # max(mtp) / min(plain)
    acceptance: float | None
    mean_accepted_length: float | None
    prompt_plain: Stats | None  # prompt processing tok/s
    prompt_mtp: Stats | None
    prompt_cost: float | None  # fraction of prompt-processing speed lost with MTP (0.1 = 10% slower)
    family: str | None = None  # the prompt's family of work (PROMPT_FAMILY)
    break_even_acceptance: float | None = None  # below it this case decodes slower than plain


def break_even_acceptance(
    speedup: float | None, acceptance: float | None, draft_per_step: float | None
) -> float | None:
    """The acceptance below which this setting decodes slower than plain, from one measurement.

    A verification step costs c plain-token times and yields 1 + a*d tokens (a: acceptance, d: drafted
    tokens per step), so speedup = (1 + a*d) / c. From the measured (speedup, a, d): c = (1 + a*d) / speedup,
    and plain speed is matched at a* = (c - 1) / d. Above 1 means no acceptance can pay for the drafts.
    """
    if not speedup or acceptance is None or not draft_per_step:
        return None
    cost = (1.0 + acceptance * draft_per_step) / speedup
    return max(0.0, (cost - 1.0) / draft_per_step)


def analyze_case(
    case: Case,
    plain: list[Sample],
    mtp: list[Sample],
    spec_counters: dict[str, float] | None = None,
    n_max: int | None = None,
) -> CaseReport:
    """`n_max`: drafted tokens per step where the counters (from /metrics) do not say."""
    p = summarize([s.tokens_per_s for s in plain])
    m = summarize([s.tokens_per_s for s in mtp])
    pp_p = summarize([s.prompt_per_s for s in plain if s.prompt_per_s])
    pp_m = summarize([s.prompt_per_s for s in mtp if s.prompt_per_s])
    counters = spec_counters or {}
    speedup = m.median / p.median if p and m and p.median else None
    per_step = (
        counters["draft_tokens"] / counters["drafts"]
        if counters.get("drafts") and counters.get("draft_tokens")
        else (float(n_max) if n_max else None)
    )
    return CaseReport(
        case=case,
        plain=p,
        mtp=m,
        family=PROMPT_FAMILY.get(case.prompt),
        break_even_acceptance=break_even_acceptance(speedup, acceptance(mtp), per_step),
        speedup=speedup,
        speedup_low=m.min / p.max if p and m and p.max else None,
        speedup_high=m.max / p.min if p and m and p.min else None,
        acceptance=acceptance(mtp),
        mean_accepted_length=mean_accepted_length(counters.get("accepted_tokens"), counters.get("drafts")),
        prompt_plain=pp_p,
        prompt_mtp=pp_m,
        prompt_cost=1.0 - pp_m.median / pp_p.median if pp_p and pp_m and pp_p.median else None,
    )


def geomean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


class Marker(BaseModel):
    ok: bool | None  # None: not checked (an earlier step failed or nothing to check)
    detail: str


class Markers(BaseModel):
    build: Marker
    gpu: Marker
    model: Marker
    runtime: Marker


def build_marker(mtp_dialect: str | None, spec_types: list[str]) -> Marker:
    if mtp_dialect == "upstream":
        return Marker(ok=True, detail="--spec-type offers draft-mtp")
    if mtp_dialect == "branch":
        return Marker(ok=True, detail="qwen3-mtp branch dialect (--mtp, --mtp-draft-tokens)")
    offered = ", ".join(spec_types) if spec_types else "no --spec-type"
    return Marker(ok=False, detail=f"--help offers no draft-mtp ({offered})")


def gpu_marker(profile: str | None, device_backends: list[str] | None, machine_gpus: int) -> Marker:
    """GPU profiles must see a GPU in `--list-devices`; a CPU build on a GPU machine is a warning."""
    gpu_profile = profile in {"cuda", "rocm", "vulkan", "metal"}
    if device_backends is None:
        return Marker(ok=None, detail="--list-devices not probed")
    seen = ", ".join(device_backends) or "none"
    if gpu_profile and not device_backends:
        return Marker(ok=False, detail=f"{profile} build lists no GPU device")
    if gpu_profile:
        return Marker(ok=True, detail=f"devices: {seen}")
    return Marker(ok=None if machine_gpus else True, detail=f"{profile or 'unknown'} profile, devices: {seen}")


def runtime_marker(slots_speculative: list[bool] | None, samples: list[Sample]) -> Marker:
    """Evidence only: a speculative slot AND drafted tokens. /props says "none" even with MTP on."""
    drafted = sum(s.draft_n or 0 for s in samples)
    if not slots_speculative or not any(slots_speculative):
        return Marker(ok=False, detail="/slots shows no speculative slot")
    if drafted == 0:
        return Marker(ok=False, detail="slot is speculative but no completion drafted a token (draft_n absent)")
    acc = acceptance(samples)
    rate = f", acceptance {acc:.2f}" if acc is not None else ""
    return Marker(ok=True, detail=f"/slots speculative, {drafted} tokens drafted{rate}")


def warnings_for(
    *,
    temperatures: list[float],
    parallel: int | None,
    mtp_enabled: bool,
    kv_buffers: dict[str, float] | None,
    build_has_gpu: bool | None,
    machine_gpus: int,
) -> list[str]:
    out = []
    hot = [t for t in temperatures if t > 0.8]
    if hot:
        out.append(f"temperature {max(hot):g} > 0.8: MTP acceptance collapses at high temperature")
    if mtp_enabled and (slots := slots_warning(parallel, on_gpu=bool(build_has_gpu))):
        out.append(slots)
    if kv_buffers and build_has_gpu:
        host = {k: v for k, v in kv_buffers.items() if k.upper().startswith("CPU") or k.endswith("_Host")}
        if host:
            mib = sum(host.values())
            out.append(
                f"KV cache spills to system RAM ({mib:.0f} MiB in {', '.join(host)}): "
                "lower the context or quantize the KV cache"
            )
    if machine_gpus and build_has_gpu is False:
        out.append(
            "this build has no GPU support but the machine has a GPU: rebuild with `llmtp build` for the GPU profile"
        )
    return out


class Verdict(BaseModel):
    code: VerdictCode
    title: str
    reason: str


def decide(markers: Markers, speedup: float | None, regression: str | None, min_speedup: float = 1.0) -> Verdict:
    """The first failing step decides; a pass needs every marker and a measured speedup."""

    def v(code: VerdictCode, reason: str) -> Verdict:
        return Verdict(code=code, title=VERDICT_TITLES[code], reason=reason)

    if markers.build.ok is False:
        return v(VerdictCode.MTP_NOT_IN_BUILD, markers.build.detail)
    if markers.model.ok is False:
        return v(VerdictCode.NO_MTP_HEADS, markers.model.detail)
    if markers.gpu.ok is False:  # a GPU launch whose weights stayed in RAM: its speed says nothing about the GPU
        return v(VerdictCode.NOT_ON_GPU, markers.gpu.detail)
    if markers.runtime.ok is not True:
        return v(VerdictCode.MTP_INACTIVE, markers.runtime.detail)
    if speedup is None:
        return v(VerdictCode.MTP_INACTIVE, "no speedup could be measured")
    if speedup <= min_speedup:
        return v(VerdictCode.MTP_SLOWER, f"MTP decodes at {speedup:.2f}x plain speed")
    if regression:
        return v(VerdictCode.REGRESSION, regression)
    return v(VerdictCode.PASS, f"MTP decodes {speedup:.2f}x faster than plain")


class VerifyReport(BaseModel):
    model: str
    model_key: str | None = None
    build_id: str | None = None
    profile: str | None = None
    gpu: str | None = None
    method: Method
    mtp: dict = Field(default_factory=dict)  # the MtpSettings measured
    markers: Markers
    cases: list[CaseReport] = Field(default_factory=list)
    speedup: float | None = None  # geometric mean over cases
    mtp_tokens_per_s: float | None = None  # geometric mean of the MTP medians
    plain_tokens_per_s: float | None = None
    acceptance: float | None = None
    break_even_acceptance: float | None = None  # below it MTP loses (core.tune.break_even_acceptance)
    mean_accepted_length: float | None = None
    roofline_plain_pct: float | None = None
    roofline_mtp_pct: float | None = None  # effective: MTP can exceed 100%
    baseline: dict | None = None  # BaselineComparison as data
    sequential: Sequential | None = None  # the default check's pairs and why it stopped; None: matrix
    arms: dict[str, list[str]] = Field(default_factory=dict)  # "mtp"/"plain" -> argv launched (port as planned)
    mode: str = "ab"  # "ab": both arms launched here; "live": the running server checked (verify --port)
    warnings: list[str] = Field(default_factory=list)
    verdict: Verdict
