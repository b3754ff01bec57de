"""A package index on 127.0.0.1 (a thread) speaking the simple API as PyPI does: PEP 691 JSON when
asked for it, PEP 503 HTML otherwise (or always, with json=False), files with their sha256; and
the same projects written as a file:// index (HTML pages, relative links, as local mirrors are)."""

from __future__ import annotations

import hashlib
import json
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from local_http import LocalHTTPServer


class FakeIndex(LocalHTTPServer):
    def __init__(self, projects: dict[str, dict[str, bytes]], *, json_api: bool = True):
        self.projects = projects  # normalized name -> {filename: bytes}
        self.requests: list[str] = []
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                index.requests.append(self.path)
                parts = [p for p in self.path.split("/") if p]
                if len(parts) == 3 and parts[0] == "files":
                    data = index.projects.get(parts[1], {}).get(parts[2])
                    return (
                        self._send(200, data, "application/octet-stream")
                        if data is not None
                        else self._send(404, b"no", "text/plain")
                    )
                if len(parts) == 2 and parts[0] == "simple" and parts[1] in index.projects:
                    files = index.projects[parts[1]]
                    if json_api and "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", ""):
                        body = json.dumps(
                            {
                                "meta": {"api-version": "1.0"},
                                "name": parts[1],
                                "files": [
                                    {
                                        "filename": n,
                                        "url": f"/files/{parts[1]}/{n}",
                                        "hashes": {"sha256": hashlib.sha256(d).hexdigest()},
                                    }
                                    for n, d in files.items()
                                ],
                            }
                        )
                        return self._send(200, body.encode(), "application/vnd.pypi.simple.v1+json")
                    return self._send(200, html_page(parts[1], files, "../../files").encode(), "text/html")
                self._send(404, b"not found", "text/plain")

        super().__init__(Handler)

    @property
    def url(self) -> str:
        return self.base + "/simple"


def html_page(project: str, files: dict[str, bytes], files_url: str) -> str:
    links = "\n".join(
        f'<a href="{files_url}/{project}/{n}#sha256={hashlib.sha256(d).hexdigest()}">{n}</a>' for n, d in files.items()
    )
    return f"<!DOCTYPE html><html><body>\n{links}\n</body></html>\n"


def write_file_index(root: Path, projects: dict[str, dict[str, bytes]]) -> str:
    """The projects as a file:// simple index (ROOT/simple/NAME/index.html, ROOT/files/NAME/FILE)."""
    for project, files in projects.items():
        page = root / "simple" / project / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(html_page(project, files, "../../files"))
        for n, d in files.items():
            (root / "files" / project).mkdir(parents=True, exist_ok=True)
            (root / "files" / project / n).write_bytes(d)
    return (root / "simple").as_uri()
