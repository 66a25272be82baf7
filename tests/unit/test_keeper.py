"""The watch loop driven one cycle at a time, with an injected clock and a scripted server: no sleeping."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families

from preloader.client import RunningModel, Timeout
from preloader.durations import KeepAlive, parse_keep_alive
from preloader.entries import ModelEntry, parse_entry
from preloader.errors import OllamaResponseError, OllamaUnreachable
from preloader.keeper import Keeper, KeeperSettings, Server
from preloader.logs import EventLog
from preloader.metrics import exposition, keeper_registry
from preloader.results import WarmOutcome
from preloader.retries import MAX_POLL as MAX_WAIT

URL = "http://127.0.0.1:11434"
INTERVAL = 10.0
PINNED_YEAR = 2318


class Clock:
    """Monotonic seconds and the wall clock, moved together by the test."""

    def __init__(self) -> None:
        self.mono = 1000.0
        self.wall = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += timedelta(seconds=seconds)


class ScriptedServer:
    """Just enough of Ollama's scheduler: loaded models with expiries, a model limit, outages, versions."""

    def __init__(self, clock: Clock, max_loaded: int = 3, version: str = "0.11.4") -> None:
        self.clock, self.max_loaded, self.version_text = clock, max_loaded, version
        self.base_url = URL
        self.loaded: dict[str, RunningModel] = {}  # by reported name, oldest first
        self.down = False
        self.ps_calls = 0

    # the client's side
    def ps(self, *, timeout: Timeout) -> list[RunningModel]:
        self.ps_calls += 1
        if self.down:
            raise OllamaUnreachable(f"cannot reach {URL}/api/ps: connection refused", url=URL)
        return list(self.loaded.values())

    def version(self, *, timeout: Timeout) -> str:
        if self.down:
            raise OllamaUnreachable("connection refused", url=URL)
        return self.version_text

    # what happens on the server
    def load(self, name: str, keep_alive: KeepAlive | None, context_length: int = 4096) -> None:
        reported = name if ":" in name else f"{name}:latest"
        if reported not in self.loaded:
            while len(self.loaded) >= self.max_loaded:
                del self.loaded[next(iter(self.loaded))]
        self.loaded[reported] = RunningModel(
            reported, 100, 0, self.expiry(keep_alive or parse_keep_alive("5m")), context_length
        )

    def expiry(self, keep_alive: KeepAlive) -> datetime:
        if keep_alive.forever:
            return datetime(PINNED_YEAR, 1, 1, tzinfo=timezone.utc)
        return self.clock.wall + timedelta(seconds=keep_alive.seconds)

    def unload(self, name: str) -> None:
        del self.loaded[name if ":" in name else f"{name}:latest"]


class ScriptedWarmer:
    """Warms through the scripted server, as `Warmer.warm` would; records what it was asked."""

    def __init__(self, server: ScriptedServer, keep_alive: KeepAlive | None, fail: set[str] | None = None) -> None:
        self.server, self.keep_alive, self.fail = server, keep_alive, fail or set()
        self.warmed: list[str] = []
        self.during: Callable[[], None] | None = None

    def warm(self, entry: ModelEntry) -> WarmOutcome:
        self.warmed.append(entry.text)
        if self.during is not None:
            self.during()
        if entry.text in self.fail:
            return WarmOutcome(entry, "failed", error="model requires more system memory (HTTP 500)")
        keep_alive = entry.keep_alive or self.keep_alive
        num_ctx = entry.options.get("num_ctx")
        self.server.load(entry.text, keep_alive, num_ctx if isinstance(num_ctx, int) else 4096)
        return WarmOutcome(entry, "warmed", kind="generate", seconds=0.5, load_seconds=0.4, keep_alive=keep_alive)


