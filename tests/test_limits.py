"""Numbers have bounds, defined once (llmtp/core/limits.py) and shared by CLI flags, LLMTP_* variables,
config.toml and stored records; the planner survives values that slip past them (issue 12 item 3)."""

from __future__ import annotations

import math

import pytest
import typer

from llmtp.core import limits
from llmtp.core.launch import MtpSettings
from llmtp.errors import ConfigError


def test_bounds_read_the_interval_of_each_type():
    assert limits.bounds(limits.Port) == (1, 65535)
    assert limits.bounds(limits.Ctx) == (256, 1 << 24)
    assert limits.bounds(limits.Parallel) == (1, 256)
    with pytest.raises(TypeError):
        limits.bounds(int)


def test_option_gives_typer_the_same_range_and_refuses_nan_for_floats():
    assert limits.option(limits.Ctx) == {"min": 256, "max": 1 << 24}
    opt = limits.option(limits.Fraction)
    assert (opt["min"], opt["max"]) == (0.0, 1.0)
    # click's FloatRange (typer < 0.26) lets nan through every comparison; the callback does not
    assert opt["callback"](0.5) == 0.5 and opt["callback"](None) is None
    many = limits.option(limits.Temperature, many=True)["callback"]
    # typer < 0.26 passes None for an absent repeatable option and fails on None coming back
    assert many([0.0, 0.7]) == [0.0, 0.7] and many(None) == []
    for check, bad in ((opt["callback"], math.nan), (opt["callback"], math.inf), (many, [0.1, math.nan])):
        with pytest.raises(typer.BadParameter):
            check(bad)
    assert "callback" not in limits.option(limits.Port)


@pytest.mark.parametrize(
    "env", [{"LLMTP_PORT": "0"}, {"LLMTP_PORT": "65536"}, {"LLMTP_BUILD_JOBS": "0"}, {"LLMTP_BUILD_JOBS": "5000"}]
)
def test_settings_from_the_environment_are_bounded(tmp_path, env):
    from llmtp.settings import load_settings

    with pytest.raises(ConfigError, match="Invalid setting"):
        load_settings({}, env={"LLMTP_HOME": str(tmp_path), **env})


@pytest.mark.parametrize("text", ["port = -1\n", "build_jobs = 100000\n"])
def test_settings_from_config_toml_are_bounded(tmp_path, text):
    from llmtp.settings import load_settings

    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.toml").write_text(text)
    with pytest.raises(ConfigError, match="config.toml"):
        load_settings({}, env={"LLMTP_HOME": str(tmp_path)})


def test_settings_within_bounds_load(tmp_path):
    from llmtp.settings import load_settings

    s = load_settings({"port": 65535}, env={"LLMTP_HOME": str(tmp_path), "LLMTP_BUILD_JOBS": "1024"}).settings
    assert (s.port, s.build_jobs) == (65535, 1024)


@pytest.mark.parametrize("mtp", [{"n_max": -1}, {"n_max": 100000}, {"n_min": -2}, {"p_min": 1.5}, {"p_min": "nan"}])
def test_a_tuned_settings_file_out_of_range_is_a_config_error_naming_it(tmp_path, mtp):
    """A hand-edited or corrupt model-settings record must not put -1 or 1e5 draft tokens on the command line."""
    import json

    from llmtp.services.stores import mtp_settings
    from llmtp.settings import load_settings

    settings = load_settings({}, env={"LLMTP_HOME": str(tmp_path)}).settings
    path = mtp_settings.save(settings, "m-1-abc", MtpSettings(enabled=True, n_max=3))
    record = json.loads(path.read_text())
    record["mtp"].update(mtp)
    path.write_text(json.dumps(record).replace('"nan"', "NaN"))
    with pytest.raises(ConfigError, match="model settings"):
        mtp_settings.load(settings, "m-1-abc")


def test_context_halving_ends_for_any_input():
    """`plan M --ctx -5` looped forever: -5 // 2 stays at -1 and never drops below a negative floor."""
    import subprocess
    import sys

    from llmtp.core.placement import ctx_steps as _ctx_steps

    assert _ctx_steps(32768, 4096) == [32768, 16384, 8192, 4096]
    # in a child with a deadline and 1 GiB of address space: the old loop never ends and its list eats all memory
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30)); "
        "from llmtp.core.placement import ctx_steps as s; print(s(-5, -5), s(0, 0), s(5, -100))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.stdout.split("\n")[0] == "[-5] [0] [5, 2, 1]", done.stderr


def test_a_single_model_that_fits_nowhere_on_cpu_still_gets_a_plan():
    """--ctx at its maximum on a CPU machine ended in `assert trial is not None`; now it is a plan that says
    it does not fit."""
    from llmtp.core.catalog_model import model_info_from_catalog
    from llmtp.core.plan import make_plan
    from llmtp.core.plan_types import GiB, PlanHardware, PlanRequest
    from llmtp.services.models.catalog import load_catalog

    info = model_info_from_catalog(load_catalog().get("qwen3.6-27b"), "Q4_K_M")
    from llmtp.errors import UsageError

    with pytest.raises(UsageError, match="trained for"):  # 64x its trained context: refused unless forced
        make_plan(info, PlanHardware(ram_bytes=32 * GiB, backend="cpu"), PlanRequest(ctx=limits.CTX_MAX))
    plan = make_plan(info, PlanHardware(ram_bytes=32 * GiB, backend="cpu"), PlanRequest(ctx=limits.CTX_MAX, force=True))
    assert plan.ctx == limits.CTX_MAX
    assert any("does not fit" in w for w in plan.warnings)


def test_logs_lines_zero_prints_no_old_lines(llmtp_home):
    """`-n 0` sliced [-0:], the whole log; now it means none (as tail -n 0), and -n N the last N."""
    from typer.testing import CliRunner

    from llmtp.cli.main import app

    log = llmtp_home / "state" / "logs" / "server-8080.log"
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    runner = CliRunner()
    assert runner.invoke(app, ["logs", "-n", "0"]).stdout == ""
    assert runner.invoke(app, ["logs", "-n", "0", "--raw"]).stdout == ""
    assert runner.invoke(app, ["logs", "-n", "2", "--raw"]).stdout == "line 8\nline 9\n"
    assert runner.invoke(app, ["logs", "-n", "50", "--raw"]).stdout.count("\n") == 10
