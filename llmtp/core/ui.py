"""The web UI a build embeds: which way to get it (prebuilt assets, npm, none), its CMake options,
and what the build tree and log say it got. Pure: callers probe the bucket and Node.js."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel

from llmtp.core.profiles import cmake_on
from llmtp.errors import UsageError

UiMode = Literal["auto", "on", "off"]
UiHow = Literal["prebuilt", "npm"]

# tools/ui/package.json of the pinned source: vite 7 and svelte-kit 2 need Node.js 20 or newer.
NODE_MIN_MAJOR = 20
# Where scripts/ui-assets.cmake fetches prebuilt assets (LLAMA_UI_HF_BUCKET's default in tools/ui/CMakeLists.txt);
# the .sha256 is the small file it asks for first.
BUCKET_URL = "https://huggingface.co/buckets/ggml-org/llama-ui/resolve/{version}/dist.tar.gz.sha256?download=true"
NO_UI_HINT = (
    "For the UI: install Node.js >= 20 with npm (e.g. apt install nodejs npm, or nodejs.org) and build "
    "again with `llmtp build --ui`, or build on a machine that reaches huggingface.co."
)


class UiPlan(BaseModel):
    """How this build gets its web UI. `how` None: no UI, `reason` says why."""

    mode: UiMode
    how: UiHow | None = None
    reason: str | None = None


class UiRecord(BaseModel):
    """What a build's manifest records about its UI. `embedded` None: not known (an older build)."""

    mode: UiMode
    how: UiHow | None = None
    embedded: bool | None = None
    served: bool | None = None  # GET / answered the UI page when the build was probed (None: not checked)
    note: str | None = None  # why there is none, or what failed


def node_major(version_output: str) -> int | None:
    """`node --version` prints `v20.20.2` -> 20; None when it does not parse."""
    m = re.search(r"v?(\d+)\.\d+", version_output)
    return int(m.group(1)) if m else None


def choose_ui(mode: UiMode, *, bucket_ok: bool | None, node_version: int | None, npm: bool) -> UiPlan:
    """Prebuilt assets when the bucket answers, else an npm build when Node.js >= 20 and npm are here,
    else none. `bucket_ok` None: not asked (offline). Mode "on" refuses to build without a way."""
    if mode == "off":
        return UiPlan(mode=mode, reason="turned off (--no-ui or the build_ui setting)")
    if bucket_ok:
        return UiPlan(mode=mode, how="prebuilt")
    if npm and node_version is not None and node_version >= NODE_MIN_MAJOR:
        return UiPlan(mode=mode, how="npm")
    bucket = (
        "the upstream prebuilt UI bucket was not asked (offline)"
        if bucket_ok is None
        else "the upstream prebuilt UI bucket (huggingface.co) did not answer"
    )
    if node_version is None:
        node = "no Node.js on PATH"
    elif node_version < NODE_MIN_MAJOR:
        node = f"Node.js {node_version} is older than {NODE_MIN_MAJOR}"
    else:
        node = "Node.js has no npm on PATH"
    reason = f"{bucket} and {node}"
    if mode == "on":
        raise UsageError(f"--ui asked for the web UI but there is no way to get it: {reason}", NO_UI_HINT)
    return UiPlan(mode=mode, reason=reason)


def ui_cmake_options(how: UiHow | None) -> dict[str, str]:
    """Options on top of the profile's, which turn both ways off. None adds nothing, so a build
    without the UI keeps the inputs hash it had before llmtp knew about the UI."""
    if how == "prebuilt":
        return {"LLAMA_USE_PREBUILT_UI": "ON", "LLAMA_BUILD_UI": "OFF"}
    if how == "npm":
        return {"LLAMA_USE_PREBUILT_UI": "OFF", "LLAMA_BUILD_UI": "ON"}
    return {}


def ui_how_from_options(options: dict[str, str]) -> UiHow | None:
    """What the effective options ask for (a --cmake-arg may have set them by hand)."""
    on = {k: cmake_on(options.get(k)) for k in ("LLAMA_BUILD_UI", "LLAMA_USE_PREBUILT_UI")}
    if on["LLAMA_BUILD_UI"]:
        return "npm"
    if on["LLAMA_USE_PREBUILT_UI"]:
        return "prebuilt"
    return None


def ui_header_has_assets(ui_h: str) -> bool:
    """tools/ui/ui.h as scripts/ui-assets.cmake writes it: `#define LLAMA_UI_HAS_ASSETS 1` when it
    embedded assets, `/* #undef LLAMA_UI_HAS_ASSETS */` when not."""
    return re.search(r"^#define LLAMA_UI_HAS_ASSETS 1\b", ui_h, re.M) is not None


def ui_log_lines(log: str, limit: int = 8) -> list[str]:
    """The `UI: ...` lines of a build log, the last `limit` of them. scripts/ui-assets.cmake reports every
    step so (`-- UI: npm ci failed (1)`, `-- UI: embedded 0 assets`), its warnings indented:
    `  UI: no assets available - building without an embedded UI.  In a`."""
    lines = [m.group(1).strip() for m in re.finditer(r"^\s*(?:-- )?(UI: .*)$", log, re.M)]
    return lines[-limit:]


def ui_url(base_url: str) -> str:
    """llama-server serves the UI at its root."""
    return base_url.rstrip("/") + "/"


def looks_like_ui(status: int, content_type: str | None, body: str) -> bool:
    """GET / of a server with the UI: 200, text/html, and the page's own markup."""
    return status == 200 and (content_type or "").startswith("text/html") and "<html" in body.lower()


def ui_record(plan: UiPlan, embedded: bool, log_lines: list[str]) -> UiRecord:
    """The manifest's record after the compile: a UI that was planned but not embedded keeps the
    log's own words for why."""
    note = plan.reason
    if plan.how is not None and not embedded:
        note = (
            "the "
            + plan.how
            + " step gave no assets, so the server was built without the UI: "
            + ("; ".join(log_lines[-3:]) or "the build log says nothing more")
        )
    return UiRecord(mode=plan.mode, how=plan.how if embedded else None, embedded=embedded, note=note)


def address_lines(addr: dict, api_key_file: str | None = None) -> list[str]:
    """The lines serve, status and setup print under a server (one wording for all three)."""
    lines = [f"OpenAI base URL: {addr['openai_base_url']}"]
    if addr.get("ui_url"):
        ask = f" (it asks for the API key: paste a key from {api_key_file})" if addr.get("ui_asks_for_key") else ""
        lines.append(f"web UI: {addr['ui_url']}{ask}")
    else:
        lines.append("web UI: none (this build has none or it is turned off; `llmtp build --ui` builds one)")
    return lines