class Rig:
    def __init__(
        self,
        models: str,
        *,
        keep_alive: str | None = "-1",
        max_loaded: int = 3,
        fail: set[str] | None = None,
        settings: dict[str, float] | None = None,
    ) -> None:
        self.clock = Clock()
        self.server = ScriptedServer(self.clock, max_loaded)
        default = parse_keep_alive(keep_alive) if keep_alive is not None else None
        self.warmer = ScriptedWarmer(self.server, default, fail)
        self.out = io.StringIO()
        self.keeper = Keeper(
            [Server(self.server, self.warmer)],
            [parse_entry(text.strip()) for text in models.split(",")],
            EventLog("json", self.out),
            KeeperSettings(interval=INTERVAL, keep_alive=default, **(settings or {})),
            clock=lambda: self.clock.mono,
            now=lambda: self.clock.wall,
        )

    def cycle(self) -> float:
        return self.keeper.cycle()

    def step(self, seconds: float = INTERVAL) -> float:
        self.clock.advance(seconds)
        return self.keeper.cycle()

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.out.getvalue().splitlines()]

    def events(self, event: str) -> list[dict]:
        return [record for record in self.records() if record["event"] == event]

    def model(self, name: str) -> dict:
        (server,) = self.keeper.snapshot().to_json(self.clock.wall)["servers"]
        return next(model for model in server["models"] if model["model"] == name)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = exposition(keeper_registry(self.keeper.snapshot, lambda: self.clock.wall)).decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def test_the_first_cycle_warms_every_listed_model_and_then_the_keeper_is_ready() -> None:
    rig = Rig("a, b")
    assert not rig.keeper.snapshot().ready
    assert rig.cycle() == INTERVAL
    assert rig.warmer.warmed == ["a", "b"]
    assert rig.keeper.snapshot().ready
    assert [record["model"] for record in rig.events("resident")] == ["a", "b"]


def test_healthy_cycles_send_nothing_but_ps_and_log_nothing() -> None:
    rig = Rig("a, b")
    rig.cycle()
    lines, calls = len(rig.records()), rig.server.ps_calls
    for _ in range(30):
        rig.step()
    assert rig.warmer.warmed == ["a", "b"]
    assert rig.server.ps_calls == calls + 30
    assert len(rig.records()) == lines


def test_a_model_evicted_by_another_models_load_is_rewarmed_with_that_reason() -> None:
    rig = Rig("a, b")
    rig.cycle()
    rig.server.unload("a:latest")
    rig.server.load("intruder", None)
    rig.step()
    assert rig.warmer.warmed == ["a", "b", "a"]
    (gone,) = rig.events("gone")
    assert (gone["model"], gone["reason"]) == ("a", "evicted")
    assert "another model evicted it" in gone["message"]
    assert rig.model("a")["rewarms"] == {"start": 1, "evicted": 1}
    assert rig.keeper.snapshot().ready


def test_a_model_unloaded_with_nothing_new_loaded_is_rewarmed_as_unloaded() -> None:
    rig = Rig("a")
    rig.cycle()
    rig.server.unload("a:latest")
    rig.step()
    assert [(record["model"], record["reason"]) for record in rig.events("gone")] == [("a", "unloaded")]
    assert rig.warmer.warmed == ["a", "a"]


def test_a_model_whose_last_known_expiry_passed_went_cold_by_keep_alive() -> None:
    rig = Rig("a", keep_alive=None, settings={"failure_backoff": 30.0})  # the server's default keep-alive
    rig.cycle()
    rig.server.loaded["a:latest"] = RunningModel("a:latest", 100, 0, rig.clock.wall + timedelta(seconds=15), 4096)
    rig.warmer.fail = {"a"}  # the re-assert fails, so nothing keeps it alive
    rig.step()
    assert rig.events("reassert")[-1]["reason"] == "expiring"
    rig.warmer.fail = set()
    del rig.server.loaded["a:latest"]
    for _ in range(3):
        rig.step()
    assert [(record["model"], record["reason"]) for record in rig.events("gone")] == [("a", "keep_alive")]
    assert rig.keeper.snapshot().ready


def test_a_restart_seen_as_an_outage_is_waited_for_with_fast_polls_then_everything_is_rewarmed() -> None:
    rig = Rig("a, b")
    rig.cycle()
    rig.server.down = True
    rig.server.loaded.clear()
    delays = [rig.step(INTERVAL)] + [rig.step(d) for d in [0.1] * 20]
    assert max(delays) <= MAX_WAIT
    assert not rig.keeper.snapshot().ready
    assert rig.model("a")["why_not"] == "the server is unreachable"
    assert len(rig.events("unreachable")) == 1  # one line for the outage, not one per poll
    rig.server.down = False
    assert rig.step(0.25) == INTERVAL
    assert rig.warmer.warmed == ["a", "b", "a", "b"]
    assert {record["reason"] for record in rig.events("gone")} == {"restart"}
    assert len(rig.events("back")) == 1
    assert rig.keeper.snapshot().ready


def test_a_new_server_version_means_a_restart_even_when_the_outage_was_too_short_to_see() -> None:
    rig = Rig("a")
    rig.cycle()
    rig.server.version_text = "0.12.0"  # upgraded and restarted between two cycles
    rig.server.loaded.clear()
    rig.step()
    assert rig.events("gone")[-1]["reason"] == "restart"
    assert rig.keeper.snapshot().servers[0].version == "0.12.0"


