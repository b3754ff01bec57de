"""The real side effects `llmtp setup` runs with (`real_deps()`): detection, builds, models, the planner, serve,
verify, service."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from llmtp.adapters import files
from llmtp.services.setup import SetupDeps


def real_deps(confirm: Callable[[str], bool] | None = None) -> SetupDeps:
    from llmtp.adapters.ports import tcp_reachable
    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services import build as b
    from llmtp.services import builds
    from llmtp.services import model_catalog
    from llmtp.services import models as m
    from llmtp.services.detect import detect_hardware
    from llmtp.services.model_settings import model_key
    from llmtp.services.plan import hardware_from_snapshot, plan_model

    def do_build(settings, request, on_progress, hw):
        return b.build(settings, request, SubprocessRunner(), on_progress, hw=hw)

    def resolve(ref, settings, allow_download=False):
        return m.resolve_model(ref, settings, allow_download=allow_download)

    def plan(ref, settings, hw):
        from llmtp.core.plan_types import PlanRequest

        return plan_model(ref, settings, PlanRequest(), hardware_from_snapshot(hw))

    return SetupDeps(
        detect=detect_hardware, pin_build=lambda: b.load_pin().build, git_url=lambda: b.load_pin().git.url,
        reachable=tcp_reachable, list_builds=builds.list_builds,
        current_build=builds.current_build, use_build=builds.use_build, build=do_build, resolve=resolve, plan=plan,
        catalog_aliases=lambda: list(model_catalog.load_catalog().models), server_record=_server_record,
        start_server=_start_server, stop_server=lambda s, port: _stop(s, port), verify=_verify,
        plain_tok_s=_plain_tok_s, model_key=model_key, service_installed=_service_installed,
        install_service=_install_service, confirm=confirm)


def _server_record(settings, port: int) -> dict | None:
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.services import state as st
    from llmtp.services.supervisor import read_api_key

    record = st.read_state(Path(settings.state_dir), port)
    if record is None:
        return None
    url = base_url_for(record.host, record.port)
    from llmtp.services.ui import addresses

    with LlamaClient(url, read_api_key(record.api_key_file), timeout=2) as client:
        healthy = record.state == "ready" and client.health() == 200
    return {"model": record.model, "build": record.build, "healthy": healthy, "url": url,
            "api_key_file": record.api_key_file, **addresses(url, record.api_key_file)}


def _start_server(settings, build, model_path: Path, plan, host: str, port: int) -> dict:
    """`llmtp serve MODEL --foreground` detached (the serve service's own background mode), then one
    short completion to show the model answers."""
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.core.supervisor import load_budget_s
    from llmtp.services import serve as svc
    from llmtp.services.serve_command import foreground_command
    from llmtp.services.supervisor import check_port_free

    check_port_free(host, port)
    argv = foreground_command(["serve", str(model_path), "--host", host, "--port", str(port),
                               "--ctx", str(plan.ctx), *([] if plan.mtp.enabled else ["--no-mtp"])])
    record = svc.detach(Path(settings.state_dir), port, argv, load_budget_s(files.file_size(model_path)))
    url = base_url_for(host, port)
    with LlamaClient(url, timeout=120) as client:
        out = client.completion("The capital of France is", n_predict=12, temperature=0.0, seed=42)
    from llmtp.services.ui import addresses

    return {"url": url, "pid": record.llmtp_pid, "sample": " ".join(str(out.get("content", "")).split()),
            **addresses(url, None)}


def _stop(settings, port: int) -> None:
    from llmtp.services.serve import stop_served

    stop_served(Path(settings.state_dir), port)


def _verify(settings, model_path: Path, build):
    from llmtp.core.verify import Method
    from llmtp.services.verify import run_verify

    return run_verify(settings, str(model_path), Method.preset("quick"), build=build)


def _plain_tok_s(settings, model_path: Path, build) -> float | None:
    from llmtp.core.verify import Method
    from llmtp.services.verify import plain_tokens_per_s

    return plain_tokens_per_s(settings, str(model_path), Method.preset("quick"), build=build)


def _service_installed(settings) -> bool:
    from llmtp.services.service import installed_scope

    return installed_scope(settings) is not None


def _install_service(settings, model_path: Path, host: str, port: int) -> list[str]:
    import sys

    from llmtp.adapters.runner import SubprocessRunner
    from llmtp.services import service as svc

    req = svc.ServiceRequest(model=str(model_path), host=host, port=port)
    prepared = svc.validate(settings, req)  # what `llmtp service install` checks: serve's own checks
    if sys.platform == "darwin":
        return [f"loaded {svc.install_launchd(settings, req, prepared, SubprocessRunner())}"]
    plan = svc.plan_install(settings, req, prepared)
    return svc.install(settings, req, SubprocessRunner(), plan=plan).actions
