"""What the client makes of answers that are not what an endpoint promises: typed errors, transient or not."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from preloader.client import OllamaClient
from preloader.errors import OllamaBadResponse, OllamaError, OllamaResponseError
from preloader.retries import is_transient

URL = "http://127.0.0.1:11434"
TIMEOUT = (1.0, 1.0)


class Canned(BaseAdapter):
    """Answers every request with one status and body, or raises one requests error."""

    def __init__(self, body: bytes = b"", status: int = 200, error: Exception | None = None) -> None:
        super().__init__()
        self.body, self.status, self.error = body, status, error
        self.sent: list[requests.PreparedRequest] = []
        self.proxies: list[Any] = []

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(request)
        self.proxies.append(kwargs.get("proxies"))
        if self.error is not None:
            raise self.error
        response = requests.Response()
        response.status_code, response._content, response.url = self.status, self.body, request.url or ""
        response.headers["Content-Type"] = "application/json; charset=utf-8"
        response.encoding = None
        return response

    def close(self) -> None:
        pass


def client_answering(adapter: Canned, **kwargs: Any) -> OllamaClient:
    session = requests.Session()
    session.mount("http://", adapter)
    return OllamaClient(URL, session=session, **kwargs)


def ps_body(**fields: Any) -> bytes:
    entry = {"name": "m:latest", "size": 10, "size_vram": 0, "expires_at": "2318-09-13T21:26:43.3Z", **fields}
    return json.dumps({"models": [entry]}).encode()


@pytest.mark.parametrize(
    ("call", "body", "fragment"),
    [
        ("version", b"<html>proxy login</html>", "not JSON"),
        ("version", b"[1, 2]", "not an object (an array)"),
        ("version", b'"0.11.4"', "not an object (a string)"),
        ("show", b'{"capabilities": "completion"}', "capabilities"),
        ("show", b'{"capabilities": [1]}', "capabilities"),
        ("show", b'{"model_info": ["general.architecture"]}', "model_info"),
        ("generate", b"not json at all", "not JSON"),
        ("generate", b"null", "not an object (null)"),
        ("ps", b'{"models": {}}', "models"),
        ("ps", b'{"models": ["m:latest"]}', "model entry"),
        ("ps", ps_body(size="big"), "size of m:latest"),
        ("ps", ps_body(size_vram=-1), "size_vram"),
        ("ps", ps_body(context_length=True), "context_length"),
        ("ps", ps_body(name=7), "model name"),
        ("ps", ps_body(expires_at="yesterday"), "expires_at"),
        ("ps", ps_body(expires_at="2026-01-01T00:00:00"), "expires_at"),  # no offset: not RFC 3339
    ],
)
def test_a_complete_answer_of_the_wrong_shape_is_a_bad_response_that_is_not_retried(
    call: str, body: bytes, fragment: str
) -> None:
    client = client_answering(Canned(body))
    calls = {
        "version": lambda: client.version(timeout=TIMEOUT),
        "show": lambda: client.show("m", timeout=TIMEOUT),
        "generate": lambda: client.generate("m", prompt="Hi", options={}, keep_alive=None, think=None, timeout=TIMEOUT),
        "ps": lambda: client.ps(timeout=TIMEOUT),
    }
    with pytest.raises(OllamaBadResponse) as caught:
        calls[call]()
    assert fragment in str(caught.value)
    assert not caught.value.incomplete and not is_transient(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        requests.exceptions.ChunkedEncodingError("IncompleteRead(20 bytes read, 20 more expected)"),
        requests.exceptions.ContentDecodingError("truncated gzip"),
    ],
)
def test_an_answer_cut_off_mid_body_is_a_transient_bad_response(error: Exception) -> None:
    client = client_answering(Canned(error=error))
    with pytest.raises(OllamaBadResponse) as caught:
        client.generate("m", prompt="Hi", options={}, keep_alive=None, think=None, timeout=TIMEOUT)
    assert caught.value.incomplete and is_transient(caught.value)


@pytest.mark.parametrize(
    ("body", "models"),
    [
        (b'{"models": null}', []),
        (b"{}", []),
        (ps_body(), [("m:latest", 10, 0)]),
        (ps_body(size=10.0, context_length=4096), [("m:latest", 10, 0)]),
    ],
)
def test_well_formed_ps_answers_are_read(body: bytes, models: list[tuple[str, int, int]]) -> None:
    running = client_answering(Canned(body)).ps(timeout=TIMEOUT)
    assert [(model.name, model.size, model.size_vram) for model in running] == models


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'{"error": "bad key sk-hunter2"}', 401),
        (b"upstream refused Bearer sk-hunter2", 502),
    ],
)
def test_a_server_or_proxy_echoing_the_api_key_never_gets_it_into_our_messages(body: bytes, status: int) -> None:
    client = client_answering(Canned(body, status=status), api_key="sk-hunter2")
    with pytest.raises(OllamaResponseError) as caught:
        client.version(timeout=TIMEOUT)
    assert "sk-hunter2" not in str(caught.value) and "***" in str(caught.value)


def test_a_transport_error_naming_the_proxy_password_never_carries_it() -> None:
    error = requests.exceptions.ProxyError("Unable to connect to proxy http://u:hunter2@proxy:3128")
    client = client_answering(Canned(error=error), proxy="http://u:hunter2@proxy:3128")
    with pytest.raises(OllamaError) as caught:
        client.version(timeout=TIMEOUT)
    assert "hunter2" not in str(caught.value) and is_transient(caught.value)


def test_the_session_reads_no_proxy_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    adapter = Canned(b'{"version": "0.11.4"}')
    client = OllamaClient("http://ollama:11434")  # its own session, as the CLI builds it
    client._session.mount("http://", adapter)
    assert client.version(timeout=TIMEOUT) == "0.11.4"
    assert adapter.proxies == [{}]


def test_the_session_uses_exactly_the_proxy_it_was_given() -> None:
    adapter = Canned(b'{"version": "0.11.4"}')
    client = OllamaClient("http://ollama:11434", proxy="http://proxy:3128")
    client._session.mount("http://", adapter)
    client.version(timeout=TIMEOUT)
    assert adapter.proxies == [{"http": "http://proxy:3128", "https": "http://proxy:3128"}]
