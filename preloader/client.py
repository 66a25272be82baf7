"""A thin Ollama HTTP client: one method per endpoint, typed results, typed errors. No decisions here.

Every call goes through `_request`, the single place that turns `requests` outcomes into our errors.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from preloader import __version__
from preloader.errors import OllamaBadResponse, OllamaError, OllamaResponseError, OllamaTimeout, OllamaUnreachable

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
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        proxy: str | None = None,
        session: requests.Session | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        self._session = session or _session_for(proxy)
        self._session.headers["User-Agent"] = f"ollama-preloader/{__version__}"
        if api_key:
            self._session.headers["Authorization"] = f"Bearer {api_key}"
        # A proxy or server may echo what it was sent; no message of ours may carry a secret onward.
        self._secrets = [secret for secret in (api_key, _password(proxy)) if secret]

    def close(self) -> None:
        self._session.close()

    def version(self, *, timeout: Timeout) -> str:
        version = self._json("GET", "/api/version", timeout=timeout).get("version")
        return version if isinstance(version, str) and version else "unknown"

    def show(self, model: str, *, timeout: Timeout) -> ModelInfo:
        url = self.base_url + "/api/show"
        body = self._json("POST", "/api/show", {"model": model}, timeout=timeout)
        capabilities = body.get("capabilities")
        model_info = body.get("model_info")
        if capabilities is not None and not _strings(capabilities):
            raise _malformed("/api/show", "capabilities", "a list of strings", capabilities, url)
        if model_info is not None and not isinstance(model_info, dict):
            raise _malformed("/api/show", "model_info", "an object", model_info, url)
        return ModelInfo(
            capabilities=tuple(capabilities) if capabilities is not None else None,
            model_info=model_info or {},
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
        url = self.base_url + "/api/ps"
        models = self._json("GET", "/api/ps", timeout=timeout).get("models")
        if models is None:
            return []
        if not isinstance(models, list):
            raise _malformed("/api/ps", "models", "a list", models, url)
        return [_running_model(item, url) for item in models]

    def pull(self, model: str, *, timeout: Timeout) -> Iterator[PullProgress]:
        """Stream pull progress. A failure after the stream started arrives as an `error` line in a 200."""
        url = self.base_url + "/api/pull"
        with self._request("POST", "/api/pull", {"model": model, "stream": True}, timeout=timeout, stream=True) as r:
            try:
                for line in r.iter_lines():
                    if not line:
                        continue
                    try:
                        item = json.loads(line)
                    except ValueError:
                        item = None
                    if not isinstance(item, dict):
                        raise OllamaBadResponse(
                            f"/api/pull sent a progress line that is not a JSON object: {_excerpt(line)}", url=url
                        )
                    if "error" in item:
                        error = self._scrub(str(item["error"]))
                        raise OllamaResponseError(error, status=r.status_code, url=url, in_stream=True)
                    yield PullProgress(
                        str(item.get("status", "")), _count(item.get("total")), _count(item.get("completed"))
                    )
            except requests.RequestException as exc:
                raise _transport_error(exc, url, timeout, self._scrub) from exc

    def _json(
        self, method: str, path: str, payload: Mapping[str, Any] | None = None, *, timeout: Timeout
    ) -> dict[str, Any]:
        response = self._request(method, path, payload, timeout=timeout)
        try:
            body = response.json()
        except ValueError:
            body = _NOT_JSON
        if not isinstance(body, dict):
            what = "a body that is not JSON" if body is _NOT_JSON else f"JSON that is not an object ({_kind(body)})"
            raise OllamaBadResponse(
                f"{path} answered HTTP {response.status_code} with {what}: {self._scrub(_excerpt(response.content))}; "
                "is OLLAMA_HOST an Ollama server?",
                url=self.base_url + path,
            )
        return body

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
            raise _transport_error(exc, url, timeout, self._scrub) from exc
        if response.status_code >= 400:
            raise OllamaResponseError(self._scrub(_error_text(response)), status=response.status_code, url=url)
        return response

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


_NOT_JSON = object()


def _session_for(proxy: str | None) -> requests.Session:
    """A session that reads nothing from the environment itself: the proxy was decided once, as Go decides
    it (`preloader.proxies`), and requests' own rules (ALL_PROXY, ~/.netrc) must not add to that."""
    session = requests.Session()
    session.proxies = {"http": proxy, "https": proxy} if proxy else {}
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    return session


