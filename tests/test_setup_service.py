"""`llmtp setup` against injected fakes: step order, resume, a second run doing nothing, the model choice."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from llmtp.cli import _setup_text as text
from llmtp.core.hardware import CPU, GPU, HardwareSnapshot, Recommendation
from llmtp.core.verify import Marker, Markers, Method, Verdict, VerdictCode, VerifyReport
from llmtp.errors import BuildError, ServeError, UsageError
from llmtp.services.setup import flow as svc
from llmtp.services.setup.progress import load_state, state_path
from llmtp.settings import load_settings

PIN = 11434


def snapshot(profile="cpu", ram_gib=24, gpus=()) -> HardwareSnapshot:
    return HardwareSnapshot(
        os="linux",
        cpu=CPU(model="Test CPU", cores_logical=2),
        ram_total_bytes=ram_gib * 2**30,
        ram_available_bytes=ram_gib * 2**30,
        gpus=list(gpus),
        recommendation=Recommendation(profile=profile, reason="test"),
    )


def fake_build(bid="b11434-cpu-aaaa", profile="cpu", number=PIN, mtp="upstream", tmp: Path | None = None):
    server = (tmp or Path("/nonexistent")) / bid / "bin" / "llama-server"
    if tmp is not None:
        server.parent.mkdir(parents=True, exist_ok=True)
        server.write_text("")
    manifest = SimpleNamespace(
        status="ok", profile=profile, build_number=number, capabilities=SimpleNamespace(mtp_dialect=mtp)
    )
    return SimpleNamespace(id=bid, manifest=manifest, server=server)


def report(code=VerdictCode.PASS, plain=None, mtp=None, speedup=None, model_detail="nextn_predict_layers = 1"):
    ok = {VerdictCode.NO_MTP_HEADS: (True, False), VerdictCode.MTP_NOT_IN_BUILD: (False, True)}.get(code, (True, True))
    markers = Markers(
        build=Marker(ok=ok[0], detail="--spec-type offers draft-mtp"),
        gpu=Marker(ok=True, detail="cpu"),
        model=Marker(ok=ok[1], detail=model_detail),
        runtime=Marker(ok=None, detail="-"),
    )
    return VerifyReport(
        model="m.gguf",
        method=Method.preset("quick"),
        markers=markers,
        plain_tokens_per_s=plain,
        mtp_tokens_per_s=mtp,
        speedup=speedup,
        acceptance=0.9 if mtp else None,
        verdict=Verdict(code=code, title="t", reason="r"),
    )


class Fakes:
    """Every side effect of setup, recording the calls; behaviour is set per test."""

    def __init__(
        self,
        tmp: Path,
        *,
        builds=(),
        current=None,
        reachable=True,
        has_mtp=True,
        verify_report=None,
        downloaded=True,
        hw=None,
    ):
        self.tmp, self.calls = tmp, []
        self.builds, self.current = list(builds), current
        self.reach, self.has_mtp, self.downloaded = reachable, has_mtp, downloaded
        self.verify_report = verify_report or report(mtp=40.0, plain=20.0, speedup=2.0)
        self.hw = hw or snapshot()
        self.fail: dict[str, Exception] = {}
        self.live: dict | None = None
        self.model_file = tmp / "model.gguf"
        self.model_file.write_bytes(b"GGUF")
        self.service_file = False

    def _maybe_fail(self, name):
        self.calls.append(name)
        if name in self.fail:
            raise self.fail.pop(name)

    def deps(self, confirm=None) -> svc.SetupDeps:
        def build(settings, request, on_progress, hw):
            self._maybe_fail(f"build:{request.source}:{request.profile}")
            on_progress(SimpleNamespace(phase="compile", text="", done=1, total=2))
            b = fake_build(profile=request.profile, tmp=self.tmp)
            self.builds.append(b)
            self.current = b
            return b

        def use_build(settings, bid):
            self.calls.append(f"use:{bid}")
            self.current = next(b for b in self.builds if b.id == bid)
            return self.current

        def resolve(ref, settings, allow_download=False):
            self._maybe_fail("pull" if allow_download else "resolve")
            if ref not in ("qwen3.6-27b", "smollm2-135m", str(self.model_file)):
                raise UsageError(f"Unknown model alias {ref!r}")
            if allow_download:
                self.downloaded = True
            return SimpleNamespace(
                downloaded=self.downloaded,
                path=self.model_file if self.downloaded else None,
                info=SimpleNamespace(has_mtp_heads=self.has_mtp),
            )

        def plan(ref, settings, hw):
            self.calls.append(f"plan:{ref}")
            p = SimpleNamespace(
                warnings=[],
                n_gpu_layers=None,
                n_layers=30,
                n_cpu_moe=None,
                n_cpu_ffn=None,
                ctx=8192,
                cache_type_k="f16",
                quant="Q4_1",
                fits=True,
                memory=[],
                mtp=SimpleNamespace(enabled=self.has_mtp, n_max=3),
            )
            return SimpleNamespace(plan=p)

        def start(settings, build, model_ref, plan, host, port):
            self._maybe_fail("start")
            self.started_ref = model_ref  # setup serves the model by its name (the served name is the alias)
            self.live = {
                "model": str(self.model_file),
                "build": build.id,
                "healthy": True,
                "url": f"http://{host}:{port}",
            }
            return {"url": self.live["url"], "pid": 123, "sample": "Paris."}

        def stop(settings, port):
            self.calls.append("stop")
            self.live = None

        def verify(settings, model_path, build):
            self._maybe_fail("verify")
            return self.verify_report

        def plain(settings, model_path, build):
            self.calls.append("plain")
            return 123.4

        def install(settings, model_path, host, port):
            self._maybe_fail("install")
            self.service_file = True
            return ["wrote llmtp.service", "enable --now llmtp.service"]

        def detect():
            self.calls.append("detect")
            return self.hw

        def reachable(url):
            self.calls.append("probe")
            return self.reach

        return svc.SetupDeps(
            detect=detect,
            pin_build=lambda: PIN,
            git_url=lambda: "https://github.com/ggml-org/llama.cpp",
            reachable=reachable,
            list_builds=lambda s: list(self.builds),
            current_build=lambda s: self.current,
            use_build=use_build,
            build=build,
            resolve=resolve,
            plan=plan,
            catalog_aliases=lambda: ["qwen3.6-27b", "smollm2-135m"],
            server_record=lambda s, p: self.live,
            start_server=start,
            stop_server=stop,
            verify=verify,
            plain_tok_s=plain,
            model_key=lambda p: f"key-{p}",
            service_installed=lambda s: self.service_file,
            install_service=install,
            confirm=confirm,
        )


class Recorder(svc.NullReporter):
    def __init__(self):
        self.lines: list[str] = []

    def step(self, index, name):
        self.lines.append(f"step {index} {name}")

    def info(self, text):
        self.lines.append(f"info {text}")

    def warn(self, text):
        self.lines.append(f"warn {text}")

    def build_event(self, event):
        self.lines.append(f"build {event.phase} {event.done}/{event.total}")


@pytest.fixture
def settings():
    return load_settings().settings


def statuses(result) -> dict[str, str]:
    return {s.name: s.status for s in result.steps}


def test_fresh_machine_runs_every_step_in_order(settings, tmp_path):
    f = Fakes(tmp_path)
    rec = Recorder()
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps(), rec)
    assert [ln for ln in rec.lines if ln.startswith("step")] == [f"step {i} {n}" for i, n in enumerate(svc.STEPS, 1)]
    # the plan and the server are the model's by its name (the plan serve runs; the served name is the alias)
    assert f.calls == ["detect", "probe", "build:git:cpu", "resolve", "resolve", "plan:qwen3.6-27b", "start", "verify"]
    assert f.started_ref == "qwen3.6-27b"
    assert "build compile 1/2" in rec.lines
    assert statuses(result) == {
        "detect": "done",
        "build": "done",
        "model": "done",
        "serve": "done",
        "verify": "done",
        "service": "off",
    }
    assert result.changed
    assert "MTP on: 40.0 tok/s vs 20.0 plain, 2.00x speedup" in text.summary(result.steps[4])
    state = json.loads(state_path(settings).read_text())
    assert sorted(state["steps"]) == ["build", "detect", "model", "serve", "verify"]
    assert "failed" not in state


def test_second_run_does_no_work_and_says_so(settings, tmp_path):
    f = Fakes(tmp_path)
    svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())
    f.calls.clear()
    result = svc.run_setup(settings, svc.SetupRequest(), f.deps())  # no --model: the recorded choice
    assert not any(c.startswith(("build", "use", "pull", "start", "stop", "verify", "probe")) for c in f.calls)
    assert not result.changed
    assert text.message(result) == "already set up: nothing changed"
    data = text.as_dict(result)
    assert data["skipped"] == list(svc.STEPS)
    assert data["changed"] is False


def test_resume_after_a_failed_verify_redoes_only_verify(settings, tmp_path):
    f = Fakes(tmp_path)
    f.fail["verify"] = ServeError("llama-server exited with code 1 while loading")
    with pytest.raises(ServeError):
        svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())
    state = load_state(settings)
    assert state["failed"]["step"] == "verify"
    assert "verify" not in state["steps"]  # nothing half-done is recorded as done
    f.calls.clear()
    rec = Recorder()
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps(), rec)
    assert rec.lines[0] == (
        "info resuming: step verify failed last time (llama-server exited with code 1 while loading)"
    )
    assert statuses(result) == {
        "detect": "unchanged",
        "build": "unchanged",
        "model": "unchanged",
        "serve": "unchanged",
        "verify": "done",
        "service": "off",
    }
    assert "verify" in f.calls and not any(c.startswith(("build", "start")) for c in f.calls)
    assert "failed" not in load_state(settings)


def test_resume_after_a_failed_build_builds_again(settings, tmp_path):
    f = Fakes(tmp_path, reachable=False)
    f.fail["build:pypi:cpu"] = BuildError("Compiling llama.cpp failed for profile cpu")
    with pytest.raises(BuildError):
        svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())
    assert "build" not in load_state(settings)["steps"]
    f.calls.clear()
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())
    assert f.calls[:3] == ["detect", "probe", "build:pypi:cpu"]  # git host unreachable: the pinned sdist
    assert statuses(result)["build"] == "done"


def test_matching_build_is_reused_and_a_stale_one_is_not(settings, tmp_path):
    good = fake_build("b11434-cpu-good", tmp=tmp_path)
    f = Fakes(tmp_path, builds=[good], current=good)
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True), f.deps())
    assert statuses(result)["build"] == "unchanged"
    assert not any(c.startswith("build") for c in f.calls)

    stale = fake_build("b9000-cpu-old", number=9000, tmp=tmp_path)
    other = fake_build("b11434-cuda-x", profile="cuda", tmp=tmp_path)
    f2 = Fakes(tmp_path, builds=[stale, other, good], current=stale)
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True), f2.deps())
    assert "use:b11434-cpu-good" in f2.calls  # installed and matching: switched to, not rebuilt
    assert text.summary(result.steps[1]).startswith("switched to the installed build: b11434-cpu-good")

    f3 = Fakes(tmp_path, builds=[stale], current=stale)
    svc.run_setup(
        settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True, profile="cpu", source="pypi"), f3.deps()
    )
    assert "build:pypi:cpu" in f3.calls and "probe" not in f3.calls


def test_build_without_mtp_is_a_warning_not_a_failure(settings, tmp_path):
    plain_build = fake_build(mtp=None, tmp=tmp_path)
    f = Fakes(tmp_path, builds=[plain_build], current=plain_build, verify_report=report(VerdictCode.MTP_NOT_IN_BUILD))
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True), f.deps())
    assert any("offers no draft-mtp" in w for w in result.warnings)
    assert text.summary(result.steps[4]).startswith("MTP off: the build has no draft-mtp")


def test_model_without_mtp_heads_reports_plain_speed_and_succeeds(settings, tmp_path):
    detail = "nextn_predict_layers = 0: architecture llama has no MTP graph"
    f = Fakes(tmp_path, has_mtp=False, verify_report=report(VerdictCode.NO_MTP_HEADS, model_detail=detail))
    result = svc.run_setup(settings, svc.SetupRequest(model="smollm2-135m", no_serve=True), f.deps())
    assert text.summary(result.steps[4]) == f"MTP off: no MTP heads in this model ({detail}); plain 123.4 tok/s"
    assert result.steps[4].data["plain_tok_s"] == 123.4
    assert not any("draft-mtp" in w for w in result.warnings)


def test_missing_model_is_pulled_once(settings, tmp_path):
    f = Fakes(tmp_path, downloaded=False)
    svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True), f.deps())
    assert f.calls.count("pull") == 1
    f.calls.clear()
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True), f.deps())
    assert "pull" not in f.calls and not result.changed


def test_unknown_model_fails_before_anything_is_served(settings, tmp_path):
    f = Fakes(tmp_path)
    with pytest.raises(UsageError, match="Unknown model alias"):
        svc.run_setup(settings, svc.SetupRequest(model="nope"), f.deps())
    assert "start" not in f.calls
    assert load_state(settings)["failed"]["step"] == "model"


def test_non_interactive_without_yes_or_model_is_a_clear_error(settings, tmp_path):
    f = Fakes(tmp_path)
    with pytest.raises(UsageError) as exc:
        svc.run_setup(settings, svc.SetupRequest(), f.deps(confirm=None))
    assert "cannot ask here" in exc.value.message
    assert "--model" in exc.value.hint and "--yes" in exc.value.hint
    assert not any(c.startswith("start") for c in f.calls)


def test_the_recommendation_is_asked_for_and_taken_with_yes(settings, tmp_path):
    asked: list[str] = []
    f = Fakes(tmp_path)
    with pytest.raises(UsageError, match="No model chosen"):
        svc.run_setup(settings, svc.SetupRequest(), f.deps(confirm=lambda q: asked.append(q) or False))
    assert asked == ["Use qwen3.6-27b?"]  # the fake planner says it fits with MTP
    result = svc.run_setup(settings, svc.SetupRequest(yes=True), Fakes(tmp_path).deps(confirm=None))
    assert result.steps[2].data["ref"] == "qwen3.6-27b"


def test_healthy_server_is_kept_and_another_model_replaces_it(settings, tmp_path):
    f = Fakes(tmp_path)
    svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())
    f.calls.clear()
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())
    assert statuses(result)["serve"] == "unchanged" and "start" not in f.calls
    f.live["healthy"] = False
    f.calls.clear()
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())
    assert f.calls.count("stop") == 1 and f.calls.count("start") == 1
    assert statuses(result)["serve"] == "done"


def test_service_installs_the_unit_instead_of_a_background_server(settings, tmp_path):
    f = Fakes(tmp_path)
    svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())  # a background server runs
    f.calls.clear()
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", service=True), f.deps())
    assert f.calls.index("stop") < f.calls.index("install")  # the unit needs the port
    assert "start" not in f.calls
    assert statuses(result)["service"] == "done"
    f.calls.clear()
    again = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", service=True), f.deps())
    assert "install" not in f.calls and not again.changed


# --- the recommendation, with the real planner and catalog --------------------------------------------


def _real_plan(ref, settings, hw):
    from llmtp.core.plan_types import PlanRequest
    from llmtp.services.serve.plan import hardware_from_snapshot, plan_model

    return plan_model(ref, settings, PlanRequest(), hardware_from_snapshot(hw))


def _aliases():
    from llmtp.services.models.catalog import load_catalog

    return list(load_catalog().models)


def test_recommendation_is_the_demo_model_on_a_small_cpu_only_machine(settings):
    rec = svc.recommend_model(settings, snapshot(ram_gib=2), _aliases(), _real_plan)
    assert rec.alias == "smollm2-135m"
    assert "no MTP model of the catalog fits" in rec.reason


def test_recommendation_on_a_24_gib_gpu_is_the_flagship(settings):
    gpu = GPU(
        index=0,
        vendor="nvidia",
        name="NVIDIA GeForce RTX 4090",
        vram_total_bytes=24 * 2**30,
        vram_free_bytes=23 * 2**30,
        memory_bandwidth_gbps=1008.0,
        source="nvml",
    )
    rec = svc.recommend_model(settings, snapshot("cuda", ram_gib=64, gpus=[gpu]), _aliases(), _real_plan)
    assert rec.alias == "qwen3.6-27b"
    assert rec.reason.startswith("fits fully on the GPU with MTP")


def test_an_ffn_spill_plan_is_a_partial_offload(settings):
    # -ngl covers every layer, but the FFN of 9 layers stays in RAM: not "fits fully on the GPU"
    p = SimpleNamespace(
        warnings=[],
        n_gpu_layers=66,
        n_layers=64,
        n_cpu_moe=None,
        n_cpu_ffn=9,
        ctx=16384,
        quant="Q4_K_M",
        fits=True,
        memory=[],
        mtp=SimpleNamespace(enabled=True, n_max=3),
    )
    rec = svc.recommend_model(
        settings, snapshot("cuda", ram_gib=64), ["qwen3.6-27b"], lambda ref, settings, hw: SimpleNamespace(plan=p)
    )
    assert rec.reason == "fits with partial offload and MTP (Q4_K_M, 16384 context)"


def test_final_message_names_model_place_and_verify_result(settings, tmp_path):
    f = Fakes(tmp_path)
    result = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), f.deps())
    assert text.message(result) == ("set up: qwen3.6-27b serving at http://127.0.0.1:8080; MTP on, 40.0 tok/s, 2.00x")
    (tmp_path / "demo").mkdir()
    f2 = Fakes(tmp_path / "demo", has_mtp=False, verify_report=report(VerdictCode.NO_MTP_HEADS))
    result = svc.run_setup(settings, svc.SetupRequest(model="smollm2-135m", no_serve=True), f2.deps())
    assert text.message(result) == "set up: smollm2-135m not served; MTP off (no MTP heads), plain 123.4 tok/s"


def test_no_git_means_the_pinned_pypi_source_without_a_probe(settings, tmp_path):
    from llmtp.core.hardware import Tool

    hw = snapshot()
    hw.toolchains["git"] = Tool(name="git")  # looked for, not found
    f = Fakes(tmp_path, hw=hw)
    svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True), f.deps())
    assert "build:pypi:cpu" in f.calls and "probe" not in f.calls


# --- the rule itself (core.setup_rules), on plain values ---------------------------------------------


def _plan(ngl, *, quant="Q4_K_M", weights=1, fits=True, mtp=True, warnings=(), n_cpu_ffn=None):
    return SimpleNamespace(
        fits=fits,
        mtp=SimpleNamespace(enabled=mtp),
        warnings=list(warnings),
        n_gpu_layers=ngl,
        n_layers=10,
        n_cpu_moe=None,
        n_cpu_ffn=n_cpu_ffn,
        quant=quant,
        ctx=4096,
        memory=[SimpleNamespace(weights=weights)],
    )


def test_rule_prefers_a_full_gpu_fit_then_partial_then_the_smallest_cpu_fit():
    from llmtp.core.setup_rules import DEMO_ALIAS, recommend

    assert recommend([("a", _plan(5)), ("b", _plan(11))]).alias == "b"  # full GPU beats an earlier partial one
    assert recommend([("a", _plan(5)), ("b", _plan(11, n_cpu_ffn=2))]).alias == "a"  # both partial: catalog order
    assert recommend([("big", _plan(None, weights=9)), ("small", _plan(None, weights=3))]).alias == "small"
    unknown_kv = _plan(11, warnings=["KV cache size unknown for arch x"])
    assert (
        recommend(
            [("a", _plan(11, mtp=False)), ("b", _plan(11, fits=False)), ("c", unknown_kv), (DEMO_ALIAS, _plan(11))]
        ).alias
        == DEMO_ALIAS
    )


def test_a_verify_record_from_before_the_data_form_is_verified_again(settings, tmp_path):
    """setup.json written when the verify step stored its words (line/short) but not its reasons: the
    CLI could not word it, so the step runs again instead of trusting it."""
    f = Fakes(tmp_path)
    svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True), f.deps())
    state = json.loads(state_path(settings).read_text())
    result = state["steps"]["verify"]["result"]
    for key in ("verdict_reason", "model_detail", "build_detail"):
        del result[key]
    result.update(line="MTP on: ...", short="MTP on")
    state_path(settings).write_text(json.dumps(state))
    f.calls.clear()
    again = svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b", no_serve=True), f.deps())
    assert f.calls.count("verify") == 1 and statuses(again)["verify"] == "done"
    assert text.summary(again.steps[4]) == "MTP on: 40.0 tok/s vs 20.0 plain, 2.00x speedup, acceptance 0.90"


def test_setup_makes_the_model_the_default_so_doctor_finds_it(settings, tmp_path):
    """issue 26: `doctor` after setup said "no default model set"; setup now sets it (config.toml, the
    file's other lines kept), once."""
    from llmtp.services.machine.doctor import _default_model_check
    from llmtp.services.setup.deps import set_default_model
    from llmtp.settings import load_settings

    f = Fakes(tmp_path)
    seen = []
    deps = f.deps()
    deps.set_default_model = lambda s, ref: seen.append(ref) or True
    rec = Recorder()
    svc.run_setup(settings, svc.SetupRequest(model="qwen3.6-27b"), deps, rec)
    assert seen == ["qwen3.6-27b"] and any("default model: qwen3.6-27b" in ln for ln in rec.lines)

    config = settings.config_file
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("# mine\nport = 8090\nbuild_jobs = 2\n", encoding="utf-8")
    assert set_default_model(settings, str(f.model_file)) is True
    fresh = load_settings().settings
    assert fresh.default_model == str(f.model_file) and (fresh.port, fresh.build_jobs) == (8090, 2)
    assert config.read_text(encoding="utf-8").startswith("# mine\nport = 8090\nbuild_jobs = 2\ndefault_model = ")
    assert set_default_model(fresh, str(f.model_file)) is False  # already the default: nothing written
    assert "no default model set" not in _default_model_check(fresh).detail


def test_config_text_sets_one_top_level_key():
    from llmtp.core.config_text import set_top_level_key

    assert set_top_level_key("", "default_model", "a") == 'default_model = "a"\n'
    assert (
        set_top_level_key('default_model = "a"\nport = 1\n', "default_model", 'b"c')
        == 'default_model = "b\\"c"\nport = 1\n'
    )
    # a key of the same name inside a table is not the top-level one
    assert (
        set_top_level_key('[x]\ndefault_model = "t"\n', "default_model", "a")
        == 'default_model = "a"\n[x]\ndefault_model = "t"\n'
    )