def test_a_client_overriding_a_pin_gets_the_pin_reasserted() -> None:
    rig = Rig("a")  # keep_alive -1
    rig.cycle()
    rig.server.load("a", parse_keep_alive("5m"))  # an application's request with keep_alive "5m"
    rig.step()
    (reassert,) = rig.events("reassert")
    assert reassert["reason"] == "override"
    assert rig.server.loaded["a:latest"].expires_at is not None
    assert rig.server.loaded["a:latest"].expires_at.year == PINNED_YEAR
    rig.step()
    assert len(rig.events("reassert")) == 1  # once re-asserted, quiet again


def test_a_finite_keep_alive_shortened_by_a_client_is_reasserted_but_a_longer_one_is_left_alone() -> None:
    rig = Rig("a", keep_alive="30m")
    rig.cycle()
    rig.server.load("a", parse_keep_alive("1h"))
    rig.step()
    assert rig.events("reassert") == []
    rig.server.load("a", parse_keep_alive("5m"))
    rig.step()
    assert [record["reason"] for record in rig.events("reassert")] == ["override"]


def test_a_model_expiring_within_two_intervals_is_reasserted_in_time() -> None:
    rig = Rig("a", keep_alive="60s")
    rig.cycle()
    rig.step()
    rig.step()
    assert rig.events("reassert") == []  # 40 s left: more than two intervals
    rig.step()  # 30 s left
    rig.step()  # 20 s left: within two intervals
    assert [record["reason"] for record in rig.events("reassert")] == ["expiring"]
    assert rig.keeper.snapshot().ready


def test_more_listed_models_than_the_server_keeps_stops_rewarming_and_backs_off_to_a_cap() -> None:
    rig = Rig("a, b", max_loaded=1, settings={"conflict_backoff": 60.0, "max_backoff": 600.0})
    rig.cycle()
    snapshot = rig.keeper.snapshot()
    assert not snapshot.ready
    problem = snapshot.servers[0].problem
    assert problem is not None and "OLLAMA_MAX_LOADED_MODELS" in problem and "evicted a" in problem
    assert rig.model("a")["why_not"] == "gone: another model evicted it"
    for _ in range(180):  # half an hour of cycles
        rig.step()
    # 2 at start, then one load per retry at 60, 180, 420, 900 and 1500 s (the wait doubles up to 600 s)
    assert len(rig.warmer.warmed) == 2 + 5
    assert not rig.keeper.snapshot().ready
    assert len(rig.events("not-ready")) == 1 + 5


def test_the_backoff_ends_when_the_server_restarts_since_that_is_how_the_fix_is_applied() -> None:
    rig = Rig("a, b", max_loaded=1)
    rig.cycle()
    rig.server.down = True
    rig.step()
    rig.server.down, rig.server.max_loaded = False, 3
    rig.server.loaded.clear()
    rig.step(0.1)
    assert rig.keeper.snapshot().ready
    assert rig.events("recovered")


def test_a_failed_warm_is_counted_and_retried_after_a_backoff_not_every_cycle() -> None:
    rig = Rig("a, b", fail={"b"}, settings={"failure_backoff": 30.0})
    rig.cycle()
    assert rig.model("b")["failures"] == 1
    assert "requires more system memory" in rig.model("b")["why_not"]
    rig.step()
    rig.step()
    assert rig.warmer.warmed == ["a", "b"]
    rig.step()
    assert rig.warmer.warmed == ["a", "b", "b"]
    assert rig.model("b")["failures"] == 2
    assert len(rig.events("warm-failed")) == 2


def test_a_model_reloaded_with_other_options_is_rewarmed_at_most_once_per_backoff() -> None:
    rig = Rig("a?num_ctx=8192", settings={"conflict_backoff": 60.0})
    rig.cycle()
    rig.server.load("a", parse_keep_alive("-1"), context_length=4096)  # an application with another num_ctx
    rig.step()
    assert rig.events("gone")[-1]["reason"] == "options"
    for _ in range(5):
        rig.server.load("a", parse_keep_alive("-1"), context_length=4096)
        rig.step()
    assert rig.warmer.warmed.count("a") == 2  # the start, one re-warm; the next waits for the backoff


def test_entries_that_need_not_stay_resident_are_never_warmed_by_the_keeper() -> None:
    rig = Rig("a?keep_alive=0, gpt-oss:120b-cloud, b")
    rig.cycle()
    assert rig.warmer.warmed == ["b"]
    assert rig.keeper.snapshot().ready


