"""Several replicas against several fake servers (each on its own 127.0.0.1 port), named in
`OLLAMA_PRELOAD_HOSTS`: the CLI in once and check mode, the keeper following replicas that come and go, and the
bash fallback's refusal. Name resolution to several addresses is the real tier's (`tests/real/test_replicas_real.py`).
"""

from __future__ import annotations

import io
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from preloader.config import load_config
from preloader.endpoints import Endpoints
from preloader.keeper import Keeper
from preloader.logs import EventLog
from preloader.metrics import keeper_registry
from preloader.replicas import Replica, Resolution
from testkit.fake_ollama import FakeOllama
from tests.fake.conftest import BASH, PYTHON


@pytest.fixture
def fakes() -> Iterator[Callable[..., FakeOllama]]:
    """`make(start=True, models=("a", "b"), **fake_options)`: fake servers, all stopped at the end."""
    owned: list[FakeOllama] = []

    def make(*, start: bool = True, models: tuple[str, ...] = ("a", "b"), load_delay: float = 0.0) -> FakeOllama:
        server = FakeOllama()
        for model in models:
            server.add_model(model, load_delay=load_delay)
        owned.append(server)
        return server.start() if start else server

    yield make
    for server in owned:
        server.stop()


def hosts(*servers: FakeOllama) -> str:
    return ", ".join(server.url for server in servers)


def run(servers: str, models: str = "a,b", *args: str, **env: str) -> Any:
    settings = {"OLLAMA_PRELOAD_HOSTS": servers, "OLLAMA_PRELOAD_MODELS": models, "OLLAMA_PRELOAD_WAIT_TIMEOUT": "2"}
    return PYTHON.run(*args, **{**settings, **env})


def test_every_model_is_warmed_on_every_replica_and_each_result_names_its_replica(
    fakes: Callable[..., FakeOllama], tmp_path: Path
) -> None:
    servers = [fakes(), fakes(), fakes()]
    report = tmp_path / "report.json"
    result = run(hosts(*servers), OLLAMA_PRELOAD_REPORT=str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    for server in servers:
        assert set(server.loaded()) == {"a:latest", "b:latest"}
        assert f"a on {server.url}: warmed in" in result.stdout
        assert f"b on {server.url}: resident" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "preloader: 2 of 2 model(s) warmed and resident on 3 of 3 replica(s) (exit 0)"
    )
    document = json.loads(report.read_text())
    assert [replica["server"] for replica in document["replicas"]] == [server.url for server in servers]
    assert sorted((row["replica"], row["model"]) for row in document["models"]) == sorted(
        (server.url, model) for server in servers for model in "ab"
    )


def test_a_replica_lacking_a_model_exits_4_naming_it_and_the_others_are_still_warmed(
    fakes: Callable[..., FakeOllama],
) -> None:
    good, lacking, other = fakes(), fakes(models=("a",)), fakes()
    result = run(hosts(good, lacking, other))
    assert result.returncode == 4, result.stdout
    assert f"not ready: b on {lacking.url} (exit 4)" in result.stdout.splitlines()[-1]
    assert f"b on {lacking.url}: failed: not found on the server" in result.stdout
    assert set(good.loaded()) == set(other.loaded()) == {"a:latest", "b:latest"}
    assert set(lacking.loaded()) == {"a:latest"}


def test_a_replica_that_never_answers_exits_3_and_the_others_are_still_warmed(
    fakes: Callable[..., FakeOllama],
) -> None:
    up, down = fakes(), fakes(start=False)  # bound, never listening: connections are refused
    started = time.monotonic()
    result = run(hosts(up, down), OLLAMA_PRELOAD_WAIT_TIMEOUT="1")
    assert result.returncode == 3, result.stdout
    assert time.monotonic() - started < 10
    assert set(up.loaded()) == {"a:latest", "b:latest"}
    assert f"preloader on {down.url}: error: the server at {down.url} did not answer within 1.00 s" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        f"preloader: 2 of 2 model(s) warmed and resident on 1 of 2 replica(s); not ready: {down.url} (server not "
        "ready); 1 of 2 replica(s) not ready (exit 3)"
    )


def test_replicas_load_at_the_same_time(fakes: Callable[..., FakeOllama]) -> None:
    servers = [fakes(models=("a",), load_delay=1.0) for _ in range(4)]
    started = time.monotonic()
    result = run(hosts(*servers), "a")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout
    assert elapsed < 3.5, f"4 loads of 1 s took {elapsed:.1f} s: they did not overlap"