def _password(proxy: str | None) -> str | None:
    if not proxy:
        return None
    try:
        return urlsplit(proxy).password
    except ValueError:
        return None


def _error_text(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    # A reverse proxy or Ollama's Host-header guard (403, empty body) answers without Ollama's JSON.
    return response.text.strip()[:200] or response.reason or "no error text"


def _transport_error(
    exc: requests.RequestException, url: str, timeout: Timeout, scrub: Callable[[str], str]
) -> OllamaError:
    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        counts = re.search(r"IncompleteRead\(([^()]*)\)", str(exc))
        detail = counts.group(1) if counts else scrub(_root_cause(exc))
        return OllamaBadResponse(
            f"the answer from {url} was cut off before its end ({detail})", url=url, incomplete=True
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        return OllamaUnreachable(f"cannot reach {url} through the proxy: {scrub(_root_cause(exc))}", url=url)
    if isinstance(exc, requests.ConnectTimeout):
        return OllamaTimeout(f"no connection to {url} within {timeout[0]:g} s", url=url, timeout=timeout[0])
    if isinstance(exc, (requests.ReadTimeout, requests.Timeout)):
        return OllamaTimeout(f"{url} did not answer within {timeout[1]:g} s", url=url, timeout=timeout[1])
    if isinstance(exc, requests.ConnectionError):
        return OllamaUnreachable(f"cannot reach {url}: {scrub(_root_cause(exc))}", url=url)
    return OllamaError(f"request to {url} failed: {scrub(str(exc))[:300]}", url=url)


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
    return value / NANOSECONDS if _number(value) and value >= 0 else None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _count(value: Any) -> int | None:
    return int(value) if _number(value) else None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")


def _excerpt(raw: bytes | str) -> str:
    """A short, printable piece of a body for a message: never the whole of it, never raw control bytes."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return repr(text[:120]) + ("…" if len(text) > 120 else "")


def _malformed(path: str, field: str, wanted: str, value: Any, url: str) -> OllamaBadResponse:
    return OllamaBadResponse(
        f"{path} answered with {field} that is {_kind(value)}, not {wanted}; is OLLAMA_HOST an Ollama server?",
        url=url,
    )


def _warm_result(body: Mapping[str, Any]) -> WarmResult:
    return WarmResult(
        load_seconds=_seconds(body.get("load_duration")),
    )


def _running_model(item: Any, url: str) -> RunningModel:
    """One `/api/ps` entry, every field checked: a residency verdict must not rest on a misread answer."""
    if not isinstance(item, dict):
        raise _malformed("/api/ps", "a model entry", "an object", item, url)
    name = item.get("name") or item.get("model")
    if not isinstance(name, str) or not name:
        raise _malformed("/api/ps", "a model name", "a string", name, url)
    for field in ("size", "size_vram", "context_length"):
        value = item.get(field)
        if value is not None and not (_number(value) and value >= 0 and float(value).is_integer()):
            raise _malformed("/api/ps", f"{field} of {name}", "a whole number", value, url)
    expires_raw = item.get("expires_at")
    expires_at = parse_timestamp(expires_raw)
    if expires_raw is not None and expires_at is None:
        raise OllamaBadResponse(
            f"/api/ps answered with an expires_at of {name} that is not an RFC 3339 time: {_excerpt(str(expires_raw))}",
            url=url,
        )
    context_length = item.get("context_length")
    return RunningModel(
        name=name,
        size=int(item.get("size") or 0),
        size_vram=int(item.get("size_vram") or 0),
        expires_at=expires_at,
        context_length=int(context_length) if context_length is not None else None,
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
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None  # RFC 3339 always has an offset; a naive time misleads
