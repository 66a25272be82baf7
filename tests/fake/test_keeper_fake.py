"""The keeper (watch mode) and check mode against the stateful fake Ollama, in-process, with short intervals.

The keeper runs in its own thread exactly as in production (`Keeper.from_config`, the real client and
warmer); the readiness endpoints are real HTTP on a loopback port. Waits poll with deadlines: nothing hangs.
"""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from preloader.check import run_check
from preloader.client import OllamaClient
from preloader.config import load_config
from preloader.endpoints import Endpoints
from preloader.keeper import Keeper
from preloader.logs import EventLog
from preloader.metrics import keeper_registry
from testkit.fake_ollama import FakeOllama

INTERVAL = 0.2


def eventually(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        time.sleep(0.02)


@dataclass
class Running:
    fake: FakeOllama
    keeper: Keeper
    endpoints: Endpoints
    out: io.StringIO

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.endpoints.port}{path}", timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def ready(self) -> int:
        return self.get("/ready")[0]

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [record for record in self.records() if record["event"] == event]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        status, body = self.get("/metrics")
        assert status == 200
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples
        }


@pytest.fixture
def keeper_on() -> Iterator[Callable[..., Running]]:
    """Starts a keeper (and its endpoints) against a fake; stops and closes everything it started."""
    started: list[tuple[Keeper, Endpoints, OllamaClient]] = []

    def start(fake: FakeOllama, models: str, *, keep_alive: str = "-1", **settings: float) -> Running:
        config = load_config(
            {"OLLAMA_HOST": fake.url, "OLLAMA_PRELOAD_MODELS": models, "OLLAMA_PRELOAD_KEEP_ALIVE": keep_alive}
        )
        client = OllamaClient(config.host.base_url)
        out = io.StringIO()
        keeper = Keeper.from_config(config, EventLog("json", out), [client], interval=INTERVAL)
        keeper.settings = replace(keeper.settings, **settings)
        endpoints = Endpoints(keeper.snapshot, keeper_registry(keeper.snapshot), ("127.0.0.1", 0)).start()
        started.append((keeper, endpoints, client))
        keeper.start()
        return Running(fake, keeper, endpoints, out)

    yield start
    for keeper, endpoints, client in started:
        keeper.stop()
        assert keeper.join(10), "the keeper did not stop"
        endpoints.close()
        client.close()


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    server = FakeOllama()
    server.add_model("a", load_delay=0.3)
    server.add_model("b")
    server.add_model("c")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def chat(fake: FakeOllama, model: str, **fields: Any) -> None:
    """An application's request, from outside the keeper."""
    body = {"model": model, "prompt": "hi", "stream": False, "options": {"num_predict": 1}, **fields}
    requests.post(f"{fake.url}/api/generate", json=body, timeout=10).raise_for_status()


def test_ready_goes_503_then_200_as_models_load_and_again_when_one_is_evicted_and_rewarmed(
    fake: FakeOllama, keeper_on: Callable[..., Running]
) -> None:
    run = keeper_on(fake, "a, b")
    seen: list[int] = []

    def ready_is(status: int) -> bool:
        seen.append(run.ready())
        return seen[-1] == status

    eventually(lambda: ready_is(200), what="ready")
    fake.evict("a")  # a takes 0.3 s to load: long enough to see the keeper not ready
    eventually(lambda: ready_is(503), what="not ready after the eviction")
    eventually(lambda: ready_is(200), what="ready again")
    compact = [status for i, status in enumerate(seen) if i == 0 or seen[i - 1] != status]
    assert compact == [503, 200, 503, 200]
    (gone,) = run.events("gone")
    assert (gone["model"], gone["reason"]) == ("a", "unloaded")
    assert fake.load_count("a") == 2
    assert fake.loaded()["a:latest"].keep_alive == float("inf")


def test_a_model_evicted_by_another_models_load_is_rewarmed_and_the_reason_logged(
    keeper_on: Callable[..., Running],
) -> None:
    with FakeOllama(max_loaded=2) as fake:
        fake.add_model("a")
        fake.add_model("b")
        fake.add_model("intruder")
        run = keeper_on(fake, "a, b")
        eventually(lambda: run.ready() == 200, what="ready")
        chat(fake, "intruder")  # a third model on a server that keeps two: one of ours goes
        eventually(lambda: bool(run.events("gone")), what="the eviction noticed")
        eventually(lambda: run.ready() == 200, what="ready again")
        (gone,) = run.events("gone")
        assert gone["reason"] == "evicted"
        assert set(fake.loaded()) == {"a:latest", "b:latest"}


def test_an_applications_keep_alive_on_a_pinned_model_is_overridden_back_to_the_pin(
    fake: FakeOllama, keeper_on: Callable[..., Running]
) -> None:
    run = keeper_on(fake, "b")
    eventually(lambda: run.ready() == 200, what="ready")
    chat(fake, "b", keep_alive="5m")  # what LangChain sends unless told otherwise
    eventually(lambda: bool(run.events("reassert")), what="the override noticed")
    eventually(lambda: fake.loaded()["b:latest"].keep_alive == float("inf"), what="the pin re-asserted")
    assert run.events("reassert")[0]["reason"] == "override"
    assert fake.load_count("b") == 1  # re-asserting a loaded model does not reload it


def test_an_outage_then_an_empty_server_is_a_restart_and_every_model_comes_back(
    fake: FakeOllama, keeper_on: Callable[..., Running]
) -> None:
    run = keeper_on(fake, "a, b")
    eventually(lambda: run.ready() == 200, what="ready")
    fake.reset_connection("/api/ps", times=3)
    fake.evict("a")
    fake.evict("b")
    eventually(lambda: len(run.events("gone")) == 2, what="both re-warmed")
    eventually(lambda: run.ready() == 200, what="ready again")
    assert {record["reason"] for record in run.events("gone")} == {"restart"}
    assert len(run.events("unreachable")) == 1
    assert len(run.events("back")) == 1


