"""Models in the Hugging Face cache (as `hf download` / `llama-server -hf` leave them) are llmtp's
downloaded models: references, resolution, `models list --local`, `models rm`, HF_HUB_OFFLINE."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from fake_hf_cache import put
from fake_hub import FakeHubServer
from typer.testing import CliRunner

from llmtp.cli.main import app
from llmtp.core.model_ref import HubRef, parse_hub_ref
from llmtp.errors import NetworkError, UsageError
from llmtp.services.models import pulls
from llmtp.services.models import resolve as svc
from llmtp.settings import load_settings

REPO = "unsloth/Qwen3.6-27B-MTP-GGUF"


def _gguf_bytes(tmp_path: Path, nextn: int, name: str = "m.gguf") -> bytes:
    import numpy as np
    from gguf import GGUFWriter

    path = tmp_path / name
    w = GGUFWriter(str(path), "qwen35")
    w.add_block_count(2 + nextn)
    w.add_uint32("qwen35.nextn_predict_layers", nextn)
    w.add_embedding_length(8)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


def _hf_cache() -> Path:
    return Path(os.environ["HF_HUB_CACHE"])


@pytest.mark.parametrize(
    "ref, want",
    [
        ("hf:org/Repo-GGUF:q4_k_m", HubRef("org/Repo-GGUF", "Q4_K_M")),
        ("org/Repo-GGUF:Q8_0", HubRef("org/Repo-GGUF", "Q8_0")),
        ("hf.co/org/Repo-GGUF:UD-IQ3_XXS", HubRef("org/Repo-GGUF", "UD-IQ3_XXS")),
        ("huggingface.co/org/Repo-GGUF", HubRef("org/Repo-GGUF", None)),
        ("org/Repo-GGUF", HubRef("org/Repo-GGUF", None)),
        ("qwen3.6-27b", None),
        ("models/x.gguf", None),
        ("./org/repo", None),
    ],
)
def test_references_as_llama_cpp_and_ollama_write_them(ref, want):
    assert parse_hub_ref(ref) == want


def test_a_path_that_exists_is_not_a_hub_reference_and_a_bad_prefixed_one_is_an_error():
    assert parse_hub_ref("org/repo", path_exists=True) is None
    with pytest.raises(UsageError, match="Bad Hugging Face reference"):
        parse_hub_ref("hf:nothing")
    with pytest.raises(UsageError, match="Bad Hugging Face reference"):
        parse_hub_ref("hf.co/a/b/c")


def test_alias_found_in_the_hf_cache_without_any_llmtp_record(tmp_path):
    from huggingface_hub import try_to_load_from_cache

    link = put(_hf_cache(), REPO, "Qwen3.6-27B-Q4_K_M.gguf", _gguf_bytes(tmp_path, 1))
    # the layout is huggingface_hub's own: its cache API finds the file
    assert Path(try_to_load_from_cache(REPO, "Qwen3.6-27B-Q4_K_M.gguf", cache_dir=_hf_cache())) == link
    s = load_settings().settings
    for ref in ("qwen3.6-27b", "qwen3.6-27b:Q4_K_M", f"{REPO}:Q4_K_M", f"hf.co/{REPO}:Q4_K_M", f"hf:{REPO}:q4_k_m"):
        r = svc.resolve_model(ref, s)
        assert r.path == link and r.info.nextn_predict_layers == 1 and r.alias == "qwen3.6-27b", ref
    assert svc.resolve_model("qwen3.6-27b", s, quant="IQ4_XS").path is None  # another quant is not here
    assert svc.resolve_model("qwen3.6-27b:iq4_xs", s).quant == "IQ4_XS"
    rows = {r["alias"]: r for r in svc.list_models(s)}
    assert rows["qwen3.6-27b"]["local"] == ["Q4_K_M"]


def test_llama_cache_and_uncatalogued_repos_and_incomplete_splits(tmp_path, monkeypatch):
    llama = tmp_path / "llama-cache"
    monkeypatch.setenv("LLAMA_CACHE", str(llama))
    link = put(llama, "someone/Tiny-GGUF", "Tiny-Q8_0.gguf", _gguf_bytes(tmp_path, 0))
    s = load_settings().settings
    assert svc.resolve_model("someone/Tiny-GGUF:Q8_0", s).path == link
    assert svc.resolve_model("someone/Tiny-GGUF", s).path == link  # no quant: the one cached model
    put(_hf_cache(), "someone/Big-GGUF", "Big-Q4_K_M-00001-of-00002.gguf", _gguf_bytes(tmp_path, 0))
    with pytest.raises(UsageError, match="not downloaded"):
        svc.resolve_model("someone/Big-GGUF:Q4_K_M", s)  # one part of two is not a model


def test_plan_of_a_hub_reference_plans_the_quant_it_names():
    from llmtp.core.plan_types import GiB, PlanDevice, PlanHardware, PlanRequest
    from llmtp.services.serve.plan import plan_model

    hw = PlanHardware(
        gpus=[PlanDevice(name="GPU0", free_bytes=80 * GiB, bandwidth_gbps=2000)], ram_bytes=64 * GiB, backend="cuda"
    )
    s = load_settings().settings
    result = plan_model(f"hf:{REPO}:Q4_K_M", s, PlanRequest(ctx=16384), hw)
    assert result.plan.quant == "Q4_K_M" and not result.downloaded
    assert plan_model("qwen3.6-27b:Q4_K_M", s, PlanRequest(ctx=16384), hw).plan.quant == "Q4_K_M"
    assert plan_model("qwen3.6-27b", s, PlanRequest(ctx=16384), hw).plan.quant != "Q4_K_M"  # free choice: larger


def test_list_local_and_rm_say_what_is_there_and_what_is_freed(tmp_path):
    data = _gguf_bytes(tmp_path, 1)
    link = put(_hf_cache(), REPO, "Qwen3.6-27B-Q4_K_M.gguf", data)
    put(_hf_cache(), REPO, "Qwen3.6-27B-IQ4_XS.gguf", data + b"\0")
    put(_hf_cache(), "someone/Plain-GGUF", "Plain-Q8_0.gguf", _gguf_bytes(tmp_path, 0, "p.gguf"))
    cli = CliRunner()
    got = cli.invoke(app, ["models", "list", "--local", "--json"])
    assert got.exit_code == 0, got.output
    rows = {(r["alias"] or r["repo"], r["quant"]): r for r in json.loads(got.stdout)}
    assert set(rows) == {("qwen3.6-27b", "Q4_K_M"), ("qwen3.6-27b", "IQ4_XS"), ("someone/Plain-GGUF", "Q8_0")}
    q4 = rows[("qwen3.6-27b", "Q4_K_M")]
    assert q4["path"] == str(link) and q4["size_bytes"] == len(data) and q4["mtp"] == "yes"
    assert rows[("someone/Plain-GGUF", "Q8_0")]["mtp"] == "no"
    table = cli.invoke(app, ["models", "list", "--local"])
    assert table.exit_code == 0 and "qwen3.6-27b" in table.stdout and "Q4_K_M" in table.stdout

    ambiguous = cli.invoke(app, ["models", "rm", "qwen3.6-27b"])
    assert isinstance(ambiguous.exception, UsageError) and ambiguous.exception.exit_code == 2
    assert "IQ4_XS" in ambiguous.exception.message and link.exists()
    done = cli.invoke(app, ["models", "rm", "qwen3.6-27b:Q4_K_M", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["freed_bytes"] == len(data)
    blob = _hf_cache() / f"models--{REPO.replace('/', '--')}" / "blobs"
    assert not link.exists() and len(list(blob.iterdir())) == 1  # the IQ4_XS blob stays
    assert svc.resolve_model("qwen3.6-27b", load_settings().settings).path is None
    human = cli.invoke(app, ["models", "rm", "someone/Plain-GGUF:Q8_0"])
    assert human.exit_code == 0 and "freed" in human.stdout
    missing = cli.invoke(app, ["models", "rm", "someone/Plain-GGUF:Q8_0"])
    assert isinstance(missing.exception, UsageError) and "not on disk" in missing.exception.message


def test_hf_hub_offline_makes_no_network_call_and_uses_the_cache(tmp_path, monkeypatch):
    from fake_hub import FakeRepo

    with FakeHubServer({REPO: FakeRepo(sha="b" * 40)}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        s = load_settings().settings
        with pytest.raises(NetworkError, match="offline"):
            pulls.pull("qwen3.6-27b", s)
        r = svc.resolve_model("qwen3.6-27b", s)  # plan data without the hub: the catalog's sizes
        assert r.path is None and "offline" in (r.size_source or "")
        link = put(_hf_cache(), REPO, "Qwen3.6-27B-Q4_K_M.gguf", _gguf_bytes(tmp_path, 1))
        assert svc.resolve_model("qwen3.6-27b", s).path == link
        assert hub.requests == []


def test_inspect_takes_an_alias_or_hub_reference_on_disk(tmp_path):
    link = put(_hf_cache(), REPO, "Qwen3.6-27B-Q4_K_M.gguf", _gguf_bytes(tmp_path, 1))
    cli = CliRunner()
    for ref in ("qwen3.6-27b", f"hf.co/{REPO}:Q4_K_M"):
        got = cli.invoke(app, ["inspect", ref, "--json"])
        assert got.exit_code == 0, got.output
        assert json.loads(got.stdout)["nextn_predict_layers"] == 1
    missing = cli.invoke(app, ["inspect", "qwen3.6-27b:IQ4_XS"])
    assert isinstance(missing.exception, UsageError)
    link.unlink()
    gone = cli.invoke(app, ["inspect", "qwen3.6-27b"])
    assert "not downloaded" in gone.exception.message


def test_rm_never_deletes_outside_the_caches_and_llmtps_folders(tmp_path):
    from llmtp.adapters.files import write_json_atomic

    victim = tmp_path / "precious.gguf"
    victim.write_bytes(_gguf_bytes(tmp_path, 0, "v.gguf"))
    s = load_settings().settings
    write_json_atomic(
        Path(s.data_dir) / "models" / "pulled.json",
        {"hf:evil/Repo": {"Q8_0": {"path": str(victim), "files": [victim.name]}}},
    )
    got = CliRunner().invoke(app, ["models", "rm", "evil/Repo:Q8_0"])
    assert isinstance(got.exception, UsageError) and "outside llmtp's folders" in got.exception.message
    assert victim.is_file()
    # a snapshot link that points out of the cache: the link goes, its target stays
    link = put(_hf_cache(), "evil/Linked", "Linked-Q8_0.gguf", b"x")
    link.unlink()
    os.symlink(victim, link)
    done = CliRunner().invoke(app, ["models", "rm", "evil/Linked:Q8_0", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["freed_bytes"] == 0 and victim.is_file() and not link.is_symlink()


def test_the_fast_repo_read_agrees_with_huggingface_hubs_scan(tmp_path):
    from llmtp.adapters import hf_cache

    put(_hf_cache(), REPO, "Qwen3.6-27B-Q4_K_M.gguf", b"old", revision="1" * 40)
    put(_hf_cache(), REPO, "Qwen3.6-27B-Q4_K_M.gguf", b"newer", revision="2" * 40)  # refs/main -> 2...
    put(_hf_cache(), REPO, "sub/Qwen3.6-27B-BF16-00001-of-00002.gguf", b"a", revision="2" * 40)
    put(_hf_cache(), REPO, "README.md", b"r", revision="1" * 40, main=False)
    fast = hf_cache.repo_files(REPO)
    scanned = {f.name: f for f in hf_cache.all_gguf_files() if f.repo == REPO}
    assert {n: (f.path, f.size, f.revision) for n, f in fast.items() if n.endswith(".gguf")} == {
        n: (f.path, f.size, f.revision) for n, f in scanned.items()
    }
    assert fast["Qwen3.6-27B-Q4_K_M.gguf"].revision == "2" * 40 and "README.md" in fast


def test_cache_locations_follow_huggingface_hub_and_llama_cpp():
    from llmtp.adapters.hf_cache import cache_dirs, hub_cache_dir, hub_offline

    home = Path.home()
    assert hub_cache_dir({}) == home / ".cache" / "huggingface" / "hub"
    assert hub_cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/huggingface/hub")
    assert hub_cache_dir({"HF_HOME": "/h", "XDG_CACHE_HOME": "/x"}) == Path("/h/hub")
    assert hub_cache_dir({"HF_HUB_CACHE": "/c", "HF_HOME": "/h"}) == Path("/c")
    assert cache_dirs({"LLAMA_CACHE": "/l", "HF_HOME": "/h"}) == [Path("/l"), Path("/h/hub")]
    assert cache_dirs({"LLAMA_CACHE": "/h/hub", "HF_HOME": "/h"}) == [Path("/h/hub")]
    assert hub_offline({"HF_HUB_OFFLINE": "1"}) and hub_offline({"HF_HUB_OFFLINE": "true"})
    assert not hub_offline({"HF_HUB_OFFLINE": "0"}) and not hub_offline({})
