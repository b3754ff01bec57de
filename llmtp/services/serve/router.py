"""Several models on one port: llama.cpp's router (llama-server with no model) from each model's own launch plan,
under the same supervisor, port claim, state record and stop as a single-model serve.

resolve_router plans every model of the set exactly as `llmtp serve MODEL` would (resolve_launch: the planner, the
MTP settings `llmtp tune` stored, the user's overrides) and writes those argv as the router's preset sections
(core/router.py), so each child runs its own plan; how many children may run at once comes from the plans'
memory. router_foreground keeps the router alive; the router itself loads, swaps and restarts the children.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from llmtp.adapters import files
from llmtp.adapters.server_process import ServerProcess, base_url_for
from llmtp.adapters.spawn import LOG_KEEP, LOG_MAX_BYTES, rotate
from llmtp.core.launch_plan import LaunchPlan, LaunchRequest
from llmtp.core.router import Fit, RouterModel, check_names, models_that_fit, preset_ini, router_argv
from llmtp.core.status_view import drafts_enabled, instance_figures, mtp_words
from llmtp.errors import ConfigError, NetworkError, ServeError, UsageError
from llmtp.services.serve.foreground import ServeHooks, Supervised, supervise
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch
from llmtp.services.serve.supervisor import SupervisorConfig, read_api_key
from llmtp.services.stores import serve_records as st

ROUTER_PROGRAM = "llama-server router"


@dataclass(frozen=True)
class RouterPlan:
    """One router launch: each model's own plan, how many run at once and why, the preset and the argv."""

    plans: tuple[LaunchPlan, ...]
    names: tuple[str, ...]
    fit: Fit
    models_max: int
    preset: str  # the INI text written to preset_path at every start
    preset_path: str
    argv: tuple[str, ...]
    host: str
    port: int
    build_id: str | None
    api_key_file: str | None
    reasons: tuple[dict, ...]
    warnings: tuple[str, ...]
    notes: tuple[str, ...]

    @property
    def models(self) -> list[dict]:
        """What the state record keeps per model (status, stop MODEL, verify MODEL --port P): the argv is the one
        `llmtp serve MODEL` would run on the router's port, which the child runs on its own loopback port."""
        pairs = zip(self.names, self.plans, strict=True)
        return [{"name": n, "model": p.spec.model, "mtp": p.mtp.enabled, "argv": p.argv_list} for n, p in pairs]


def expand_sets(settings, refs: list[str]) -> list[str]:
    """`refs` with each name of a set in config.toml (`[sets]`, `desk = ["a", "b"]`) replaced by its models."""
    out: list[str] = []
    for ref in refs:
        out += list(settings.sets.get(ref, [ref]))
    return out


def check_set_request(settings, base: LaunchRequest) -> None:
    """The options that name one model's launch and have no meaning for a set."""
    if base.alias is not None:
        raise UsageError(
            "--alias names one served model; in a set each model is served under its own alias or file name",
            "Drop --alias: a set's models are named by their catalog alias or file name (serve a copy or a hard "
            "link under another file name to rename one).",
        )
    if base.rpc or settings.rpc:
        raise UsageError(
            "Serving several models through RPC workers is not supported yet",
            "Serve one model over the workers (`llmtp serve MODEL --rpc ...`), or set rpc off for this set.",
        )


def plan_router_for_serve(
    settings,
    refs: list[str],
    base: LaunchRequest,
    *,
    models_max: int | None = None,
    idle_unload_s: int | None = None,
    pull: bool | None = True,
    say=lambda _m: None,  # noqa: ANN001
) -> RouterPlan:
    """The router plan for `llmtp serve A B C`: each model not on disk is pulled first as a single serve pulls
    it (`pull` None, a dry run: a missing one is named at once)."""
    from llmtp.services.serve.launch import plan_for_serve

    check_set_request(settings, base)  # before any model is pulled
    return resolve_router(
        settings,
        refs,
        base,
        models_max=models_max,
        idle_unload_s=idle_unload_s,
        plan_one=lambda request: plan_for_serve(settings, request, pull=pull, say=say),
    )


