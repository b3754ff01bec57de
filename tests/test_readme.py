"""The README's set-up commands: they are the documented ones, and the main job really runs.

The main command's `llmtp setup --model smollm2-135m --yes` part runs here with this interpreter (the
venv and pip parts are what CI's fresh checkout does) against the test bed's build, in the background,
then `llmtp stop`.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
MAIN_COMMAND = (
    "python3 -m venv .venv-llmtp && .venv-llmtp/bin/pip install . && "
    ".venv-llmtp/bin/llmtp setup --model smollm2-135m --yes"
)
TEST_COMMAND = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"


def fenced_after(marker: str) -> str:
    """The first ```bash block after `marker` in the README."""
    text = README.read_text(encoding="utf-8")
    start = text.index(marker)
    m = re.compile(r"```bash\n(.*?)\n```", re.DOTALL).search(text, start)
    assert m is not None, f"no fenced bash block after {marker!r}"
    return m.group(1).strip()


def test_the_two_commands_are_the_documented_ones():
    assert fenced_after("**Run the main job**") == MAIN_COMMAND
    assert fenced_after("**Run the tests**") == TEST_COMMAND


def test_every_command_in_the_readme_tour_exists():
    from llmtp.cli.main import app

    # hidden aliases (ps, list, pull, rm) are habits, named in the prose, not rows of the tour
    names = {c.name for c in app.registered_commands if not c.hidden} | {g.name for g in app.registered_groups}
    text = README.read_text(encoding="utf-8")
    tour = text[text.index("## Commands") : text.index("## ", text.index("## Commands") + 3)]
    listed = set(re.findall(r"^\| `llmtp ([a-z-]+)", tour, re.MULTILINE))
    assert listed == names, f"missing from the tour: {names - listed}; not commands: {listed - names}"


@pytest.mark.llama
def test_readme_main_command_serves_and_verifies_the_demo_model(llama_bin_dir, demo_models_dir):
    from test_setup_e2e import install_testbed_build

    from llmtp.adapters.http import LlamaClient
    from llmtp.adapters.ports import free_port
    from llmtp.services.build.pipeline import load_pin
    from llmtp.services.machine.detect import detect_hardware
    from llmtp.services.stores import serve_records as st
    from llmtp.settings import load_settings

    settings = load_settings().settings
    build = install_testbed_build(settings, llama_bin_dir)
    detected = detect_hardware().recommendation.profile
    if build.manifest.profile != detected or build.manifest.build_number != load_pin().build:
        pytest.skip(
            f"the test bed build ({build.id}) is not what setup picks here ({detected}, "
            f"b{load_pin().build}): the command would compile llama.cpp"
        )
    setup_part = shlex.split(MAIN_COMMAND.split(" && ")[-1])
    assert Path(setup_part[0]).name == "llmtp" and setup_part[1] == "setup"
    port = free_port()
    # not the default 8080: the machine may be shared; the demo GGUF is fetched once per machine
    env = dict(os.environ, LLMTP_PORT=str(port), LLMTP_MODELS_DIR=str(demo_models_dir))
    run = subprocess.run(
        [sys.executable, "-m", "llmtp", *setup_part[1:]],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=900,
    )
    try:
        assert run.returncode == 0, run.stdout + run.stderr
        out = run.stdout
        assert f"serving at http://127.0.0.1:{port} in the background" in out
        # verify tells the truth about the demo model and still measures it
        assert re.search(
            r"MTP off: no MTP heads in this model \(nextn_predict_layers = 0: .*\); "
            r"plain \d+\.\d tok/s",
            out,
        ), out
        with LlamaClient(f"http://127.0.0.1:{port}", timeout=120) as client:
            content = client.completion("The capital of France is", n_predict=12, temperature=0.0)["content"]
        assert re.search(r"[A-Za-z]{3,}", content), content  # real text from the real model
    finally:
        stop = subprocess.run(
            [sys.executable, "-m", "llmtp", "stop"], env=env, capture_output=True, text=True, timeout=120
        )
    assert stop.stdout.strip() == f"stopped port(s) {port}"
    assert st.read_state(Path(settings.state_dir), port) is None
