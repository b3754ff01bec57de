"""The web UI of a running llama-server: where it answers, checked with one GET / (the UI is there when
that serves its HTML page)."""

from __future__ import annotations


def addresses(base_url: str, api_key_file: str | None, ui_off: bool = False) -> dict:
    """Where a running server answers: the OpenAI base URL, and the web UI's address when GET / serves
    it (None: this build has no UI, or it was turned off). With an API key the UI asks for it."""
    from llmtp.adapters.http import get_page
    from llmtp.core.ui import looks_like_ui, ui_url

    page = None if ui_off else get_page(base_url, "/", timeout=5.0)
    has_ui = page is not None and looks_like_ui(*page)
    return {"openai_base_url": base_url.rstrip("/") + "/v1", "ui_url": ui_url(base_url) if has_ui else None,
            "ui_asks_for_key": has_ui and api_key_file is not None}