def test_sigterm_ends_a_run_over_several_replicas_at_once(fakes: Callable[..., FakeOllama]) -> None:
    servers = [fakes(models=("a",), load_delay=30.0) for _ in range(3)]
    process = PYTHON.popen(
        OLLAMA_PRELOAD_HOSTS=hosts(*servers), OLLAMA_PRELOAD_MODELS="a", OLLAMA_PRELOAD_WAIT_TIMEOUT="5"
    )
    try:
        deadline = time.monotonic() + 10
        while sum(len(server.requests_to("/api/generate")) for server in servers) < 3:
            assert time.monotonic() < deadline, "the loads never started"
            time.sleep(0.05)
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=10)
        assert time.monotonic() - sent < 3
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 143
    assert "interrupted by SIGTERM" in stdout


def test_check_mode_is_keyed_by_replica_and_the_worst_status_wins(fakes: Callable[..., FakeOllama]) -> None:
    warm, cold = fakes(), fakes()
    assert run(hosts(warm)).returncode == 0
    result = run(hosts(warm, cold), "a,b", "--mode", "check")
    assert result.returncode == 4, result.stdout
    assert f"a on {cold.url}: not resident" in result.stdout and f"on {warm.url}" in result.stdout
    assert result.stdout.splitlines()[-1] == "preloader: every listed model resident on 1 of 2 replica(s) (exit 4)"
    down = fakes(start=False)
    assert run(hosts(warm, cold, down), "a,b", "--mode", "check").returncode == 3
    assert run(hosts(warm), "a,b", "--mode", "check").returncode == 0


@pytest.mark.parametrize("setting", [{"OLLAMA_PRELOAD_HOSTS": "a,b"}, {"OLLAMA_PRELOAD_RESOLVE": "all"}])
def test_the_bash_fallback_refuses_replica_settings_with_a_hint(setting: dict[str, str]) -> None:
    result = BASH.run(OLLAMA_PRELOAD_MODELS="a", OLLAMA_HOST="127.0.0.1:9", **setting)
    assert result.returncode == 2
    (variable,) = setting
    assert f"{variable}=" in result.stdout + result.stderr and "not supported by the bash fallback" in (
        result.stdout + result.stderr
    )
    assert "pip install ollama-preloader" in result.stdout + result.stderr


# --- watch mode: the keeper follows the replicas -------------------------------------------------------------


def ready_body(endpoints: Endpoints) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{endpoints.port}/ready", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def eventually(condition: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, f"{what} not reached within {timeout} s"
        time.sleep(0.02)
    return time.monotonic() - start


def test_the_keeper_warms_a_new_replica_within_an_interval_and_a_vanished_one_leaves_readiness(
    fakes: Callable[..., FakeOllama],
) -> None:
    interval = 0.5
    first, second = fakes(), fakes()
    current: list[FakeOllama] = [first]

    def discover() -> Resolution:
        return Resolution(tuple(Replica(server.url, "http://ollama:11434") for server in current))

    config = load_config(
        {
            "OLLAMA_HOST": "ollama",
            "OLLAMA_PRELOAD_RESOLVE": "all",
            "OLLAMA_PRELOAD_MODELS": "a,b",
            "OLLAMA_PRELOAD_KEEP_ALIVE": "-1",
        }
    )
    out = io.StringIO()
    keeper = Keeper.from_config(config, EventLog("text", out), [], interval=interval, discover=discover)
    endpoints = Endpoints(keeper.snapshot, keeper_registry(keeper.snapshot), ("127.0.0.1", 0)).start()
    keeper.start()
    try:
        eventually(lambda: ready_body(endpoints)[0] == 200, 10, "the first replica ready")
        current.append(second)
        took = eventually(lambda: set(second.loaded()) == {"a:latest", "b:latest"}, 10, "the new replica warmed")
        assert took < interval + 1.0  # one interval, plus two tiny loads and the scheduling slack of a busy CI box
        eventually(lambda: ready_body(endpoints)[0] == 200, 5, "both replicas ready")
        _, body = ready_body(endpoints)
        assert [server["server"] for server in body["servers"]] == [first.url, second.url]
        current.remove(first)
        eventually(lambda: len(ready_body(endpoints)[1]["servers"]) == 1, 5, "the vanished replica dropped")
        assert ready_body(endpoints)[1]["servers"][0]["server"] == second.url
        current.clear()  # the name has no address at all: nothing is ready
        eventually(lambda: ready_body(endpoints)[0] == 503, 5, "readiness lost with no replica")
    finally:
        keeper.stop()
        assert keeper.join(10)
        endpoints.close()
        keeper.close()
    text = out.getvalue()
    assert f"new replica {second.url} of http://ollama:11434: warming it" in text
    assert f"replica {first.url} is no longer an address of http://ollama:11434: it leaves readiness" in text
    assert f"a on {second.url}: warmed in" in text
