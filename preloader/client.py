"""A thin Ollama HTTP client: one method per endpoint, typed results, typed errors. No decisions here.

Every call goes through `_request`, the single place that turns `requests` outcomes into our errors.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from preloader import __version__
from preloader.errors import OllamaError, OllamaResponseError, OllamaTimeout, OllamaUnreachable

NANOSECONDS = 1e9
_log = logging.getLogger(__name__)

# (connect, read) timeouts: connecting to a live server is instant, so a short connect timeout is safe even
# for requests whose answer may take many minutes (loads).
Timeout = tuple[float, float]


@dataclass(frozen=True)
class ModelInfo:
    """What `/api/show` says a model can do."""

    capabilities: tuple[str, ...] | None  # None: the server predates the field (< 0.6.4)
    model_info: Mapping[str, Any]

    @property
    def embedding_only(self) -> bool:
        if self.capabilities is not None:
            return "embedding" in self.capabilities and "completion" not in self.capabilities
        # Old servers: an embedding model's GGUF declares a pooling type; that is what Ollama itself checks.
        return any(key.endswith(".pooling_type") for key in self.model_info)


@dataclass(frozen=True)
class WarmResult:
    """The answer to a generate or embed request. Durations in seconds; None when the server left them out."""

    load_seconds: float | None


@dataclass(frozen=True)
class RunningModel:
    """One entry of `/api/ps`."""

    name: str
    size: int
    size_vram: int
    expires_at: datetime | None
    context_length: int | None = None


@dataclass(frozen=True)
class PullProgress:
    status: str
    total: int | None = None
    completed: int | None = None


class OllamaClient:
    def __init__(self, base_url: str, *, api_key: str | None = None, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self._session = session or _session_for(self.base_url)
        self._session.headers["User-Agent"] = f"ollama-preloader/{__version__}"
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"

    def close(self) -> None:
        self._session.close()

    def version(self, *, timeout: Timeout) -> str:
        return str(self._json("GET", "/api/version", timeout=timeout).get("version", "unknown"))

    def show(self, model: str, *, timeout: Timeout) -> ModelInfo:
        body = self._json("POST", "/api/show", {"model": model}, timeout=timeout)
        capabilities = body.get("capabilities")
        return ModelInfo(
            capabilities=tuple(capabilities) if isinstance(capabilities, list) else None,
            model_info=body.get("model_info") or {},
        )

    def generate(
        self,
        model: str,
        *,
        prompt: str,
        options: Mapping[str, Any],
        keep_alive: int | str | None,
        think: bool | str | None,
        raw: bool = False,
        timeout: Timeout,
    ) -> WarmResult:
        payload: dict[str, Any] = {"model": model, "prompt": prompt, "stream": False, "options": dict(options)}
        if raw:
            payload["raw"] = True
        if keep_alive is not None:
            payload["keep_alive"] = keep_alive
        if think is not None:
            payload["think"] = think
        return _warm_result(self._json("POST", "/api/generate", payload, timeout=timeout))

    def embed(
        self,
        model: str,
        *,
        input: str,
        options: Mapping[str, Any],
        keep_alive: int | str | None,
        timeout: Timeout,
    ) -> WarmResult:
        payload: dict[str, Any] = {"model": model, "input": input}
        if options:
            payload["options"] = dict(options)
        if keep_alive is not None:
            payload["keep_alive"] = keep_alive
        return _warm_result(self._json("POST", "/api/embed", payload, timeout=timeout))

    def ps(self, *, timeout: Timeout) -> list[RunningModel]:
        body = self._json("GET", "/api/ps", timeout=timeout)
        return [_running_model(item) for item in body.get("models") or []]

    def pull(self, model: str, *, timeout: Timeout) -> Iterator[PullProgress]:
        """Stream pull progress. A failure after the stream started arrives as an `error` line in a 200."""
        url = self.base_url + "/api/pull"
        with self._request("POST", "/api/pull", {"model": model, "stream": True}, timeout=timeout, stream=True) as r:
            try:
                for line in r.iter_lines():
                    if not line:
                        continue
                    item = json.loads(line)
                    if "error" in item:
                        raise OllamaResponseError(str(item["error"]), status=r.status_code, url=url, in_stream=True)
                    yield PullProgress(str(item.get("status", "")), item.get("total"), item.get("completed"))
            except requests.RequestException as exc:
                raise _transport_error(exc, url, timeout) from exc

    def _json(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None, *, timeout: Timeout
    ) -> dict[str, Any]:
        response = self._request(method, path, payload, timeout=timeout)
        try:
            body = response.json()
        except ValueError as exc:
            raise OllamaError(
                f"{path} answered HTTP {response.status_code} with a body that is not JSON: {response.text[:200]!r}",
                url=response.url,
            ) from exc
        return body if isinstance(body, dict) else {}

    def _request(
        self,
        method: str,
        path: str,
        payload: Mapping[str, Any] | None = None,
        *,
        timeout: Timeout,
        stream: bool = False,
    ) -> requests.Response:
        url = self.base_url + path
        _log.debug("%s %s %s", method, path, json.dumps(payload) if payload is not None else "")
        try:
            response = self._session.request(method, url, json=payload, timeout=timeout, stream=stream)
        except requests.RequestException as exc:
            raise _transport_error(exc, url, timeout) from exc
        if response.status_code >= 400:
            raise OllamaResponseError(_error_text(response), status=response.status_code, url=url)
        return response


def _session_for(base_url: str) -> requests.Session:
    """A session with the environment's proxy and CA settings resolved once, for our single server.

    requests otherwise rescans the whole environment (proxies, NO_PROXY, CA bundles, ~/.netrc) on every
    request; profiling showed that as the largest cost of our own per model. Same semantics, paid once.
    """
    session = requests.Session()
    session.proxies = requests.utils.get_environ_proxies(base_url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    return session


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    # A reverse proxy or Ollama's Host-header guard (403, empty body) answers without Ollama's JSON.
    return response.text.strip()[:200] or response.reason or "no error text"


def _transport_error(exc: requests.RequestException, url: str, timeout: Timeout) -> OllamaError:
    if isinstance(exc, requests.ConnectTimeout):
        return OllamaTimeout(f"no connection to {url} within {timeout[0]:g} s", url=url, timeout=timeout[0])
    if isinstance(exc, (requests.ReadTimeout, requests.Timeout)):
        return OllamaTimeout(f"{url} did not answer within {timeout[1]:g} s", url=url, timeout=timeout[1])
    if isinstance(exc, requests.ConnectionError):
        return OllamaUnreachable(f"cannot reach {url}: {_root_cause(exc)}", url=url)
    return OllamaError(f"request to {url} failed: {exc}", url=url)


def _root_cause(exc: BaseException) -> str:
    """The innermost reason (`Connection refused`), not urllib3's three layers of wrapping."""
    text = str(exc)
    for marker in (
        "Connection refused",
        "Connection reset",
        "Name or service not known",
        "Temporary failure in name resolution",
        "Remote end closed connection",
        "Connection aborted",
        "No route to host",
    ):
        if marker in text:
            return marker.lower()
    return text[:200]


def _seconds(value: Any) -> float | None:
    return value / NANOSECONDS if isinstance(value, (int, float)) else None


def _warm_result(body: Mapping[str, Any]) -> WarmResult:
    return WarmResult(
        load_seconds=_seconds(body.get("load_duration")),
    )


def _running_model(item: Mapping[str, Any]) -> RunningModel:
    return RunningModel(
        name=str(item.get("name") or item.get("model") or ""),
        size=int(item.get("size") or 0),
        size_vram=int(item.get("size_vram") or 0),
        expires_at=parse_timestamp(item.get("expires_at")),
        context_length=item.get("context_length"),
    )


def parse_timestamp(value: Any) -> datetime | None:
    """RFC 3339 with Go's nanoseconds (Python keeps microseconds).

    >>> parse_timestamp("2318-09-13T21:26:43.305574107-06:00").year
    2318
    """
    if not isinstance(value, str) or not value:
        return None
    text = value.replace("Z", "+00:00")
    main, dot, rest = text.partition(".")
    if dot:
        digits = len(rest) - len(rest.lstrip("0123456789"))
        text = f"{main}.{rest[: min(digits, 6)].ljust(6, '0')}{rest[digits:]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
