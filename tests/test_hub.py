"""Catalog vs hub (issue 18): quant patterns against the public listings (UD- and plain), the
several-matches and sidecar rules, listings cached per revision, listed sizes in plans, and
`llmtp models check` against a fake hub on 127.0.0.1 serving huggingface_hub's API shape."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_hub import FakeFile, FakeHubServer, FakeRepo
from typer.testing import CliRunner

from llmtp.adapters.hf import HfHubClient
from llmtp.cli.main import app
from llmtp.core.catalog import choose_quant_file, choose_sidecar, parse_catalog, quant_of
from llmtp.core.gguf_header import read_kv_prefix
from llmtp.errors import NetworkError, UsageError
from llmtp.services.models import catalog
from llmtp.services.models import hub as hubsvc
from llmtp.services.models import resolve as svc
from llmtp.settings import load_settings

REV = "5d3c6a1f0e9b8a7c6d5e4f3a2b1c0d9e8f7a6b5c"

# The public listings quoted in issue 18 (names, and sizes where a source gives them).
PUBLIC = {
    "unsloth/Qwen3.6-27B-MTP-GGUF": {
        "Qwen3.6-27B-UD-IQ3_XXS.gguf": 12_500_000_000,  # "about 12.0-12.5 GB"
        "Qwen3.6-27B-IQ4_XS.gguf": 15_700_000_000,
        "Qwen3.6-27B-Q4_K_M.gguf": 17_100_000_000,
        "BF16/Qwen3.6-27B-BF16-00001-of-00002.gguf": 30_000_000_000,  # about 54.6 GB in two parts
        "BF16/Qwen3.6-27B-BF16-00002-of-00002.gguf": 24_600_000_000,
        "mmproj-BF16.gguf": 900_000_000,
    },
    "ggml-org/Qwen3.6-27B-MTP-GGUF": {"Qwen3.6-27B-Q8_0.gguf": 29_047_083_264},
    # the issue says only that separate mtp-*.gguf drafts are here: these two names are illustrative
    "ggml-org/Qwen3.6-27B-GGUF": {"Qwen3.6-27B-Q4_K_M.gguf": 16_800_000_000, "mtp-Qwen3.6-27B-Q8_0.gguf": 400_000_000},
    "unsloth/Qwen3.6-35B-A3B-MTP-GGUF": {
        "Qwen3.6-35B-A3B-UD-Q4_K_M.gguf": 22_000_000_000,
        "Qwen3.6-35B-A3B-UD-IQ4_XS.gguf": 18_000_000_000,
        "Qwen3.6-35B-A3B-UD-Q6_K.gguf": 29_000_000_000,
    },
    "unsloth/gemma-4-31B-it-GGUF": {
        "gemma-4-31B-it-Q4_K_M.gguf": 18_323_733_440,
        "MTP/mtp-gemma-4-31B-it-BF16.gguf": 1_000_000_000,
        "MTP/mtp-gemma-4-31B-it-Q8_0.gguf": 540_000_000,
    },
    "unsloth/gemma-4-26B-A4B-it-GGUF": {"gemma-4-26B-A4B-it-UD-Q4_K_M.gguf": 16_000_000_000},
}


def _header(tmp_path: Path, arch: str, nextn: int | None, *, tokens: int = 0) -> bytes:
    """A GGUF with no tensors: what a range read of a real file's first bytes returns. `tokens` puts a
    long string array before the MTP key (a real tokenizer does), so one small read is not enough."""
    from gguf import GGUFWriter

    path = tmp_path / f"h-{arch}-{nextn}-{tokens}.gguf"
    w = GGUFWriter(str(path), arch)
    if tokens:
        w.add_array("tokenizer.ggml.tokens", [f"t{i:06d}" for i in range(tokens)])
    if nextn is not None:
        w.add_uint32(f"{arch}.nextn_predict_layers", nextn)
    w.add_block_count(4)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()
    return path.read_bytes()


def _public_hub(tmp_path: Path) -> dict[str, FakeRepo]:
    qwen = _header(tmp_path, "qwen35", 1)
    moe = _header(tmp_path, "qwen35moe", 1, tokens=120_000)  # MTP key past the first 1 MiB
    gemma = _header(tmp_path, "gemma4", None)
    draft = _header(tmp_path, "gemma4-assistant", 4)
    repos = {}
    for repo, files in PUBLIC.items():
        fr = FakeRepo(sha=REV)
        for name, size in files.items():
            body = draft if "mtp-gemma" in name else gemma if "gemma" in repo else moe if "35B" in repo else qwen
            fr.files[name] = FakeFile(size=size, body=body)
        repos[repo] = fr
    return repos


@pytest.fixture
def public_hub(tmp_path, monkeypatch):
    with FakeHubServer(_public_hub(tmp_path)) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        yield server


# ---- patterns and choice rules (pure) ------------------------------------------------------------------


def test_catalog_patterns_resolve_against_the_public_listings():
    cat = catalog.load_catalog()
    expect = {
        ("qwen3.6-27b", "IQ3_XXS"): "Qwen3.6-27B-UD-IQ3_XXS.gguf",
        ("qwen3.6-27b", "IQ4_XS"): "Qwen3.6-27B-IQ4_XS.gguf",
        ("qwen3.6-27b", "Q4_K_M"): "Qwen3.6-27B-Q4_K_M.gguf",
        ("qwen3.6-27b", "BF16"): "BF16/Qwen3.6-27B-BF16.gguf",
        ("qwen3.6-35b-a3b", "Q4_K_M"): "Qwen3.6-35B-A3B-UD-Q4_K_M.gguf",
        ("qwen3.6-35b-a3b", "IQ4_XS"): "Qwen3.6-35B-A3B-UD-IQ4_XS.gguf",
        ("qwen3.6-35b-a3b", "Q6_K"): "Qwen3.6-35B-A3B-UD-Q6_K.gguf",
        ("gemma-4-31b", "Q4_K_M"): "gemma-4-31B-it-Q4_K_M.gguf",
        ("gemma-4-26b", "Q4_K_M"): "gemma-4-26B-A4B-it-UD-Q4_K_M.gguf",
    }
    for (alias, quant), variant in expect.items():
        e = cat.get(alias)
        q = e.quant(quant)
        listing = PUBLIC[q.repo or e.repos[0]]
        choice = choose_quant_file(q.file, listing)
        assert choice is not None and choice.variant == variant, (alias, quant, choice)
    bf16 = choose_quant_file(cat.get("qwen3.6-27b").quant("BF16").file, PUBLIC["unsloth/Qwen3.6-27B-MTP-GGUF"])
    assert bf16.files == ["BF16/Qwen3.6-27B-BF16-00001-of-00002.gguf", "BF16/Qwen3.6-27B-BF16-00002-of-00002.gguf"]
    assert bf16.size_bytes == 54_600_000_000
    q8 = cat.get("qwen3.6-27b").quant("Q8_0")
    assert choose_quant_file(q8.file, PUBLIC[q8.repo]).size_bytes == 29_047_083_264


def test_plain_and_ud_names_match_either_way_and_the_rule_says_which_was_taken():
    plain_only = {"M-Q4_K_M.gguf": 10}
    ud_only = {"M-UD-Q4_K_M.gguf": 10}
    for pattern in ("M-Q4_K_M.gguf", "M-UD-Q4_K_M.gguf"):
        assert choose_quant_file(pattern, plain_only).variant == "M-Q4_K_M.gguf"
        assert choose_quant_file(pattern, ud_only).variant == "M-UD-Q4_K_M.gguf"
    both = {"M-UD-Q4_K_M.gguf": 9, "M-Q4_K_M.gguf": 10}
    exact = choose_quant_file("M-Q4_K_M.gguf", both)
    assert exact.variant == "M-Q4_K_M.gguf" and "exact name" in exact.reason and "M-UD-Q4_K_M.gguf" in exact.reason
    # no exact name: the smallest UD- variant, and the others are named
    uds = {"M-UD-Q4_K_M-00001-of-00002.gguf": 6, "M-UD-Q4_K_M-00002-of-00002.gguf": 6, "X/M-UD-Q4_K_M.gguf": 11}
    pick = choose_quant_file("M-Q4_K_M.gguf", uds)
    assert pick.variant == "X/M-UD-Q4_K_M.gguf" and pick.size_bytes == 11 and "smallest UD- variant" in pick.reason
    assert pick.alternatives == ["M-UD-Q4_K_M.gguf"]
    # drafts, projectors and imatrix data are never the model; nothing else: None
    assert (
        choose_quant_file("*Q8_0*.gguf", {"mtp-M-Q8_0.gguf": 1, "mmproj-Q8_0.gguf": 1, "imatrix_Q8_0.gguf": 1}) is None
    )
    assert choose_quant_file("M-Q5_K_M.gguf", both) is None
    assert [quant_of(n) for n in ("a-UD-IQ3_XXS.gguf", "mtp-g-BF16.gguf", "b-Q4_K_M-00001-of-00002.gguf")] == [
        "IQ3_XXS",
        "BF16",
        "Q4_K_M",
    ]


def test_sidecar_rule_is_q8_0_unless_asked_and_says_which():
    files = {"MTP/mtp-g-BF16.gguf": 1_000, "MTP/mtp-g-F16.gguf": 1_000, "MTP/mtp-g-Q8_0.gguf": 540}
    d = choose_sidecar("MTP/mtp-g-*.gguf", files)
    assert d.variant == "MTP/mtp-g-Q8_0.gguf" and "Q8_0 unless asked" in d.reason and "mtp-g-BF16.gguf" in d.reason
    assert choose_sidecar("MTP/mtp-g-*.gguf", files, "bf16").variant == "MTP/mtp-g-BF16.gguf"
    with pytest.raises(ValueError, match="no Q4_0 MTP draft.*BF16, F16, Q8_0"):
        choose_sidecar("MTP/mtp-g-*.gguf", files, "Q4_0")
    no_q8 = {"mtp-g-BF16.gguf": 1_000, "mtp-g-F16.gguf": 999}
    d = choose_sidecar("mtp-g-*.gguf", no_q8)
    assert d.variant == "mtp-g-F16.gguf" and "no Q8_0 draft here, took the smallest" in d.reason
    assert choose_sidecar("mtp-g-*.gguf", {"g-Q8_0.gguf": 1}) is None


def test_an_entry_may_carry_its_mtp_head_either_way_per_repo():
    cat = catalog.load_catalog()
    q = cat.get("qwen3.6-27b")
    assert q.mtp_for("unsloth/Qwen3.6-27B-MTP-GGUF").mtp == "embedded"
    side = q.mtp_for("ggml-org/Qwen3.6-27B-GGUF")
    assert side.mtp == "sidecar" and side.sidecar and "mtp-" in side.sidecar
    base = {
        "name": "X",
        "description": "d",
        "repos": ["a/b"],
        "mtp": "embedded",
        "license": "mit",
        "license_note": "n",
        "default_quant": "Q4_0",
        "quants": [{"name": "Q4_0", "file": "x"}],
        "arch": {"arch": "qwen35"},
    }
    from llmtp.errors import ConfigError

    with pytest.raises(ConfigError) as err:  # a repo_mtp for a repo the entry does not list
        parse_catalog(
            {"schema": 1, "models": {"x": dict(base, repo_mtp={"c/d": {"mtp": "sidecar", "sidecar": "mtp-*"}})}}, "t"
        )
    assert "c/d" in " ".join(err.value.details)
    with pytest.raises(ConfigError):  # sidecar without its pattern
        parse_catalog(
            {"schema": 1, "models": {"x": dict(base, repos=["a/b", "c/d"], repo_mtp={"c/d": {"mtp": "sidecar"}})}}, "t"
        )


def test_kv_prefix_reads_what_a_partial_header_holds(tmp_path):
    data = _header(tmp_path, "qwen35", 1, tokens=50_000)
    kv, complete = read_kv_prefix(data[:4096])
    assert not complete and kv["general.architecture"] == "qwen35" and "qwen35.nextn_predict_layers" not in kv
    kv, complete = read_kv_prefix(data)
    assert complete and kv["qwen35.nextn_predict_layers"] == 1


# ---- listings through the real client against the fake hub ---------------------------------------------


def test_listing_is_cached_per_revision_and_labelled_when_the_hub_is_gone(public_hub, monkeypatch):
    s = load_settings().settings
    client = HfHubClient()
    first = hubsvc.repo_listing(s, client, "unsloth/Qwen3.6-27B-MTP-GGUF")
    assert first.revision == REV and not first.cached
    assert first.sizes["Qwen3.6-27B-Q4_K_M.gguf"] == 17_100_000_000
    assert (Path(s.cache_dir) / "hub-listings" / "unsloth--Qwen3.6-27B-MTP-GGUF" / f"{REV}.json").is_file()
    blobs = [r for r in public_hub.requests if "blobs=" in r]
    again = hubsvc.repo_listing(s, client, "unsloth/Qwen3.6-27B-MTP-GGUF")
    assert again.sizes == first.sizes
    assert [r for r in public_hub.requests if "blobs=" in r] == blobs  # same revision: not listed again
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the hub goes away
    gone = hubsvc.repo_listing(s, HfHubClient(), "unsloth/Qwen3.6-27B-MTP-GGUF")
    assert gone.cached and gone.sizes == first.sizes and "the hub did not answer" in gone.label()
    with pytest.raises(NetworkError):
        hubsvc.repo_listing(s, HfHubClient(), "unsloth/gemma-4-31B-it-GGUF")  # never listed: nothing to fall back on


def test_plan_uses_the_listed_sizes_and_says_which_revision(public_hub):
    s = load_settings().settings
    r = svc.resolve_model("qwen3.6-27b", s)
    sizes = {c.quant: c.file_size_bytes for c in r.candidates}
    assert sizes["Q4_K_M"] == 17_100_000_000 and sizes["Q8_0"] == 29_047_083_264 and sizes["BF16"] == 54_600_000_000
    assert f"unsloth/Qwen3.6-27B-MTP-GGUF at revision {REV[:12]}" in r.size_source
    assert "catalog sizes for Q5_K_M" in r.size_source  # not in the listing: the catalog's (estimated) size
    # the planner is fed the listed size: a listing that differs from the catalog changes the plan's weights
    public_hub.repos["unsloth/Qwen3.6-27B-MTP-GGUF"].sha = "f" * 40
    public_hub.repos["unsloth/Qwen3.6-27B-MTP-GGUF"].files["Qwen3.6-27B-Q4_K_M.gguf"].size = 16_000_000_000
    res = CliRunner().invoke(app, ["plan", "qwen3.6-27b", "--quant", "Q4_K_M", "--vram", "24GiB", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert "revision ffffffffffff" in data["sizes_from"]
    weights = sum(m["weights"] for m in data["plan"]["memory"])
    assert weights == 16_000_000_000  # the listed file, not the catalog's 17.1 GB
    human = CliRunner().invoke(app, ["plan", "qwen3.6-27b", "--vram", "16GiB"])
    assert human.exit_code == 0 and "sizes from hub listing of unsloth/Qwen3.6-27B-MTP-GGUF" in human.output


def test_plan_offline_says_the_sizes_are_the_catalog_fallback():
    res = CliRunner().invoke(app, ["plan", "qwen3.6-27b", "--vram", "16GiB", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["sizes_from"].startswith("catalog sizes (offline fallback:")
    human = CliRunner().invoke(app, ["plan", "qwen3.6-27b", "--vram", "16GiB"], env={"LLMTP_OFFLINE": "1"})
    assert "sizes from catalog sizes (offline fallback: offline mode is on)" in human.output


# ---- `models check` ------------------------------------------------------------------------------------


def test_models_check_against_the_public_listings(public_hub):
    res = CliRunner().invoke(app, ["models", "check", "qwen3.6-27b", "--json"])
    data = json.loads(res.output)
    rows = {r["item"]: r for r in data["rows"]}
    assert data["revisions"] == {
        "unsloth/Qwen3.6-27B-MTP-GGUF": REV,
        "ggml-org/Qwen3.6-27B-MTP-GGUF": REV,
        "ggml-org/Qwen3.6-27B-GGUF": REV,
    }
    draft = rows["MTP draft"]  # ggml-org's plain repo carries the head in a separate file
    assert (
        draft["status"] == "ok" and draft["repo"] == "ggml-org/Qwen3.6-27B-GGUF" and draft["nextn_predict_layers"] == 1
    )
    for q in ("IQ3_XXS", "IQ4_XS", "Q4_K_M", "Q8_0", "BF16"):
        assert rows[q]["status"] == "ok", rows[q]
        assert rows[q]["nextn_predict_layers"] == 1
    assert rows["IQ3_XXS"]["file"] == "Qwen3.6-27B-UD-IQ3_XXS.gguf"
    assert rows["Q5_K_M"]["status"] == "missing"  # the public listing has no Q5_K_M
    assert res.exit_code == 1  # something differs
    # the MoE header keeps its MTP key past the first MiB: read on until it is found
    moe = json.loads(CliRunner().invoke(app, ["models", "check", "qwen3.6-35b-a3b", "--json"]).output)
    q4 = next(r for r in moe["rows"] if r["item"] == "Q4_K_M")
    assert q4["status"] == "note" and q4["nextn_predict_layers"] == 1 and q4["listed_bytes"] == 22_000_000_000
    gemma = json.loads(CliRunner().invoke(app, ["models", "check", "gemma-4-31b", "--json"]).output)
    g = {r["item"]: r for r in gemma["rows"]}
    assert g["Q4_K_M"]["status"] == "ok" and g["Q4_K_M"]["listed_bytes"] == 18_323_733_440
    assert g["MTP draft"]["status"] == "ok" and g["MTP draft"]["file"] == "MTP/mtp-gemma-4-31B-it-Q8_0.gguf"
    assert g["MTP draft"]["nextn_predict_layers"] == 4


def test_models_check_finds_the_old_seed_sizes_and_stripped_heads(public_hub, tmp_path):
    cat = catalog.load_catalog()
    entry = cat.get("qwen3.6-27b")
    old = entry.model_copy(
        update={
            "quants": [
                q.model_copy(
                    update={"size_gb": {"IQ3_XXS": 11.2, "IQ4_XS": 13.8, "Q4_K_M": 15.5}.get(q.name, q.size_gb)}
                )
                for q in entry.quants
            ]
        }
    )
    stripped = _header(tmp_path, "qwen35", 0)
    public_hub.repos["ggml-org/Qwen3.6-27B-MTP-GGUF"].files["Qwen3.6-27B-Q8_0.gguf"].body = stripped
    report = hubsvc.check_entry(load_settings().settings, HfHubClient(), old)
    rows = {r.item: r for r in report.rows}
    assert (
        rows["Q4_K_M"].status == "differs"
        and "catalog 15,500,000,000 bytes, hub 17,100,000,000 bytes" in rows["Q4_K_M"].detail
    )
    assert rows["IQ4_XS"].status == "differs" and rows["IQ3_XXS"].status == "differs"
    assert rows["BF16"].status == "ok"
    assert rows["Q8_0"].status == "differs" and "NO MTP heads" in rows["Q8_0"].detail
    human = CliRunner().invoke(app, ["models", "check", "gemma-4-26b"])
    assert "MTP draft" in human.output and "missing" in human.output and human.exit_code == 1


def _run(argv: list[str], capsys) -> tuple[int, str]:
    from llmtp.cli.main import run

    try:
        run(argv)
        rc = 0
    except SystemExit as done:
        rc = done.code
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_models_check_offline_says_it_cannot(capsys, monkeypatch):
    rc, text = _run(["models", "check"], capsys)  # the hub does not answer (conftest points it at port 9)
    assert rc == 7 and "Cannot check the catalog against the hub" in text and "reachable" in text
    monkeypatch.setenv("LLMTP_OFFLINE", "1")
    rc, text = _run(["models", "check", "qwen3.6-27b"], capsys)
    assert rc == 7 and "offline mode is on" in text


def test_models_check_exit_status_says_whether_anything_differs(public_hub, capsys):
    gemma = public_hub.repos["unsloth/gemma-4-31B-it-GGUF"].files
    body = gemma["gemma-4-31B-it-Q4_K_M.gguf"].body
    gemma["gemma-4-31B-it-Q5_K_M.gguf"] = FakeFile(21_000_000_000, body)  # not public: a repo that has them all
    gemma["gemma-4-31B-it-Q8_0.gguf"] = FakeFile(32_000_000_000, body)
    rc, text = _run(["models", "check", "gemma-4-31b"], capsys)
    assert rc == 0 and "the catalog matches the hub" in text and "note" in text
    rc, text = _run(["models", "check", "qwen3.6-27b"], capsys)
    assert rc == 1 and "1 difference(s)" in text and "no file matching Qwen3.6-27B-Q5_K_M.gguf" in text


def test_models_check_unknown_repo_is_a_difference(public_hub):
    del public_hub.repos["unsloth/gemma-4-26B-A4B-it-GGUF"]
    report = hubsvc.check_catalog(load_settings().settings, catalog.load_catalog(), "gemma-4-26b")
    assert [r.status for r in report.rows if r.item == "repo"] == ["missing"]
    assert all(r.status == "missing" for r in report.rows)
    with pytest.raises(UsageError):
        hubsvc.check_catalog(load_settings().settings, catalog.load_catalog(), "gemma-4-2b")


def test_a_gemma_plan_counts_the_listed_q8_0_draft(public_hub):
    res = CliRunner().invoke(app, ["plan", "gemma-4-31b", "--vram", "24GiB", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["plan"]["mtp"]["draft_model"] == "MTP/mtp-gemma-4-31B-it-Q8_0.gguf"
    assert not any("sidecar size unknown" in w for w in data["plan"]["warnings"])
    gpu = data["plan"]["memory"][0]
    assert gpu["mtp_draft"] >= 540_000_000  # the listed draft's weights are in the MTP reserve


def test_models_check_of_a_gated_repo_without_a_token_lists_but_cannot_read_headers(public_hub, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    public_hub.repos["unsloth/gemma-4-31B-it-GGUF"].gated = True
    report = hubsvc.check_catalog(load_settings().settings, catalog.load_catalog(), "gemma-4-31b")
    rows = {r.item: r for r in report.rows}
    assert rows["Q4_K_M"].status == "ok" and rows["Q4_K_M"].listed_bytes == 18_323_733_440
    draft = rows["MTP draft"]
    assert draft.status == "note" and "MTP marker not read" in draft.detail and "HF_TOKEN" in draft.detail
    assert "gated" in draft.detail
