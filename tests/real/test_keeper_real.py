"""Watch and check modes against a real `ollama serve` (every supported version), run as a user runs them.

`python -m preloader --mode watch` is a subprocess with a 1 s interval and its endpoints on a free loopback
port; the tests cause what sends models cold in production (a server restart, someone's `keep_alive: 0`, an
application's `keep_alive: "5m"`, a server that keeps fewer models than listed) and judge the keeper by the
server's own view (`/api/ps`, its log of loads) as well as by `/ready`, `/metrics` and the keeper's log.

One server and one keeper are shared by the module's watch tests (each starts from "ready" and leaves it
ready); the one-slot conflict gets its own keeper on the tier's one-slot server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from testkit.real_ollama import (
    SMOLLM2,
    TINY_BERT,
    TINY_LLAMA,
    OllamaFactory,
    RealOllama,
    free_port,
    qualify,
)

pytestmark = pytest.mark.real

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 1.0
MAX_DOWN_POLL = 0.25  # the keeper polls a server that went away at least this often (preloader.wait.MAX_WAIT)
SLACK = 3.0  # two shared cores, other servers loading next door
FOREVER_YEAR = 2200  # keep_alive -1 → expires_at ≈ now + 292 years
CONFLICT_WINDOW = 40.0  # the conflict backoff is 60 s: a thrashing keeper would load ~2 models per interval
# One line per model load in the server's log: "starting llama server" (0.11), "starting llama-server" (0.32).
_LOAD_LINE = re.compile(r'msg="starting llama[ -]server"')
_GIN_LINE = re.compile(r'\[GIN\][^|]*\|\s*(\d{3})\s*\|[^|]*\|[^|]*\|\s*(\w+)\s+"([^"]+)"')


# --- the keeper as a process -----------------------------------------------------------------------------


def preloader_env(host: str, settings: Mapping[str, str]) -> dict[str, str]:
    """Nothing from the developer's own Ollama setup leaks in, and loopback never goes through a proxy."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("OLLAMA_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(PYTHONPATH=str(REPO), NO_PROXY="127.0.0.1,localhost", OLLAMA_HOST=host)
    env.update(settings)
    return env


def http_get(url: str) -> tuple[int, str]:
    try:
        response = requests.get(url, timeout=5)
    except requests.RequestException:
        return 0, ""
    return response.status_code, response.text


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_metrics(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


@dataclass
class Watcher:
    """A running `python -m preloader --mode watch`; its output goes to a file the tests read as it grows."""

    process: subprocess.Popen[bytes]
    base: str
    log_path: Path
    server: RealOllama

    def ready(self) -> int:
        return http_get(f"{self.base}/ready")[0]

    def ready_body(self) -> dict[str, Any]:
        status, text = http_get(f"{self.base}/ready")
        assert status in (200, 503), f"/ready answered {status}: {text}\n{self.describe()}"
        body: dict[str, Any] = json.loads(text)
        return body

    def metrics(self) -> Samples:
        status, text = http_get(f"{self.base}/metrics")
        assert status == 200, f"/metrics answered {status}\n{self.describe()}"
        return parse_metrics(text)

    def model_sample(self, name: str, model: str, **labels: str) -> float | None:
        wanted = frozenset({"server": self.server.base_url, "model": model, **labels}.items())
        return self.metrics().get((name, wanted))

    def warms(self, model: str, reason: str) -> float:
        return self.model_sample("ollama_preload_model_warms_total", model, reason=reason) or 0.0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def describe(self) -> str:
        return f"--- keeper log:\n{self.log()[-4000:]}\n--- ollama log:\n{self.server.log_tail(30)}"

    def stop(self) -> int:
        """SIGTERM, as Docker and Kubernetes stop it; our own child, by pid."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return int(self.process.returncode)


def start_watcher(server: RealOllama, models: str, workdir: Path) -> Watcher:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = workdir / f"keeper-{port}.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "preloader",
                "--mode",
                "watch",
                "--watch-interval",
                f"{INTERVAL:g}s",
                "--listen",
                f"127.0.0.1:{port}",
            ],
            env=preloader_env(server.host, {"OLLAMA_PRELOAD_MODELS": models, "OLLAMA_PRELOAD_KEEP_ALIVE": "-1"}),
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Watcher(process, f"http://127.0.0.1:{port}", log_path, server)


def poll_until(
    check: Callable[[], bool], timeout: float, what: str, describe: Callable[[], str], step: float = 0.02
) -> float:
    """Seconds until `check()` held; fails the test at the deadline."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:g} s\n{describe()}")
        time.sleep(step)
    return time.monotonic() - start


