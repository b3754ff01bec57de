"""The launch plan: one request (what the user asked for) and one immutable plan (every decision and the
final argv) shared by plan, serve, service, setup, run, verify, tune and status.

services/serve/launch_plan.py resolves a request into a plan once; everything after that reads the plan, and a
variant (verify's plain arm, a tune trial, another port) is derived through `LaunchPlan.variant`, which
builds its argv with the same function. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from llmtp.core import limits
from llmtp.core.argv import build_server_argv
from llmtp.core.capabilities import Capabilities
from llmtp.core.launch import LaunchSpec, MtpSettings

GpuLayers = int | Literal["auto", "all"]


class LaunchRequest(BaseModel):
    """What a user asked for: the model and every override. `None` means "let the planner choose"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str  # alias, GGUF path or org/repo:QUANT
    host: str | None = None  # None: settings.host
    port: limits.Port | None = None  # None: settings.port
    ctx: limits.Ctx | None = None
    parallel: limits.Parallel | None = None
    clients: limits.Clients | None = None  # concurrent users: slots and MTP (core.concurrency); None: settings
    no_mtp: bool = False
    cache_type: str | None = None  # -ctk/-ctv both
    gpu_layers: GpuLayers | None = None  # -ngl
    threads: limits.Threads | None = None
    draft_n_max: limits.DraftTokens | None = None  # --spec-draft-n-max
    draft_p_min: limits.Fraction | None = None  # --spec-draft-p-min
    alias: str | None = None
    api_key_file: str | None = None
    rpc: str | None = None  # HOST:PORT,... (None: settings.rpc)
    server: str | None = None  # a llama-server outside llmtp's builds
    ui: bool = True
    quant: str | None = None  # `plan --quant`; serve names it in the ref (org/repo:QUANT)
    force: bool = False  # plan a ctx far beyond the trained context (core.plan_review.check_ctx)
    mtp_guard: bool | None = None  # the served-acceptance guard on/off (None: settings.mtp_guard)
    extra: tuple[str, ...] = ()  # after `--`: passed to llama-server as is


# (request field, flag) pairs in the order `serve_args` writes them; `serve` declares these options
_VALUE_FLAGS = (
    ("host", "--host"),
    ("port", "--port"),
    ("ctx", "--ctx"),
    ("parallel", "--parallel"),
    ("clients", "--clients"),
    ("cache_type", "--cache-type"),
    ("gpu_layers", "--gpu-layers"),
    ("threads", "--threads"),
    ("draft_n_max", "--draft-n-max"),
    ("draft_p_min", "--draft-p-min"),
    ("alias", "--alias"),
    ("api_key_file", "--api-key-file"),
    ("rpc", "--rpc"),
    ("server", "--server"),
)


def serve_args(request: LaunchRequest) -> list[str]:
    """`serve MODEL ...` words that ask for exactly `request` (what a service unit, setup and run launch):
    `llmtp serve` parses them back into an equal request."""
    args = ["serve", request.model]
    for name, flag in _VALUE_FLAGS:
        value = getattr(request, name)
        if value is not None:
            args += [flag, str(value)]
    if request.no_mtp:
        args.append("--no-mtp")
    if not request.ui:
        args.append("--no-ui")
    if request.mtp_guard is not None:
        args.append("--mtp-guard" if request.mtp_guard else "--no-mtp-guard")
    if request.extra:
        args += ["--", *request.extra]
    return args


def apply_overrides(spec: LaunchSpec, request: LaunchRequest, tuned: MtpSettings | None) -> list[dict]:
    """The one place where the user's overrides and `llmtp tune`'s draft settings meet the planner's
    launch (`spec`, changed in place before the plan is frozen). Order: planner < tune < the user.
    Returns the reasons for what changed."""
    reasons: list[dict] = []
    if request.no_mtp:
        spec.mtp = spec.mtp.model_copy(update={"enabled": False})
    elif spec.mtp.enabled and tuned is not None:
        chosen = (
            tuned if tuned.draft_model is not None else tuned.model_copy(update={"draft_model": spec.mtp.draft_model})
        )
        spec.mtp = chosen
        value = f"draft-mtp, n-max {chosen.n_max}" if chosen.enabled else "off"
        reasons.append({"what": "MTP", "value": value, "reason": "measured by `llmtp tune` on this machine"})
    drafts = {k: v for k, v in (("n_max", request.draft_n_max), ("p_min", request.draft_p_min)) if v is not None}
    if drafts and spec.mtp.enabled:
        spec.mtp = spec.mtp.model_copy(update=drafts)
        reasons.append(
            {
                "what": "MTP",
                "value": f"draft-mtp, n-max {spec.mtp.n_max}"
                + (f", p-min {spec.mtp.p_min}" if spec.mtp.p_min is not None else ""),
                "reason": "given with --draft-n-max/--draft-p-min",
            }
        )
    if request.ctx is not None:
        spec.ctx_size = request.ctx
    if request.parallel is not None and not spec.mtp.enabled:
        spec.parallel = request.parallel
    if request.gpu_layers is not None:
        spec.n_gpu_layers = request.gpu_layers
        spec.fit = "off"  # llama.cpp's --fit gives up anyway once -ngl is set
        reasons.append({"what": "-ngl", "value": str(request.gpu_layers), "reason": "given with --gpu-layers"})
    if request.threads is not None:
        spec.threads = request.threads
        reasons.append({"what": "-t", "value": str(request.threads), "reason": "given with --threads"})
    spec.ui = request.ui
    return _last_mtp_reason(reasons)


