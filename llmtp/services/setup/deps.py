"""The real side effects `llmtp setup` runs with (`real_deps()`): detection, builds, models, the planner, serve,
verify, service."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from llmtp.adapters import files
from llmtp.adapters.files import write_text_atomic
from llmtp.adapters.ports import tcp_reachable
from llmtp.adapters.runner import SubprocessRunner
from llmtp.core.config_text import set_top_level_key
from llmtp.core.launch_plan import LaunchRequest, serve_args
from llmtp.core.supervisor import load_budget_s
from llmtp.core.verify import Method
from llmtp.services.machine.detect import detect_hardware
from llmtp.services.models import catalog
from llmtp.services.models import resolve as m
from llmtp.services.models.resolve import resolve_model
from llmtp.services.serve.command_line import foreground_command
from llmtp.services.serve.foreground import check_port_free
from llmtp.services.serve.launch import stop_served
from llmtp.services.serve.launch_plan import LaunchDeps, resolve_launch
from llmtp.services.serve.supervisor import read_api_key
from llmtp.services.serve.web_ui import addresses
from llmtp.services.setup.flow import SetupDeps
from llmtp.services.stores.mtp_settings import model_key
from llmtp.services.units.serve_unit import installed_scope
from llmtp.services.verify.ab_plan import plain_tokens_per_s, run_verify


def real_deps(confirm: Callable[[str], bool] | None = None) -> SetupDeps:
    from llmtp.services.build import installed
    from llmtp.services.build import pipeline as b

    def do_build(settings, request, on_progress, hw):
        return b.build(settings, request, SubprocessRunner(), on_progress, hw=hw)

    def resolve(ref, settings, allow_download=False):
        return m.resolve_model(ref, settings, allow_download=allow_download)

    def plan(ref, settings, hw):
        """The plan serve runs (services/serve/launch_plan.py; this build's hardware rule, so `hw` is not needed)."""

        return resolve_launch(settings, LaunchRequest(model=ref), LaunchDeps(launching=False)).planned

    return SetupDeps(
        detect=detect_hardware,
        pin_build=lambda: b.load_pin().build,
        git_url=lambda: b.load_pin().git.url,
        reachable=tcp_reachable,
        list_builds=installed.list_builds,
        current_build=installed.current_build,
        use_build=installed.use_build,
        build=do_build,
        resolve=resolve,
        plan=plan,
        catalog_aliases=lambda: list(catalog.load_catalog().models),
        server_record=_server_record,
        start_server=_start_server,
        stop_server=lambda s, port: _stop(s, port),
        verify=_verify,
        plain_tok_s=_plain_tok_s,
        model_key=model_key,
        service_installed=_service_installed,
        install_service=_install_service,
        confirm=confirm,
        set_default_model=set_default_model,
    )


def _server_record(settings, port: int) -> dict | None:
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.services.stores import serve_records as st

    record = st.read_state(Path(settings.state_dir), port)
    if record is None:
        return None
    url = base_url_for(record.host, record.port)

    with LlamaClient(url, read_api_key(record.api_key_file), timeout=2) as client:
        healthy = record.state == "ready" and client.health() == 200
    return {
        "model": record.model,
        "build": record.build,
        "healthy": healthy,
        "url": url,
        "api_key_file": record.api_key_file,
        **addresses(url, record.api_key_file),
    }


def _start_server(settings, build, model_ref: str, plan, host: str, port: int) -> dict:
    """`llmtp serve MODEL --foreground` detached (the serve service's own background mode, the same launch
    plan, served under the model's name), then one short completion to show the model answers."""
    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.server_process import base_url_for
    from llmtp.services.serve import launch as svc

    check_port_free(host, port)
    argv = foreground_command(serve_args(LaunchRequest(model=model_ref, host=host, port=port)))

    path = resolve_model(model_ref, settings).path
    size = files.file_size(Path(path)) if path else None
    record = svc.detach(Path(settings.state_dir), port, argv, load_budget_s(size))
    url = base_url_for(host, port)
    with LlamaClient(url, timeout=120) as client:
        out = client.completion("The capital of France is", n_predict=12, temperature=0.0, seed=42)

    return {
        "url": url,
        "pid": record.llmtp_pid,
        "sample": " ".join(str(out.get("content", "")).split()),
        **addresses(url, None),
    }


def _stop(settings, port: int) -> None:
    stop_served(Path(settings.state_dir), port)


def _verify(settings, model_ref: str, build):
    """The A/B of the plan serve runs; the server setup just started is stopped for it and started again."""

    return run_verify(settings, LaunchRequest(model=model_ref), Method.preset("quick"), build=build, served="restart")


def _plain_tok_s(settings, model_ref: str, build) -> float | None:
    return plain_tokens_per_s(settings, LaunchRequest(model=model_ref), Method.preset("quick"), build=build)


def _service_installed(settings) -> bool:
    return installed_scope(settings) is not None


def _install_service(settings, model_ref: str, host: str, port: int) -> list[str]:
    from llmtp.services.units import serve_unit as svc
    from llmtp.services.units.launchd import install_launchd

    req = svc.ServiceRequest(launch=LaunchRequest(model=model_ref, host=host, port=port))
    launch = svc.validate(settings, req)  # what `llmtp service install` checks: serve's own checks
    if sys.platform == "darwin":
        return [f"loaded {install_launchd(settings, req, launch, SubprocessRunner())}"]
    unit = svc.plan_install(settings, req, launch)
    return svc.install(settings, req, SubprocessRunner(), plan=unit).actions


def set_default_model(settings, ref: str) -> bool:
    """Make `ref` the default model in config.toml (the file's other lines kept); False when it already is."""

    if settings.default_model == ref:
        return False
    path = Path(settings.config_file)
    text = files.read_text(path) if path.is_file() else ""
    files.make_dirs(path.parent)
    write_text_atomic(path, set_top_level_key(text, "default_model", ref))
    return True