def compact(statuses: list[int]) -> list[int]:
    """Consecutive repeats dropped: the transitions /ready went through."""
    return [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]


@dataclass
class ReadyTrace:
    """Every /ready status seen while waiting for a sequence of them."""

    watcher: Watcher
    seen: list[int] = field(default_factory=list)

    def wait_for(self, status: int, timeout: float, what: str) -> float:
        def now_is() -> bool:
            self.seen.append(self.watcher.ready())
            return self.seen[-1] == status

        return poll_until(now_is, timeout, what, self.watcher.describe)


def running(server: RealOllama) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in server.ps()}


def expiry(model: Mapping[str, Any]) -> datetime:
    # Go prints nanoseconds and a zone offset; fromisoformat takes microseconds.
    text = re.sub(r"(\.\d{6})\d+", r"\1", str(model["expires_at"])).replace("Z", "+00:00")
    return datetime.fromisoformat(text)


def pinned(server: RealOllama, model: str) -> bool:
    found = running(server).get(qualify(model))
    return found is not None and expiry(found).year >= FOREVER_YEAR


def loads_since(server: RealOllama, mark: int) -> int:
    return len(_LOAD_LINE.findall(server.log_text()[mark:]))


def requests_since(server: RealOllama, mark: int) -> list[tuple[int, str, str]]:
    return [(int(s), m, p) for s, m, p in _GIN_LINE.findall(server.log_text()[mark:])]


def measured(name: str, value: float) -> None:
    """A timing for the record: `pytest -rP` shows it; nothing asserts on it here."""
    print(f"measured {name} = {value}")


def line_about(log: str, model: str, text: str) -> str | None:
    """The keeper's text log: `<model>: <message>`."""
    pattern = re.compile(rf"^{re.escape(model)}: .*{re.escape(text)}", re.MULTILINE)
    found = pattern.search(log)
    return found.group(0) if found else None


# --- fixtures --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Watched:
    watcher: Watcher
    server: RealOllama
    first_statuses: list[int]
    ready_after: float
    resident_when_ready: bool


@pytest.fixture(scope="module")
def watched(module_ollama_factory: OllamaFactory, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watched]:
    """A server of its own and a keeper of SmolLM2 pinned with -1, started once per version."""
    server = module_ollama_factory()
    watcher = start_watcher(server, SMOLLM2, tmp_path_factory.mktemp("keeper"))
    try:
        trace = ReadyTrace(watcher)
        ready_after = trace.wait_for(200, 60, "the keeper ready at start")
        resident = pinned(server, SMOLLM2)
        yield Watched(watcher, server, trace.seen, ready_after, resident)
    finally:
        watcher.stop()


@pytest.fixture
def keeper(watched: Watched) -> Watched:
    """The shared keeper, ready: a test that failed half-way (a server left down) does not sink the next."""
    if not watched.server.running():
        watched.server.start()
    ReadyTrace(watched.watcher).wait_for(200, 30, "the shared keeper ready before the test")
    return watched


# --- watch mode ------------------------------------------------------------------------------------------


def test_watch_turns_ready_only_once_smollm2_is_pinned_in_ps_and_metrics_say_resident_forever(keeper: Watched) -> None:
    w = keeper.watcher
    measured("start_to_ready_seconds", round(keeper.ready_after, 2))
    assert compact([s for s in keeper.first_statuses if s != 0]) == [503, 200], w.describe()
    assert keeper.resident_when_ready, w.describe()
    assert w.model_sample("ollama_preload_model_resident", SMOLLM2) == 1.0
    assert w.model_sample("ollama_preload_model_expiry_seconds", SMOLLM2) == float("inf")
    assert w.warms(SMOLLM2, "start") == 1.0
    samples = w.metrics()
    assert samples[("ollama_preload_ready", frozenset())] == 1.0
    assert samples[("ollama_preload_server_up", frozenset({("server", w.server.base_url)}))] == 1.0
    assert http_get(f"{w.base}/live")[0] == 200


