"""verify measures what is served, for real (the pinned CPU llama-server, the bench-size agree model):
`verify --json` runs the very command line `plan --argv` prints as its MTP arm; once the model is served,
plain `verify` says so and offers `--port`, and `verify --port` checks the running server without
restarting it and gives the A/B's verdict.

About 1-2 minutes on the shared 2-core box (one A/B, one server load, the live check's short requests).
"""

from __future__ import annotations

import json
import subprocess
import sys

import psutil
import pytest
from test_verify_real import settings  # noqa: F401 - the fixture: the test bed's build as the current one
from typer.testing import CliRunner

from llmtp.adapters.ports import free_port
from llmtp.cli.main import app
from llmtp.core.launch_plan import argv_without_address

pytestmark = pytest.mark.llama

# a short A/B: greedy, 64 tokens, 3 runs (the speed verdict on this model is >1.3x, test_verify_real.py)
AB = ["--runs", "3", "--warmups", "1", "--n-predict", "64", "--temperature", "0", "--budget", "20"]


def _llmtp(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "llmtp", *args], capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    return r


def test_verify_runs_the_plan_and_checks_a_running_server_without_restarting_it(settings, bench_models):  # noqa: F811
    from llmtp.services.stores import serve_records as st

    model = str(bench_models["agree"])
    plan = json.loads(CliRunner().invoke(app, ["plan", model, "--argv", "--json"]).stdout)
    planned = plan["argv"]

    ab = CliRunner().invoke(app, ["verify", model, *AB, "--json"])
    report = json.loads(ab.stdout)
    assert argv_without_address(report["arms"]["mtp"]) == argv_without_address(planned)  # the MTP arm is the plan
    plain = report["arms"]["plain"]
    assert "--spec-type" not in plain and [a for a in plain if a != "--port"][:3] == planned[:3]
    # the verdict itself depends on this shared machine's load (MTP wins >1.3x when it is idle): the live
    # check below must give the same one, whichever it is
    assert ab.exit_code == report["verdict"]["code"] in (0, 13), report["verdict"]

    port = free_port()
    _llmtp("serve", model, "--port", str(port))
    try:
        record = st.read_state(settings.state_dir, port)
        server = psutil.Process(record.server_pid)
        started = server.create_time()
        assert argv_without_address(record.argv) == argv_without_address(planned)  # serve runs the plan too
        assert record.plan == plan["reasons"]  # and status shows that plan's decisions

        refused = _llmtp("verify", model, *AB, "--json", check=False)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"llmtp verify --port {port}" in refused.stdout and "--restart" in refused.stdout

        # --tolerance 1.0: the live speed is not judged here (the shared box's load would decide it)
        live = CliRunner().invoke(app, ["verify", "--port", str(port), "--tolerance", "1.0", "--json"])
        checked = json.loads(live.stdout)
        assert checked["mode"] == "live" and checked["markers"]["runtime"]["ok"] is True
        assert live.exit_code == checked["verdict"]["code"] == report["verdict"]["code"], checked["verdict"]
        assert checked["break_even_acceptance"] == report["break_even_acceptance"]  # this plan's A/B
        assert (checked["acceptance"] > checked["break_even_acceptance"]) == (report["verdict"]["code"] == 0)
        if report["verdict"]["code"] == 0:
            assert checked["baseline"] is not None  # the baseline the A/B stored is of this very plan
        after = st.read_state(settings.state_dir, port)
        assert (after.server_pid, after.started_at, after.restarts) == (record.server_pid, record.started_at, 0)
        assert psutil.Process(after.server_pid).create_time() == started
    finally:
        _llmtp("stop", "--port", str(port), check=False)


def test_verify_port_without_a_server_is_a_usage_error(settings):  # noqa: F811
    r = _llmtp("verify", "--port", str(free_port()), "--json", check=False)
    assert r.returncode == 2 and "No llmtp server on port" in r.stdout
