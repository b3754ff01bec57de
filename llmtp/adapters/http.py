"""HTTP client for one llama-server (httpx): health, props, slots, metrics, completion, chat stream;
one GET of a page (the web UI) or of a URL on the internet (the UI bucket)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from llmtp.core.metrics import parse_prometheus
from llmtp.errors import ConfigError, NetworkError


class LlamaClient:
    """Talks to llama-server's native endpoints. `api_key` goes in a header, never in a URL."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        model: str | None = None,
        autoload: bool = False,
    ):
        """`model`: one model of a router (llama-server with no model): every request names it, POST bodies by
        their `model`, GET requests by `?model=`; a GET loads it first only with `autoload` (a POST always)."""
        self.model, self._autoload = model, "true" if autoload else "false"
        # Bytes: llama-server compares the key byte for byte, and httpx would refuse non-ASCII text.
        headers = {"Authorization": f"Bearer {api_key}".encode()} if api_key else {}
        self.base_url = base_url.rstrip("/")
        # trust_env=False: a proxy from the environment must never sit between us and localhost.
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout, trust_env=False)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LlamaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def health(self, timeout: float | None = None) -> int | None:
        """HTTP status of /health (200 ready, 503 loading), or None when nothing answers."""
        try:
            kw = {} if timeout is None else {"timeout": timeout}
            return self._http.get("/health", **kw).status_code
        except httpx.HTTPError:
            return None

    def _get_json(self, path: str) -> Any:
        return self._request("GET", path).json()

    def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        if self.model is not None:
            if method == "GET":
                kw["params"] = {"model": self.model, "autoload": self._autoload, **(kw.get("params") or {})}
            elif isinstance(kw.get("json"), dict):
                kw["json"] = {"model": self.model, **kw["json"]}
        try:
            resp = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise self._network_error(path, exc) from exc
        self._check(resp, path)
        return resp

    def _network_error(self, path: str, exc: httpx.HTTPError) -> NetworkError:
        if isinstance(exc, httpx.TimeoutException):
            return NetworkError(
                f"llama-server at {self.base_url} did not answer {path} in time",
                "Check `llmtp status` and `llmtp logs`.",
            )
        return NetworkError(
            f"Cannot reach llama-server at {self.base_url}{path}: {exc}", "Is it running? See `llmtp status`."
        )

    def chat_stream(
        self, messages: list[dict[str, str]], *, max_tokens: int, temperature: float, timeout: float = 600.0
    ) -> Iterator[str]:
        """POST /v1/chat/completions with stream=true; yields the event-stream lines as they arrive
        (core.chat.parse_sse_line reads them). `timeout`: the longest wait for the next bytes."""
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature, "stream": True}
        path = "/v1/chat/completions"
        try:
            with self._http.stream("POST", path, json=body, timeout=timeout) as resp:
                if resp.status_code != 200:
                    resp.read()
                    self._check(resp, path)
                yield from resp.iter_lines()
        except httpx.HTTPError as exc:
            raise self._network_error(path, exc) from exc

    def _check(self, resp: httpx.Response, path: str) -> None:
        if resp.status_code in (401, 403):
            raise ConfigError(
                f"llama-server at {self.base_url} refused llmtp's API key ({resp.status_code} on {path})",
                "llmtp sends the first key of the server's --api-key-file; check that file (and "
                "that the server on this port is the one llmtp started), then restart the server.",
            )
        if resp.status_code != 200:
            raise NetworkError(
                f"llama-server answered {resp.status_code} on {path}: {resp.text[:200]}",
                "See `llmtp logs` for the server's side.",
            )

    def props(self) -> dict[str, Any]:
        return self._get_json("/props")

    def slots(self) -> list[dict[str, Any]]:
        return self._get_json("/slots")

    def metrics_text(self, model: str | None = None) -> str:
        """`model`: one model of a router (its `?model=`; never loads an unloaded one)."""
        params = {"model": model, "autoload": "false"} if model is not None else None
        return self._request("GET", "/metrics", params=params).text

    def metrics(self, model: str | None = None) -> dict[str, float]:
        """Prometheus values by name; needs --metrics on the server (501 without)."""
        return parse_prometheus(self.metrics_text(model))

    def unload(self, model: str) -> None:
        """A router's POST /models/unload: stop that model's llama-server (it loads again on its next request)."""
        self._request("POST", "/models/unload", json={"model": model})

    def models(self) -> list[dict[str, Any]]:
        """A router's GET /models `data`: each model's id and status (loaded, loading, unloaded, sleeping)."""
        return list(self._get_json("/models").get("data") or [])

    def completion(
        self,
        prompt: str,
        n_predict: int = 16,
        temperature: float = 0.0,
        seed: int | None = None,
        timeout: float | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """POST /completion (non-streaming); the answer includes `timings` (and draft_n with MTP)."""
        body: dict[str, Any] = {
            "prompt": prompt,
            "n_predict": n_predict,
            "temperature": temperature,
            "cache_prompt": False,
            **extra,
        }
        if seed is not None:
            body["seed"] = seed
        kw = {} if timeout is None else {"timeout": timeout}
        return self._request("POST", "/completion", json=body, **kw).json()


def url_answers(url: str, timeout: float) -> bool:
    """Whether `url` answers 200 within `timeout` seconds (a short look before a build depends on it).
    Proxies from the environment apply: this one is on the internet, not localhost."""
    try:
        resp = httpx.get(url, timeout=timeout, follow_redirects=True)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200


def get_page(base_url: str, path: str = "/", timeout: float = 10.0) -> tuple[int, str | None, str] | None:
    """(status, content type, body) of one GET to a local llama-server, None when nothing answers."""
    try:
        resp = httpx.get(base_url.rstrip("/") + path, timeout=timeout, trust_env=False)
    except httpx.HTTPError:
        return None
    return resp.status_code, resp.headers.get("content-type"), resp.text