def resolve_router(
    settings,
    refs: list[str],
    base: LaunchRequest,
    *,
    models_max: int | None = None,
    idle_unload_s: int | None = None,
    deps: LaunchDeps | None = None,
    plan_one: Callable[[LaunchRequest], LaunchPlan] | None = None,
) -> RouterPlan:
    """Plan each model as a single serve would, then the router around them. Raises before anything starts: an
    --alias or --rpc (one model's options), a model twice, a name the preset cannot hold, a set in which not even
    one model fits, a flag the preset cannot carry."""
    check_set_request(settings, base)
    refs = expand_sets(settings, refs)
    plan_one = plan_one or (lambda request: resolve_launch(settings, request, deps))  # serve's: pulls first
    plans = tuple(plan_one(base.model_copy(update={"model": ref})) for ref in refs)
    names = tuple(p.spec.alias or Path(p.spec.model).stem for p in plans)
    check_names(names)
    first = plans[0]
    launching = deps is None or deps.launching
    if first.argv is None and launching:
        raise ServeError("No llama.cpp build to serve with", "Run `llmtp build` first, or pass --server PATH.")
    fit = models_that_fit(names, [p.model_plan.memory if p.model_plan else [] for p in plans])
    if fit.models_max == 0:
        raise ServeError(
            f"Not even one model of this set fits this machine at a time: {fit.reason}",
            "Leave that model out, or give it a smaller --ctx or quant (`llmtp plan MODEL` shows its memory).",
        )
    warnings = [f"{n}: {w}" for n, p in zip(names, plans, strict=True) for w in p.warnings]
    chosen, why = fit.models_max, f"{fit.reason} (each model's own plan)"
    if models_max is not None:
        chosen, why = models_max, "given with --models-max"
        if fit.models_max < min(models_max, len(names)):  # more at once than fit (never more than the set holds)
            warnings.append(f"--models-max {models_max}: {fit.reason}; loading more at once may run out of memory")
    preset_path = st.state_path(settings.state_dir, first.spec.port).with_name(f"router-{first.spec.port}.ini")
    shared = [("sleep-idle-seconds", str(idle_unload_s))] if idle_unload_s is not None else []
    preset, argv = "", []  # `plan A B` before any build: the memory and the fit, no command line
    if first.argv is not None:
        preset = preset_ini([RouterModel(n, tuple(p.argv_list)) for n, p in zip(names, plans, strict=True)], shared)
        argv = router_argv(
            first.argv_list[0],
            str(preset_path),
            models_max=chosen,
            host=first.spec.host,
            port=first.spec.port,
            api_key_file=first.spec.api_key_file,
            ui=first.spec.ui,
        )
    reasons = [{"what": "--models-max", "value": str(chosen), "reason": why}]
    if idle_unload_s is not None:
        reasons.append(
            {"what": "idle unload", "value": f"{idle_unload_s} s", "reason": "given with --idle-unload (sleeps)"}
        )
    return RouterPlan(
        plans=plans,
        names=names,
        fit=fit,
        models_max=chosen,
        preset=preset,
        preset_path=str(preset_path),
        argv=tuple(argv),
        host=first.spec.host,
        port=first.spec.port,
        build_id=first.build_id,
        api_key_file=first.spec.api_key_file,
        reasons=tuple(reasons),
        warnings=tuple(warnings),
        notes=tuple(dict.fromkeys(n for p in plans for n in p.notes)),
    )


@dataclass(frozen=True)
class RouterTarget:
    """What the supervisor keeps alive for a set: the router process (its children are the router's)."""

    host: str
    port: int
    argv: tuple[str, ...]
    program: str = ROUTER_PROGRAM


def router_launcher(log_path: Path, api_key: str | None):  # -> Launch
    def launch(target: RouterTarget) -> ServerProcess:
        rotate(log_path, LOG_MAX_BYTES, LOG_KEEP)
        argv = list(target.argv)
        return ServerProcess(argv, log_path=log_path, host=target.host, port=target.port, api_key=api_key).start()

    return launch


def router_foreground(settings, plan: RouterPlan, *, hooks: ServeHooks):
    """Write the preset, supervise the router until stopped: restarted on death, its whole process group (the
    children too) stopped with it. Its /health answers once it listens; the children load on demand."""
    files.write_text_atomic(Path(plan.preset_path), plan.preset, mode=0o600)
    hooks = dataclasses.replace(hooks, replan=None, warm_start=None)  # no single plan to re-plan or adopt
    never = 10.0**9  # a generation probe needs a model name and would load one: health only
    config = SupervisorConfig(ready_timeout_s=60.0, probe_every_s=never)
    target = Supervised(
        kind="router",
        first=RouterTarget(plan.host, plan.port, plan.argv),
        launch=router_launcher(st.log_path(settings.state_dir, plan.port), read_api_key(plan.api_key_file)),
        model=", ".join(plan.names),
        build_id=plan.build_id,
        api_key_file=plan.api_key_file,
        argv=plan.argv,
        plan=plan.reasons,
        models=tuple(plan.models),
    )
    return supervise(target, state_dir=settings.state_dir, config=config, hooks=hooks)


