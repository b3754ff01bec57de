"""`llmtp verify --port P`: check the llmtp server running on P without restarting it: its build, model and
runtime markers, the acceptance of its drafts (from its /metrics counters, over a few short requests of
the check's own) against the stored break-even, and its decode speed on a short fixed prompt against the
baseline stored for this build, model and plan (core/verify_live.py decides)."""

from __future__ import annotations

from pathlib import Path

from llmtp.adapters.gguf_file import read_model_info
from llmtp.core import verify as core
from llmtp.core.baseline import baseline_key, compare, last_ab_key
from llmtp.core.launch_plan import argv_without_address
from llmtp.core.verify import Case, Markers, Method, VerifyReport
from llmtp.core.verify_live import live_verdict
from llmtp.errors import UsageError
from llmtp.services.build.probe_cache import cached_capabilities
from llmtp.services.serve.supervisor import read_api_key
from llmtp.services.stores.mtp_settings import model_key
from llmtp.services.verify import baselines as store
from llmtp.services.verify.ab_plan import _LiveHandle, _machine_gpus
from llmtp.services.verify.arms import measure_case, mtp_probe
from llmtp.services.verify.live_check import break_even_for
from llmtp.services.verify.mtp_ab import Target, model_marker

LIVE_CASE = Case(prompt="code", temperature=0.0)  # the short fixed prompt, greedy: its baseline case


def live_target(settings, record) -> Target:  # noqa: ANN001 - services.stores.serve_records.ServeState
    """The running server's build (its recorded id, else the binary it runs) and model file."""
    from llmtp.services.build.installed import list_builds

    build = next((b for b in list_builds(settings) if b.id == record.build), None) if record.build else None
    caps = (
        build.manifest.capabilities
        if build is not None
        else cached_capabilities(Path(record.argv[0]), settings.cache_dir)
    )
    path = Path(record.model)
    gpus, bandwidth = _machine_gpus()
    sidecar = record.argv[record.argv.index("-md") + 1] if "-md" in record.argv else None
    return Target(
        model_path=path,
        model_key=model_key(path),
        info=read_model_info(path),
        caps=caps,
        build_id=record.build,
        profile=build.manifest.profile if build is not None else None,
        sidecar=Path(sidecar) if sidecar else None,
        machine_gpus=gpus,
        bandwidth_gbps=bandwidth,
    )


def served_record(settings, port: int, model: str | None = None):  # noqa: ANN001, ANN201 - ServeState
    """The ready server on `port`; on a router, the record of its model `model` (services/serve/router.py)."""
    from llmtp.services.serve.router import member_record
    from llmtp.services.stores import serve_records as st

    record = st.read_state(Path(settings.state_dir), port)
    if record is not None and record.kind == "router":
        if record.state != "ready":
            raise UsageError(
                f"The llmtp router on port {port} is {record.state}, not ready",
                "Wait until `llmtp status` shows it ready, then check again.",
            )
        return member_record(record, model)
    if record is None or record.kind != "server":
        raise UsageError(
            f"No llmtp server on port {port}",
            "`llmtp status` lists the servers llmtp runs; without --port, verify launches its own.",
        )
    if record.state != "ready":
        raise UsageError(
            f"The llmtp server on port {port} is {record.state}, not ready",
            "Wait until `llmtp status` shows it ready, then check again.",
        )
    return record


def verify_live(  # noqa: ANN001
    settings, port: int, method: Method, tolerance: float = 0.10, model: str | None = None
) -> VerifyReport:
    """The live check: a handful of short greedy requests on the running server, nothing restarted. On a router,
    of its model `model`: every request names it, its own /metrics counters."""
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for

    record = served_record(settings, port, model)
    routed = record.alias if record.kind == "router" else None
    target = live_target(settings, record)
    key = baseline_key(target.model_key, target.profile, target.gpu_name)
    stored = store.load(settings, key)
    n_predict = stored.n_predict if stored is not None else method.n_predict
    live = method.model_copy(update={"n_predict": n_predict, "temperatures": [0.0], "prompts": ["code"]})
    markers = Markers(
        build=core.build_marker(target.caps.mtp_dialect, target.caps.spec_types),
        gpu=core.gpu_marker(target.profile, target.gpu_devices, target.machine_gpus),
        model=model_marker(target),
        runtime=core.Marker(ok=None, detail="not run"),
    )
    warnings: list[str] = []
    mtp_tps = acceptance = None
    url, key = base_url_for(record.host, record.port), read_api_key(record.api_key_file)
    with LlamaClient(url, key, timeout=600, model=routed, autoload=True) as client:  # a router loads it to check it
        handle = _LiveHandle(None, client)
        if markers.build.ok is not False and markers.model.ok is not False:
            speculative, probe, markers.runtime = mtp_probe(handle, LIVE_CASE, live)
            if markers.runtime.ok:
                samples, counters = measure_case(handle, LIVE_CASE, live)
                stats = core.summarize([s.tokens_per_s for s in samples])
                mtp_tps = stats.median if stats else None
                drafted = counters.get("draft_tokens", 0.0)
                acceptance = (
                    counters.get("accepted_tokens", 0.0) / drafted if drafted else core.acceptance([probe, *samples])
                )
    cmp = None
    if stored is not None and mtp_tps is not None:
        if stored.argv and stored.argv != argv_without_address(record.argv):
            warnings.append(
                "the stored baseline was measured with another launch plan: the speed is not compared "
                f"(`llmtp verify --restart` measures this one on port {port})"
            )
        else:
            cmp = compare(stored, {LIVE_CASE.key: mtp_tps}, n_predict, tolerance)
    last = store.load(settings, last_ab_key(key))
    if last is not None and last.argv == argv_without_address(record.argv) and last.break_even_acceptance is not None:
        break_even = last.break_even_acceptance  # the latest A/B of this very plan
    else:
        break_even = break_even_for(settings, str(target.model_path))
    verdict = live_verdict(markers, acceptance, break_even, cmp)
    if verdict is None:
        raise UsageError(
            f"The server on port {port} drafts with MTP (acceptance {acceptance:.2f}), but no break-even "
            "was measured for this model, so whether MTP pays here is unknown",
            "Measure it once with `llmtp verify --restart` (stops this server, runs the plain/MTP "
            "comparison, starts it again) or `llmtp tune`.",
        )
    return VerifyReport(
        model=str(target.model_path),
        model_key=target.model_key,
        build_id=target.build_id,
        profile=target.profile,
        gpu=target.gpu_name,
        method=live,
        markers=markers,
        mtp_tokens_per_s=mtp_tps,
        acceptance=acceptance,
        break_even_acceptance=break_even,
        baseline=cmp.model_dump(mode="json") if cmp else None,
        arms={"mtp": list(record.argv)},
        mode="live",
        warnings=warnings,
        verdict=verdict,
    )
