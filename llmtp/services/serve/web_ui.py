"""The web UI of a llama-server, checked with one GET / (the UI is there when that serves its HTML page):
where a running server answers, and whether a new build serves it (the build's probe)."""

from __future__ import annotations

from pathlib import Path

from llmtp.core.ui import looks_like_ui, ui_url


def addresses(base_url: str, api_key_file: str | None, ui_off: bool = False) -> dict:
    """Where a running server answers: the OpenAI base URL, and the web UI's address when GET / serves
    it (None: this build has no UI, or it was turned off). With an API key the UI asks for it."""
    from llmtp.adapters.http import get_page

    page = None if ui_off else get_page(base_url, "/", timeout=5.0)
    has_ui = page is not None and looks_like_ui(*page)
    return {
        "openai_base_url": base_url.rstrip("/") + "/v1",
        "ui_url": ui_url(base_url) if has_ui else None,
        "ui_asks_for_key": has_ui and api_key_file is not None,
    }


def probe_served_ui(server: Path, caps) -> bool | None:
    """Whether a freshly built llama-server serves the UI: GET / of it started in router mode with no
    model (adapters/server_process.router_root_page; about 0.1-0.8 s). None when it cannot tell: a binary
    without router mode (`--models-dir`), or one that did not come up."""
    from llmtp.adapters.server_process import router_root_page

    if not caps.accepts("--models-dir"):
        return None
    page = router_root_page(server)
    return None if page is None else looks_like_ui(*page)