def test_two_models_on_a_server_that_keeps_one_are_not_ready_and_loaded_only_a_few_times(
    keeper_on: Callable[..., Running],
) -> None:
    with FakeOllama(max_loaded=1) as fake:
        fake.add_model("a")
        fake.add_model("b")
        run = keeper_on(fake, "a, b", conflict_backoff=1.0, max_backoff=4.0)
        eventually(lambda: bool(run.events("not-ready")), what="the conflict noticed")
        time.sleep(6.0)  # 30 intervals: without the backoff that would be 30 loads or more
        loads = fake.load_count("a") + fake.load_count("b")
        status, body = run.get("/ready")
        assert status == 503
        problem = json.loads(body)["servers"][0]["problem"]
        assert "OLLAMA_MAX_LOADED_MODELS" in problem
        assert 2 <= loads <= 5  # the first two, then one per retry at about 1 and 3 s (the wait doubles)


def test_metrics_carry_the_values_the_events_imply(fake: FakeOllama, keeper_on: Callable[..., Running]) -> None:
    run = keeper_on(fake, "a, b?keep_alive=10m")
    eventually(lambda: run.ready() == 200, what="ready")
    fake.evict("a")
    eventually(lambda: bool(run.events("gone")), what="the eviction noticed")
    eventually(lambda: run.ready() == 200, what="ready again")
    values = run.metrics()
    a = (("model", "a"), ("server", fake.url))
    b = (("model", "b"), ("server", fake.url))
    assert values[("ollama_preload_model_resident", a)] == 1.0
    assert values[("ollama_preload_model_resident", b)] == 1.0
    assert values[("ollama_preload_model_expiry_seconds", a)] == float("inf")
    assert 590 <= values[("ollama_preload_model_expiry_seconds", b)] <= 600
    assert values[("ollama_preload_model_warms_total", (a[0], ("reason", "start"), a[1]))] == 1.0
    assert values[("ollama_preload_model_warms_total", (a[0], ("reason", "unloaded"), a[1]))] == 1.0
    assert ("ollama_preload_model_warms_total", (b[0], ("reason", "unloaded"), b[1])) not in values
    assert values[("ollama_preload_model_load_seconds", a)] >= 0.3  # the fake's load delay for a
    assert values[("ollama_preload_model_last_warm_seconds", a)] >= 0.3
    assert values[("ollama_preload_model_warm_failures_total", a)] == 0.0
    assert values[("ollama_preload_server_up", (("server", fake.url),))] == 1.0
    assert values[("ollama_preload_ready", ())] == 1.0
    assert values[("ollama_preload_cycle_seconds_count", ())] >= 2


def test_live_answers_200_while_the_loop_runs_and_503_once_it_stopped(
    fake: FakeOllama, keeper_on: Callable[..., Running]
) -> None:
    run = keeper_on(fake, "b")
    eventually(lambda: run.get("/live")[0] == 200, what="live")
    started = time.monotonic()
    run.keeper.stop()
    assert run.keeper.join(2)
    assert time.monotonic() - started < 1.0
    assert run.get("/live")[0] == 503
    assert run.get("/nope")[0] == 404


def test_a_stop_during_a_load_starts_no_further_request(keeper_on: Callable[..., Running]) -> None:
    with FakeOllama() as fake:
        fake.add_model("slow", load_delay=1.0)
        fake.add_model("next")
        run = keeper_on(fake, "slow, next")
        eventually(lambda: bool(fake.requests_to("/api/generate")), what="the first warm")
        run.keeper.stop()
        assert run.keeper.join(5)
        assert [request.body["model"] for request in fake.requests_to("/api/generate")] == ["slow"]


def ps_state(fake: FakeOllama) -> tuple[Any, dict[str, Any]]:
    body = requests.get(f"{fake.url}/api/ps", timeout=5).json()
    return body, {name: (m.options, m.keep_alive, m.load_count) for name, m in fake.loaded().items()}


@pytest.mark.parametrize(("models", "status"), [("a", 0), ("a, b", 4), ("a?num_ctx=8192", 4)])
def test_check_decides_from_ps_alone_and_leaves_it_exactly_as_it_found_it(
    fake: FakeOllama, models: str, status: int
) -> None:
    chat(fake, "a", keep_alive="5m")
    time.sleep(0.05)
    before = ps_state(fake)
    requests_before = len(fake.requests)
    config = load_config({"OLLAMA_HOST": fake.url, "OLLAMA_PRELOAD_MODELS": models, "OLLAMA_PRELOAD_KEEP_ALIVE": "-1"})
    with closing(OllamaClient(config.host.base_url)) as client:
        assert run_check(config, client, EventLog("json", io.StringIO())) == status
    sent = [(request.method, request.path) for request in fake.requests[requests_before:]]
    assert sent == [("GET", "/api/ps")]
    assert ps_state(fake) == before


def test_check_exits_3_when_nothing_listens() -> None:
    fake = FakeOllama()  # bound but never started: connections are refused
    try:
        config = load_config({"OLLAMA_HOST": fake.url, "OLLAMA_PRELOAD_MODELS": "a"})
        client = OllamaClient(config.host.base_url)
        started = time.monotonic()
        assert run_check(config, client, EventLog("json", io.StringIO())) == 3
        assert time.monotonic() - started < 5
        client.close()
    finally:
        fake.stop()