def test_a_restarted_server_gets_smollm2_back_within_an_interval_plus_its_load_and_the_log_says_restart(
    keeper: Watched,
) -> None:
    w, server = keeper.watcher, keeper.server
    log_mark = len(w.log())
    restarts_before = w.warms(SMOLLM2, "restart")
    trace = ReadyTrace(w, [w.ready()])

    server.stop()  # SIGTERM: the runner and its model go with it
    trace.wait_for(503, 10, "/ready 503 while the server is down")
    body = w.ready_body()
    assert "unreachable" in (body["servers"][0]["problem"] or ""), body
    assert w.model_sample("ollama_preload_model_resident", SMOLLM2) == 0.0

    server.start()  # the same port and models directory: what `docker restart ollama` does
    back = trace.wait_for(200, 30, "/ready 200 after the restart")

    assert compact(trace.seen) == [200, 503, 200]
    assert pinned(server, SMOLLM2), running(server)
    load = w.model_sample("ollama_preload_model_load_seconds", SMOLLM2) or 0.0
    measured("restart_to_ready_seconds", round(back, 2))
    measured("restart_load_seconds", round(load, 2))
    assert back <= INTERVAL + MAX_DOWN_POLL + load + SLACK, (back, load)
    log = w.log()[log_mark:]
    assert line_about(log, SMOLLM2, "gone: the server restarted"), log
    assert "server back after" in log, log
    assert w.warms(SMOLLM2, "restart") == restarts_before + 1


def test_a_model_unloaded_by_someone_elses_keep_alive_0_is_rewarmed_and_the_log_says_unloaded(keeper: Watched) -> None:
    w, server = keeper.watcher, keeper.server
    log_mark, load_mark = len(w.log()), len(server.log_text())
    unloaded_before = w.warms(SMOLLM2, "unloaded")
    trace = ReadyTrace(w, [w.ready()])

    gone = server.post("/api/generate", {"model": SMOLLM2, "keep_alive": 0}, timeout=30)
    assert gone.status == 200 and gone.json().get("done_reason") == "unload", gone.text
    started = time.monotonic()
    trace.wait_for(503, 10, "/ready 503 once the model is gone")
    trace.wait_for(200, 30, "/ready 200 once it is re-warmed")
    back = time.monotonic() - started

    measured("unload_to_ready_seconds", round(back, 2))
    assert compact(trace.seen) == [200, 503, 200]
    assert pinned(server, SMOLLM2), running(server)
    assert loads_since(server, load_mark) == 1, server.log_tail(40)
    log = w.log()[log_mark:]
    assert line_about(log, SMOLLM2, "gone: it was unloaded by a request with keep_alive 0"), log
    assert w.warms(SMOLLM2, "unloaded") == unloaded_before + 1


def test_an_applications_keep_alive_5m_on_the_pinned_model_is_overridden_back_to_forever_without_a_reload(
    keeper: Watched,
) -> None:
    w, server = keeper.watcher, keeper.server
    log_mark, load_mark = len(w.log()), len(server.log_text())
    overrides_before = w.warms(SMOLLM2, "override")

    # What LangChain sends unless told otherwise; the model is loaded, so this only moves its expiry.
    app = server.post("/api/generate", {"model": SMOLLM2, "prompt": "", "keep_alive": "5m"}, timeout=30)
    assert app.status == 200, app.text
    started = time.monotonic()
    shortened = expiry(running(server)[qualify(SMOLLM2)])
    statuses: list[int] = []

    def pin_back() -> bool:
        statuses.append(w.ready())
        return pinned(server, SMOLLM2)

    took = poll_until(pin_back, INTERVAL + SLACK, "expires_at back to the far future", w.describe, step=0.05)
    measured("override_to_pinned_seconds", round(took, 2))

    log = w.log()[log_mark:]
    # The server's truth first: the application did shorten the pin (unless the keeper was faster still).
    assert shortened.year < FOREVER_YEAR or line_about(log, SMOLLM2, "overrode its keep-alive"), shortened
    assert line_about(log, SMOLLM2, "a client overrode its keep-alive"), log
    # The server moves expires_at before the keeper has read the answer and counted the warm: wait for it.
    poll_until(lambda: w.warms(SMOLLM2, "override") >= overrides_before + 1, 5, "the override counted", w.describe)
    assert w.warms(SMOLLM2, "override") == overrides_before + 1
    assert set(statuses) == {200}, statuses  # still loaded all along: re-asserting is not a reload
    assert loads_since(server, load_mark) == 0, server.log_tail(40)
    assert time.monotonic() - started < INTERVAL + SLACK + 1


