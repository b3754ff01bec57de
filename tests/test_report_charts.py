"""verify and tune draw plain vs MTP as a terminal bar chart, and --html FILE writes a self-contained report."""

from __future__ import annotations

import json
import re

import pytest
from test_tune import BASE, METHOD, fake_launcher, speed, target
from typer.testing import CliRunner

from llmtp.cli.main import app


def _self_contained(page: str) -> None:
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)


def test_tune_chart_and_html(tmp_path, monkeypatch):
    from llmtp.services.verify import tune as svc
    from llmtp.services.verify.tune import tune

    def fake_run_tune(settings, model, method, **kw):
        return tune(target(tmp_path), fake_launcher(speed), base=BASE, method=METHOD), target(tmp_path)

    monkeypatch.setattr(svc, "run_tune", fake_run_tune)
    page = tmp_path / "tune.html"
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["tune", "m.gguf", "--html", str(page)])
    assert out.exit_code == 0, out.output
    assert "selection prompts: tok/s (median)" in out.output
    assert "held-out prompts, n-max 6, p-min 0 + ngram-mod (kept): speedup against plain per family" in out.output
    bars = {m.group(1).strip(): len(m.group(2)) for m in re.finditer(r"^  (.+?) (█+) +\S", out.output, re.M)}
    assert bars["plain"] < bars["n-max 6, p-min 0 + ngram-mod"]  # the fake's fastest setting: the longest bar
    assert max(bars.values()) == 40
    assert f"report written to {page}" in out.output
    html = page.read_text(encoding="utf-8")
    _self_contained(html)
    assert "n-max 6, p-min 0 + ngram-mod" in html and "1.65x" in html  # its held-out speedup, per family too
    assert "<th>open-ended</th>" in html and "acceptance 0.50 / break-even 0.24" in html
    assert (
        "<h2>Per family (held-out prompts)</h2>" in html and "<h2>Configuration</h2>" in html and '"n_max": 6' in html
    )


@pytest.mark.parametrize("cmd", ["verify", "tune"])
def test_html_into_a_missing_folder_fails_before_measuring(tmp_path, cmd):
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, "-m", "llmtp", cmd, "m.gguf", "--html", str(tmp_path / "no" / "r.html")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.llama
def test_verify_chart_and_html_on_the_real_server(llama_bin_dir, tiny_models, tmp_path):
    from test_verify_real import install_current

    from llmtp.settings import load_settings

    install_current(load_settings().settings, llama_bin_dir)
    page = tmp_path / "verify.html"
    args = [
        "verify",
        str(tiny_models["agree"]),
        "--runs",
        "2",
        "--warmups",
        "1",
        "--n-predict",
        "48",
        "--temperature",
        "0",
        "--html",
        str(page),
    ]
    out = CliRunner(env={"COLUMNS": "200"}).invoke(app, args)
    # the verdict is verify's own (tests/test_verify_real.py): on a busy machine the tiny model's plain runs can
    # outpace MTP; the chart and the report must draw whatever was measured
    assert out.exit_code in (0, 13), out.output
    cases = re.findall(
        r"^(\w+@0)\n  plain (█+) +([\d.]+) tok/s\n  MTP   (█+) +([\d.]+) tok/s\n"
        r"  speedup (\d+\.\d\d)x, acceptance 1\.00(?:, break-even acceptance [\d.]+ \([\w-]+\))?$",
        out.output,
        re.M,
    )
    assert {c[0] for c in cases} == {"code@0", "prose@0"}, out.output  # the agree model: every draft accepted
    for _, plain_bar, plain, mtp_bar, mtp, _speedup in cases:
        assert max(len(plain_bar), len(mtp_bar)) == 40
        assert (len(mtp_bar) > len(plain_bar)) == (float(mtp) > float(plain))
    html = page.read_text(encoding="utf-8")
    _self_contained(html)
    for key, _, plain, _, mtp, speedup in cases:  # per-prompt rows: tok/s, speedup, acceptance
        # the row: case, its prompt family, plain and MTP tok/s, speedup
        row = rf"<tr><td>{re.escape(key)}</td><td>[\w-]+</td><td>{plain}</td><td>{mtp}</td><td>{speedup}x</td>"
        assert re.search(row, html), key
    assert html.count("<td>1.00</td>") == 2
    config = json.loads(
        re.search(r"<h2>Configuration</h2><pre>(.*?)</pre>", html, re.S)
        .group(1)
        .replace("&quot;", '"')
        .replace("&#x27;", "'")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
    )
    assert config["model"] == str(tiny_models["agree"]) and config["method"]["n_predict"] == 48