def test_liveness_needs_a_recent_cycle_but_allows_a_long_warm() -> None:
    rig = Rig("a", settings={"warm_budget": 1000.0})

    def live(at: float) -> bool:  # as if run_forever were driving the cycles, which this test does by hand
        return replace(rig.keeper.snapshot(), running=True).live(at)

    rig.cycle()
    assert live(rig.clock.mono + 3 * INTERVAL - 1)
    assert not live(rig.clock.mono + 3 * INTERVAL + 1)
    assert not rig.keeper.snapshot().live(rig.clock.mono)  # a loop that is not running is never live
    seen: list[bool] = []
    rig.warmer.during = lambda: seen.append(live(rig.clock.mono + 900))
    rig.server.loaded.clear()
    rig.step()
    assert seen == [True]


def test_a_summary_line_comes_at_most_every_ten_minutes() -> None:
    rig = Rig("a")
    rig.cycle()
    for _ in range(6 * 25):  # 25 minutes of cycles
        rig.step()
    assert len(rig.events("summary")) == 2


def test_stop_during_a_warm_starts_no_further_request_and_ends_the_loop() -> None:
    rig = Rig("a, b, c")
    rig.warmer.during = rig.keeper.stop
    rig.keeper.run_forever()
    assert rig.warmer.warmed == ["a"]
    assert not rig.keeper.snapshot().running


def test_metrics_report_residency_expiry_durations_and_rewarms_by_reason() -> None:
    rig = Rig("a, b?keep_alive=10m")
    rig.cycle()
    rig.server.unload("a:latest")
    rig.step()
    values = rig.metrics()
    a = (("model", "a"), ("server", URL))
    b = (("model", "b"), ("server", URL))
    assert values[("ollama_preload_model_resident", a)] == 1.0
    assert values[("ollama_preload_model_expiry_seconds", a)] == math.inf
    assert 580 <= values[("ollama_preload_model_expiry_seconds", b)] <= 600
    assert values[("ollama_preload_model_warms_total", (*a[:1], ("reason", "unloaded"), a[1]))] == 1.0
    assert values[("ollama_preload_model_warms_total", (*a[:1], ("reason", "start"), a[1]))] == 1.0
    assert values[("ollama_preload_model_last_warm_seconds", b)] == 0.5
    assert values[("ollama_preload_model_load_seconds", b)] == 0.4
    assert values[("ollama_preload_model_warm_failures_total", a)] == 0.0
    assert values[("ollama_preload_ready", ())] == 1.0
    assert values[("ollama_preload_cycle_seconds_count", ())] == 2.0


@pytest.mark.parametrize("down", [True, False])
def test_ready_json_says_why_each_model_is_not_resident(down: bool) -> None:
    rig = Rig("a", fail=set() if down else {"a"})
    rig.server.down = down
    rig.cycle()
    body = rig.keeper.snapshot().to_json(rig.clock.wall)
    assert body["ready"] is False
    (server,) = body["servers"]
    assert server["reachable"] is (not down)
    assert server["models"][0]["why_not"]


def test_waiting_for_the_server_at_start_has_no_deadline_and_logs_one_line_each_way() -> None:
    rig = Rig("a")
    rig.server.down = True
    delay = rig.cycle()
    for _ in range(2000):  # far longer than any wait timeout: still polling, never giving up
        delay = rig.step(delay)
    assert delay <= 1.0
    rig.server.down = False
    rig.step(delay)
    events = [record["event"] for record in rig.records() if record["event"] != "summary"]
    assert events == ["unreachable", "ready", "warming", "warmed", "resident"]
    assert 1 <= len(rig.events("summary")) <= 3  # at most one every ten minutes, whatever the state
    assert "after" in rig.events("ready")[0]["message"]
    assert rig.keeper.snapshot().ready


def test_a_refusal_is_not_ready_with_a_hint_and_is_asked_again_only_every_interval() -> None:
    rig = Rig("a")

    def refuse(*, timeout: Timeout) -> list[RunningModel]:
        raise OllamaResponseError("Forbidden", status=403, url=URL)

    rig.server.ps = refuse  # type: ignore[method-assign]
    assert rig.cycle() == INTERVAL
    assert rig.step() == INTERVAL
    problem = rig.keeper.snapshot().servers[0].problem
    assert problem is not None and "OLLAMA_HOST" in problem
    assert rig.warmer.warmed == []
    assert len(rig.events("not-ready")) == 1


def test_a_failed_reassert_counts_as_a_failure_but_the_model_stays_resident() -> None:
    rig = Rig("a")
    rig.cycle()
    rig.server.load("a", parse_keep_alive("5m"))
    rig.warmer.fail = {"a"}
    rig.step()
    assert rig.model("a")["failures"] == 1
    assert rig.model("a")["resident"] is True
    assert rig.keeper.snapshot().ready