def test_check_exits_0_4_and_3_and_leaves_api_ps_exactly_as_it_found_it(keeper: Watched, tmp_path: Path) -> None:
    server = keeper.server
    # A second model with a finite keep-alive: a probe that touched it would move its expires_at.
    embedded = server.post("/api/embed", {"model": TINY_BERT, "input": "a", "keep_alive": "10m"}, timeout=60)
    assert embedded.status == 200, embedded.text
    try:
        before = server.request("GET", "/api/ps", timeout=10).json()
        request_mark = len(server.log_text())

        def check(host: str, models: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "preloader", "--mode", "check"],
                env=preloader_env(host, {"OLLAMA_PRELOAD_MODELS": models}),
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=60,
            )

        resident = check(server.host, f"{SMOLLM2}, {TINY_BERT}")
        missing = check(server.host, f"{SMOLLM2}, {TINY_LLAMA}")
        nobody = check(f"127.0.0.1:{free_port()}", SMOLLM2)
        after = server.request("GET", "/api/ps", timeout=10).json()
        sent = requests_since(server, request_mark)
    finally:
        server.unload(TINY_BERT)

    assert resident.returncode == 0, resident.stdout + resident.stderr
    assert missing.returncode == 4, missing.stdout + missing.stderr
    assert line_about(missing.stdout + missing.stderr, TINY_LLAMA, "not resident"), missing.stdout + missing.stderr
    assert nobody.returncode == 3, nobody.stdout + nobody.stderr
    assert after == before  # expires_at included: nothing was loaded, unloaded or re-pinned
    assert {(method, path) for _, method, path in sent} <= {("GET", "/api/ps")}, sent


def test_two_models_on_a_one_slot_server_are_not_ready_with_the_reason_and_loaded_only_a_few_times(
    single_slot_ollama: RealOllama, tmp_path: Path
) -> None:
    server = single_slot_ollama
    load_mark = len(server.log_text())
    watcher = start_watcher(server, f"{TINY_LLAMA}, {TINY_BERT}", tmp_path)
    started = time.monotonic()
    try:
        statuses: list[int] = []

        def conflict_reported() -> bool:
            statuses.append(watcher.ready())
            problem = str(watcher.ready_body()["servers"][0]["problem"]) if statuses[-1] else ""
            return "OLLAMA_MAX_LOADED_MODELS" in problem

        noticed = poll_until(conflict_reported, 30, "the conflict reported on /ready", watcher.describe, step=0.1)
        while time.monotonic() - started < CONFLICT_WINDOW:
            statuses.append(watcher.ready())
            time.sleep(0.25)
        body = watcher.ready_body()
        samples = watcher.metrics()
        loads = loads_since(server, load_mark)
        watched_for = time.monotonic() - started
    finally:
        exit_status = watcher.stop()

    measured("conflict_noticed_seconds", round(noticed, 2))
    measured("conflict_loads", loads)
    measured("conflict_window_seconds", round(watched_for, 1))
    assert 200 not in statuses, watcher.describe()
    state = body["servers"][0]
    assert state["ready"] is False and "OLLAMA_MAX_LOADED_MODELS" in state["problem"], body
    retry_in = (datetime.fromisoformat(state["retry_at"]) - datetime.now(timezone.utc)).total_seconds()
    assert 0 < retry_in <= 60, state["retry_at"]  # backed off by a minute, not an interval
    # Both first warms, and nothing more: re-warming every 1 s interval would have loaded ~40 times by now.
    assert 2 <= loads <= 3, f"{loads} loads in {watched_for:.0f} s\n{watcher.describe()}"
    warm_counts = sum(value for (name, _), value in samples.items() if name == "ollama_preload_model_warms_total")
    assert warm_counts == loads  # the keeper's count and the server's agree
    assert samples[("ollama_preload_ready", frozenset())] == 0.0
    assert "not ready: warming" in watcher.log(), watcher.describe()
    assert exit_status == 0, watcher.describe()  # SIGTERM ends watch mode with 0, even while not ready
    assert "stopped on request" in watcher.log()
