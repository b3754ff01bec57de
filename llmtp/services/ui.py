"""The web UI of a llama-server, checked with one GET / (the UI is there when that serves its HTML page):
where a running server answers, and whether a new build serves it (the build's probe)."""

from __future__ import annotations

from pathlib import Path


def addresses(base_url: str, api_key_file: str | None, ui_off: bool = False) -> dict:
    """Where a running server answers: the OpenAI base URL, and the web UI's address when GET / serves
    it (None: this build has no UI, or it was turned off). With an API key the UI asks for it."""
    from llmtp.adapters.http import get_page
    from llmtp.core.ui import looks_like_ui, ui_url

    page = None if ui_off else get_page(base_url, "/", timeout=5.0)
    has_ui = page is not None and looks_like_ui(*page)
    return {"openai_base_url": base_url.rstrip("/") + "/v1", "ui_url": ui_url(base_url) if has_ui else None,
            "ui_asks_for_key": has_ui and api_key_file is not None}


def probe_served_ui(server: Path, caps) -> bool | None:
    """Whether a freshly built llama-server serves the UI: started in router mode (no model, an empty
    models dir, loopback, a free port, its own HOME so it finds no cached model), one GET /, stopped.
    About 0.1 s. None when it cannot tell: a binary without router mode (`--models-dir`), or one that
    did not come up."""
    import tempfile

    from llmtp.adapters.http import get_page
    from llmtp.adapters.ports import free_port
    from llmtp.adapters.server_process import ServerProcess
    from llmtp.core.ui import looks_like_ui
    from llmtp.errors import ServeError

    if not caps.accepts("--models-dir"):
        return None
    with tempfile.TemporaryDirectory(prefix="llmtp-ui-probe-") as tmp:
        work = Path(tmp)
        (work / "models").mkdir()
        env = {"HOME": str(work), "XDG_CACHE_HOME": str(work / "cache"), "HF_HOME": str(work / "hf"),
               "LLAMA_CACHE": str(work / "cache")}  # on top of this environment (adapters/spawn.py)
        port = free_port()
        proc = ServerProcess([str(server), "--host", "127.0.0.1", "--port", str(port), "--models-dir",
                              str(work / "models")], log_path=work / "probe.log", host="127.0.0.1", port=port, env=env)
        try:
            proc.start().wait_ready(20)
            page = get_page(proc.base_url, "/", timeout=10.0)
        except ServeError:
            return None
        finally:
            proc.stop()
    return page is not None and looks_like_ui(*page)
