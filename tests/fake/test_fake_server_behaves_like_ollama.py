"""The fake's own knobs: what a real server cannot be made to do on demand.

What the fake shares with real Ollama is pinned by `tests/contract/` (run on the fake and on every real
version); these tests cover only the faults and hooks the other tests inject through it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from testkit.fake_ollama import BUSY_ERROR, FakeOllama


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    with FakeOllama() as server:
        server.add_model("llama3.2")
        yield server


def generate(fake: FakeOllama, body: dict[str, Any] | None = None, **kw: Any) -> requests.Response:
    return requests.post(fake.url + "/api/generate", json=body or {"model": "llama3.2"}, timeout=kw.pop("timeout", 5))


def ps_names(fake: FakeOllama) -> list[str]:
    return [m["name"] for m in requests.get(fake.url + "/api/ps", timeout=5).json()["models"]]


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [(503, None, BUSY_ERROR), (499, None, "request canceled"), (500, "boom", "boom")],
)
def test_fail_answers_the_next_requests_to_that_path_then_recovers(
    fake: FakeOllama, status: int, error: str | None, expected: str
) -> None:
    fake.fail("/api/generate", status, error, times=2)
    results = [generate(fake) for _ in range(3)]
    assert [r.status_code for r in results] == [status, status, 200]
    assert results[0].json() == {"error": expected}
    assert len(fake.requests_to("/api/generate")) == 3


def test_fail_with_a_raw_body_sends_a_200_that_is_not_json(fake: FakeOllama) -> None:
    fake.fail("/api/ps", 200, raw_body=b"<html>proxy login</html>")
    r = requests.get(fake.url + "/api/ps", timeout=5)
    assert r.status_code == 200 and r.text == "<html>proxy login</html>"
    with pytest.raises(ValueError):
        r.json()


def test_truncate_promises_a_whole_json_body_then_closes_half_way(fake: FakeOllama) -> None:
    fake.truncate("/api/generate")
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=5)
    conn.request("POST", "/api/generate", body=json.dumps({"model": "llama3.2"}))
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    assert 0 < len(caught.value.partial) < int(response.headers["Content-Length"])
    conn.close()
    assert generate(fake).status_code == 200  # one time only


def test_reset_connection_drops_the_request_without_a_response(fake: FakeOllama) -> None:
    fake.reset_connection("/api/version")
    with pytest.raises(requests.ConnectionError):
        requests.get(fake.url + "/api/version", timeout=5)
    assert requests.get(fake.url + "/api/version", timeout=5).status_code == 200
    assert len(fake.requests_to("/api/version")) == 2


def test_a_load_error_is_a_500_with_its_text_after_the_load_delay_and_leaves_nothing_loaded(
    fake: FakeOllama,
) -> None:
    fake.add_model("broken", load_delay=0.2, load_error="model requires more system memory")
    start = time.monotonic()
    r = generate(fake, {"model": "broken"})
    assert time.monotonic() - start >= 0.2
    assert (r.status_code, r.json()) == (500, {"error": "model requires more system memory"})
    assert ps_names(fake) == [] and fake.load_count("broken") == 0


def test_loads_are_serialised_and_a_request_for_a_loading_model_does_not_reload(fake: FakeOllama) -> None:
    fake.add_model("m1", load_delay=0.2)
    fake.add_model("m2", load_delay=0.2)
    start = time.monotonic()
    threads = [threading.Thread(target=generate, args=(fake, {"model": m})) for m in ("m1", "m2", "m2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.monotonic() - start >= 0.4
    assert fake.load_count("m1") == fake.load_count("m2") == 1


def test_evict_drops_a_loaded_model_at_once(fake: FakeOllama) -> None:
    generate(fake, {"model": "llama3.2", "keep_alive": -1})
    assert fake.loaded()["llama3.2:latest"].keep_alive == float("inf")
    fake.evict("llama3.2")
    assert ps_names(fake) == [] and fake.loaded() == {}


def test_pull_streams_progress_and_creates_a_pullable_model_and_fails_in_the_stream_otherwise() -> None:
    with FakeOllama(pullable=["tinyllama"]) as fake:
        r = requests.post(fake.url + "/api/pull", json={"model": "tinyllama"}, timeout=5)
        lines = [json.loads(line) for line in r.text.splitlines()]
        assert r.headers["Content-Type"] == "application/x-ndjson"
        assert lines[0] == {"status": "pulling manifest"} and lines[-1] == {"status": "success"}
        assert any("completed" in line for line in lines) and fake.load_count("tinyllama") == 0
        assert requests.post(fake.url + "/api/show", json={"model": "tinyllama"}, timeout=5).status_code == 200
        missing = requests.post(fake.url + "/api/pull", json={"model": "nope"}, timeout=5)
        assert missing.status_code == 200
        assert [json.loads(line) for line in missing.text.splitlines()][-1] == {
            "error": "pull model manifest: file does not exist"
        }


def test_start_delay_refuses_connections_then_serves() -> None:
    with FakeOllama(start_delay=0.3) as fake:
        with pytest.raises(requests.ConnectionError):
            requests.get(fake.url, timeout=1)
        time.sleep(0.4)
        assert requests.get(fake.url, timeout=1).text == "Ollama is running"


def test_silent_for_accepts_connections_but_answers_only_afterwards() -> None:
    with FakeOllama(silent_for=0.4) as fake:
        socket.create_connection(("127.0.0.1", fake.port), timeout=1).close()
        with pytest.raises(requests.ReadTimeout):
            requests.get(fake.url, timeout=(1, 0.15))
        assert requests.get(fake.url, timeout=(1, 2)).text == "Ollama is running"


def test_a_client_hanging_up_mid_load_is_recorded_as_a_cancelled_load(fake: FakeOllama) -> None:
    fake.add_model("slow", load_delay=1.0)
    with pytest.raises(requests.ReadTimeout):
        generate(fake, {"model": "slow"}, timeout=(1, 0.2))
    deadline = time.monotonic() + 1
    while not fake.cancelled_loads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.cancelled_loads == ["slow:latest"] and fake.load_count("slow") == 0


def test_stop_is_prompt_with_a_load_hanging_and_frees_the_port() -> None:
    fake = FakeOllama().start()
    fake.add_model("forever", load_delay=60)
    worker = threading.Thread(target=lambda: _swallow(lambda: generate(fake, {"model": "forever"})))
    worker.start()
    time.sleep(0.1)
    start = time.monotonic()
    fake.stop()
    assert time.monotonic() - start < 1.5
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", fake.port), timeout=1):
        pass
    worker.join(timeout=2)
    assert fake.cancelled_loads == []  # a load cut short by shutdown is not a client hang-up


def _swallow(call: Any) -> None:
    with contextlib.suppress(requests.RequestException):
        call()
