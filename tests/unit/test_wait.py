"""The health wait's schedule, with a fake clock: fast first polls, a low cap, a hard deadline, few log lines."""

from __future__ import annotations

import io
import itertools
import json

import pytest

from preloader.client import Timeout
from preloader.errors import OllamaResponseError, OllamaTimeout, OllamaUnreachable, ServerNotReady
from preloader.logs import EventLog
from preloader.retries import MAX_POLL as MAX_WAIT
from preloader.wait import wait_for_server


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class DownUntil:
    """Stands in for OllamaClient.version: refuses until `ready_at`, records each attempt's timeouts."""

    base_url = "http://127.0.0.1:11434"

    def __init__(self, clock: Clock, ready_at: float, error: Exception | None = None) -> None:
        self.clock, self.ready_at = clock, ready_at
        self.error = error or OllamaUnreachable("connection refused", url=self.base_url)
        self.attempts: list[tuple[float, Timeout]] = []

    def version(self, *, timeout: Timeout) -> str:
        self.attempts.append((self.clock.now - 1000.0, timeout))
        if self.clock.now < self.ready_at:
            if isinstance(self.error, OllamaTimeout):
                self.clock.now += timeout[1]  # a silent server holds the attempt for its whole read timeout
            raise self.error
        return "0.11.4"


def run_wait(timeout: float, ready_in: float, error: Exception | None = None) -> tuple[DownUntil, list[dict]]:
    clock = Clock()
    client = DownUntil(clock, clock.now + ready_in, error)
    out = io.StringIO()
    try:
        wait_for_server(client, timeout, EventLog("json", out), clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    finally:
        records = [json.loads(line) for line in out.getvalue().splitlines()]
    return client, records


def test_polling_starts_fast_and_never_waits_longer_than_the_cap() -> None:
    client, _ = run_wait(timeout=60, ready_in=10)
    times = [at for at, _ in client.attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] == pytest.approx(0.1)
    assert max(gaps) <= MAX_WAIT + 1e-9


def test_the_server_is_noticed_within_one_polling_interval_of_becoming_ready() -> None:
    client, records = run_wait(timeout=60, ready_in=7.77)
    assert 0 <= client.attempts[-1][0] - 7.77 <= MAX_WAIT
    ready = records[-1]
    # The reported wait is measured on our clock, not taken from anything the stub says.
    assert ready["event"] == "ready" and ready["seconds"] == pytest.approx(client.attempts[-1][0], abs=1e-3)


def test_the_last_attempt_happens_at_the_deadline_not_a_backoff_step_before() -> None:
    with pytest.raises(ServerNotReady) as caught:
        run_wait(timeout=3.0, ready_in=1e9)
    assert "did not answer within 3.00 s" in str(caught.value) and "connection refused" in str(caught.value)


def test_a_silent_server_cannot_hold_the_wait_past_its_deadline() -> None:
    clock = Clock()
    client = DownUntil(clock, 1e12, OllamaTimeout("no answer", url="u", timeout=5))
    with pytest.raises(ServerNotReady):
        wait_for_server(client, 7.0, EventLog("json", io.StringIO()), clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    for at, (_connect, read) in client.attempts:
        assert at + read <= 7.0 + 0.05  # each attempt's timeout shrinks to the time left
    assert clock.now - 1000.0 <= 7.0 + 0.05


def test_still_waiting_is_logged_every_five_seconds_not_every_attempt() -> None:
    _, records = run_wait(timeout=60, ready_in=21)
    waiting = [record for record in records if record["event"] == "waiting"]
    assert len(waiting) == 4  # at ~5, 10, 15, 20 s, out of about 55 attempts
    assert all("connection refused" in record["error"] for record in waiting)


def test_a_server_silent_for_a_while_is_retried_until_it_answers() -> None:
    client, records = run_wait(timeout=30, ready_in=8, error=OllamaTimeout("no answer", url="u", timeout=5))
    assert len(client.attempts) == 3 and records[-1]["event"] == "ready"


def test_a_4xx_answer_ends_the_wait_at_once() -> None:
    with pytest.raises(ServerNotReady) as caught:
        run_wait(timeout=60, ready_in=1e9, error=OllamaResponseError("", status=401, url="u"))
    assert "OLLAMA_API_KEY" in str(caught.value)