# --- status ------------------------------------------------------------------------------------------------


def model_rows(base_url: str, api_key: str | None, models: list[dict]) -> list[dict]:
    """Each model of a running router: its state from GET /models (loaded, loading, unloaded, sleeping, failed
    with the exit code), MTP from the argv it runs with, and for a loaded one its own /metrics (`?model=`)."""
    from llmtp.adapters.http import LlamaClient

    rows = {m["name"]: {**m, "state": "unknown", "exit_code": None} for m in models}
    try:
        with LlamaClient(base_url, api_key, timeout=2) as c:
            listed = c.models()
            for item in listed:
                status = item.get("status") or {}
                row = rows.setdefault(item.get("id"), {"name": item.get("id"), "model": item.get("path"), "mtp": None})
                row["state"] = "failed" if status.get("failed") else status.get("value", "unknown")
                row["exit_code"] = status.get("exit_code")
                if status.get("args"):
                    row["mtp"] = drafts_enabled(status["args"])
            for row in rows.values():
                figures = None
                if row["state"] == "loaded":
                    try:
                        figures = instance_figures(c.metrics(row["name"]))
                    except (NetworkError, ConfigError):
                        pass
                row["tokens_per_second"] = figures.tokens_per_second if figures else None
                row["tokens_generated"] = figures.tokens if figures else None
                row["mtp_acceptance"] = figures.mtp_acceptance if figures else None
                row["mtp_words"] = mtp_words(row["mtp"], row["mtp_acceptance"])
    except (NetworkError, ConfigError, OSError):
        pass
    for row in rows.values():
        for key in ("tokens_per_second", "tokens_generated", "mtp_acceptance"):
            row.setdefault(key, None)
        if row["state"] != "loaded":  # no server of its own now: what it will run, not "no drafts yet"
            row["mtp_words"] = "-" if row["mtp"] is None else "on" if row["mtp"] else "off"
        row.setdefault("mtp_words", mtp_words(row["mtp"], None))
    return list(rows.values())


def router_entry(record, entry: dict) -> dict:
    """A router's `status` entry: the router's own fields, and `models` with one row per model."""
    api_key = read_api_key(record.api_key_file)
    entry["models"] = model_rows(base_url_for(record.host, record.port), api_key, record.models)
    entry["model_name"] = None  # clients name one of `models`
    loaded = [m for m in entry["models"] if m["state"] == "loaded"]
    entry["mtp"] = f"{len(loaded)} of {len(entry['models'])} loaded"
    entry["uptime_s"] = round(time.time() - record.started_at, 1)
    return entry


# --- stop MODEL: one model of a router --------------------------------------------------------------------


def find_member(state_dir: Path, ref: str):  # noqa: ANN201 - (ServeState, name) | None
    """The running router that serves `ref` (a model's name, file name or path) and that model's name."""
    from llmtp.services.serve.stop_target import matches

    for record in st.all_states(state_dir):
        if record.kind != "router":
            continue
        for m in record.models:
            if matches(ref, m["model"], m["name"]):
                return record, m["name"]
    return None


def unload_member(state_dir: Path, ref: str) -> tuple[int, str] | None:
    """Unload `ref` where a running router serves it: (port, name), or None when no router serves it. The router
    and the other models keep running."""
    from llmtp.adapters.http import LlamaClient

    found = find_member(state_dir, ref)
    if found is None:
        return None
    record, name = found
    with LlamaClient(base_url_for(record.host, record.port), read_api_key(record.api_key_file)) as c:
        c.unload(name)
    return record.port, name


def member(record, ref: str | None) -> dict:  # noqa: ANN001 - a router's ServeState
    """The model of a router that `ref` names (its name, file name or path): a UsageError listing them when
    `ref` is None or names none of them."""
    from llmtp.services.serve.stop_target import matches

    found = [m for m in record.models if ref is not None and matches(ref, m["model"], m["name"])]
    if len(found) == 1:
        return found[0]
    names = ", ".join(m["name"] for m in record.models)
    raise UsageError(
        f"Port {record.port} is a router serving {names}; "
        + ("name one of them" if ref is None else f"{ref!r} is none of them"),
        f"`llmtp verify MODEL --port {record.port}` with MODEL one of: {names}.",
    )


def member_record(record, ref: str | None):  # noqa: ANN001, ANN201 - ServeState in, ServeState out
    """A router's record seen as the record of one of its models (model, alias, the argv of its own plan)."""
    m = member(record, ref)
    return record.model_copy(update={"model": m["model"], "alias": m["name"], "argv": list(m.get("argv") or [])})