def _last_mtp_reason(reasons: list[dict]) -> list[dict]:
    mtp = [r for r in reasons if r["what"] == "MTP"]
    return [r for r in reasons if r["what"] != "MTP"] + mtp[-1:]


def merge_reasons(planned: list[dict], overrides: list[dict]) -> list[dict]:
    """The planner's reasons, each replaced by an override's reason for the same setting."""
    changed = {r["what"] for r in overrides}
    return [r for r in planned if r["what"] not in changed] + overrides


@dataclass(frozen=True)
class LaunchPlan:
    """Every decision of one launch and its argv. Derive variants with `variant`; never edit one."""

    request: LaunchRequest
    spec: LaunchSpec
    caps: Capabilities | None  # None: no build to launch with (`plan` before `llmtp build`)
    server: str | None
    build_id: str | None = None
    ready_timeout_s: float = 300.0
    reasons: tuple[dict, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    devices: tuple[dict, ...] = ()  # with --rpc: every device of the split, RPC first
    planned: object | None = None  # services.serve.plan.PlanResult: the model's plan (memory, candidates), hardware
    argv: tuple[str, ...] | None = None  # filled by `freeze`

    def __post_init__(self) -> None:
        # the spec is copied in: no caller keeps a handle that could change a frozen plan
        object.__setattr__(self, "spec", self.spec.model_copy(deep=True))

    @classmethod
    def freeze(cls, **fields) -> LaunchPlan:  # noqa: ANN003 - the dataclass fields
        """A plan with its argv built (when there is a build): the only way argv is made."""
        plan = cls(**fields)
        if plan.server is None or plan.caps is None:
            return plan
        argv = build_server_argv(plan.server, plan.caps, plan.spec)
        return dataclasses.replace(plan, argv=tuple(argv))

    @property
    def model_plan(self):  # noqa: ANN201 - core.plan.Plan | None
        return getattr(self.planned, "plan", None)

    @property
    def calibration_key(self) -> str | None:
        return getattr(self.planned, "calibration_key", None)

    @property
    def corrections(self) -> dict[str, float]:
        return dict(getattr(self.planned, "corrections", None) or {})

    @property
    def mtp(self) -> MtpSettings:
        return self.spec.mtp

    @property
    def argv_list(self) -> list[str]:
        if self.argv is None:
            raise ValueError("this plan has no build to launch with")
        return list(self.argv)

    def variant(self, **spec_updates) -> LaunchPlan:  # noqa: ANN003 - LaunchSpec fields
        """The same plan with some launch settings changed (mtp for an arm or a trial, port, log_file),
        argv rebuilt by the same function."""
        spec = self.spec.model_copy(update=spec_updates)
        return LaunchPlan.freeze(**{**_fields(self), "spec": spec, "argv": None})

    def with_mtp(self, mtp: MtpSettings) -> LaunchPlan:
        return self.variant(mtp=mtp)

    def plain(self) -> LaunchPlan:
        """Verify's plain arm: this plan with MTP off (and the -md sidecar with it)."""
        return self.variant(mtp=MtpSettings(enabled=False))


def _fields(plan: LaunchPlan) -> dict:
    return {f.name: getattr(plan, f.name) for f in dataclasses.fields(plan)}


def argv_without_address(argv: list[str] | tuple[str, ...]) -> list[str]:
    """argv with the listening address (--host, --port values) blanked: two launches of one plan differ at
    most there (verify's arms take a free loopback port)."""
    out = list(argv)
    for i, a in enumerate(out[:-1]):
        if a in ("--port", "--host"):
            out[i + 1] = a.removeprefix("--").upper()
    return out


def plan_of_spec(spec: LaunchSpec, caps: Capabilities, server: str = "llama-server") -> LaunchPlan:
    """A plan around a launch decided elsewhere (tests, and callers that hold only a spec)."""
    return LaunchPlan.freeze(request=LaunchRequest(model=spec.model), spec=spec, caps=caps, server=server)
