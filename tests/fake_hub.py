"""A fake Hugging Face hub on 127.0.0.1 (a thread) speaking the parts of the hub's HTTP API that
huggingface_hub and llmtp use: model_info with and without files_metadata (blobs=True), per
revision, 404 with X-Error-Code for an unknown repo, and ranged GETs of /{repo}/resolve/{rev}/{path}.

Listed sizes are whatever the test says (the public figures); the bytes served for a file are a
small GGUF header the test writes, so a range read of the header works without 17 GB behind it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from urllib.parse import unquote, urlparse

from local_http import LocalHTTPServer


@dataclass
class FakeFile:
    size: int  # listed bytes
    body: bytes = b""  # what a GET returns (a GGUF header, or nothing)
    exact: bool = False  # the body is the whole file: listed with its real sha256 (huggingface_hub downloads it)


@dataclass
class FakeRepo:
    sha: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    gated: bool = False  # lists its files to anyone, serves them only with a token (like Gemma's)


class FakeHubServer(LocalHTTPServer):
    def __init__(self, repos: dict[str, FakeRepo]):
        self.repos = repos
        self.requests: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def _json(self, code: int, data, headers: dict[str, str] | None = None) -> None:
                body = json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def _not_found(self, what: str, code: str = "RepoNotFound") -> None:
                self._json(
                    404, {"error": f"{what} not found"}, {"X-Error-Code": code, "X-Error-Message": f"{what} not found"}
                )

            def do_GET(self):  # noqa: N802 - http.server's name
                url = urlparse(self.path)
                path = unquote(url.path)
                hub.requests.append(self.command + " " + self.path)
                m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
                if m:
                    return self._model_info(m.group(1), m.group(2), "blobs=" in (url.query or ""))
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if m:
                    return self._resolve(m.group(1), m.group(2), m.group(3))
                self._not_found(path)

            def _model_info(self, repo_id: str, revision: str | None, blobs: bool) -> None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._not_found(f"Repository {repo_id}")
                if revision not in (None, "main", repo.sha):
                    return self._not_found(f"Revision {revision}", "RevisionNotFound")
                siblings = []
                for name, f in repo.files.items():
                    s: dict = {"rfilename": name}
                    if blobs:
                        sha = hashlib.sha256(f.body if f.exact else name.encode()).hexdigest()
                        s.update(
                            {
                                "size": f.size,
                                "blobId": sha[:40],
                                "lfs": {"size": f.size, "sha256": sha, "pointerSize": 135},
                            }
                        )
                    siblings.append(s)
                self._json(
                    200,
                    {
                        "_id": "x",
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": repo.sha,
                        "private": False,
                        "gated": False,
                        "disabled": False,
                        "downloads": 0,
                        "likes": 0,
                        "tags": ["gguf"],
                        "siblings": siblings,
                    },
                )

            def do_HEAD(self):  # noqa: N802 - hf_hub_download asks for the commit, etag and size first
                path = unquote(urlparse(self.path).path)
                hub.requests.append(self.command + " " + self.path)
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                repo = hub.repos.get(m.group(1)) if m else None
                f = repo.files.get(m.group(3)) if repo is not None and m else None
                if f is None or repo is None or m.group(2) not in ("main", repo.sha):
                    self.send_response(404)
                    self.send_header("X-Error-Code", "EntryNotFound" if repo is not None else "RepoNotFound")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(f.body)))
                self.send_header("ETag", '"' + hashlib.sha256(f.body).hexdigest() + '"')
                self.send_header("X-Repo-Commit", repo.sha)
                self.end_headers()

            def _resolve(self, repo_id: str, revision: str, name: str) -> None:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    return self._not_found(f"Repository {repo_id}")
                if repo.gated and not self.headers.get("Authorization"):
                    return self._json(
                        401,
                        {"error": "Access to this model is restricted"},
                        {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model is restricted"},
                    )
                f = repo.files.get(name)
                if f is None or revision not in ("main", repo.sha):
                    return self._not_found(f"Entry {name}", "EntryNotFound")
                body = f.body
                rng = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if rng:
                    start = int(rng.group(1))
                    end = min(int(rng.group(2)) if rng.group(2) else len(body) - 1, len(body) - 1)
                    part = body[start : end + 1]
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{start + len(part) - 1}/{len(body)}")
                else:
                    part = body
                    self.send_response(200)
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                self.wfile.write(part)

        super().__init__(Handler)

    @property
    def endpoint(self) -> str:
        return self.base
