"""warm_all: every worker's failure reaches the main flow, at any concurrency, and nothing waits forever."""

from __future__ import annotations

import threading
import time

import pytest

from preloader.entries import ModelEntry, parse_entry
from preloader.results import WarmOutcome
from preloader.run import warm_all


class Boom(RuntimeError):
    pass


class FlakyWarmer:
    """Warms every entry, except that `failing` raises (an unexpected error: a bug, not a model failure)."""

    def __init__(self, failing: str, error: BaseException) -> None:
        self.failing, self.error = failing, error

    def warm(self, entry: ModelEntry) -> WarmOutcome:
        if entry.text == self.failing:
            raise self.error
        time.sleep(0.01)
        return WarmOutcome(entry, "warmed", kind="generate", seconds=0.01)


def run_in_thread(target: object) -> BaseException | None:
    """Run warm_all off the main thread with a deadline: a hang fails the test instead of the suite."""
    caught: list[BaseException] = []

    def body() -> None:
        try:
            target()  # type: ignore[operator]
        except BaseException as exc:
            caught.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "warm_all hung"
    return caught[0] if caught else None


@pytest.mark.parametrize("concurrency", [1, 2, 4, 16])
@pytest.mark.parametrize("failing", ["a", "c", "f"])
@pytest.mark.parametrize("error", [Boom("unexpected"), KeyError("field"), UnicodeEncodeError("latin-1", "x", 0, 1, "")])
def test_an_unexpected_error_in_any_worker_reaches_the_caller_instead_of_hanging(
    concurrency: int, failing: str, error: BaseException
) -> None:
    entries = [parse_entry(name) for name in "abcdef"]
    outcomes: list[WarmOutcome] = []
    raised = run_in_thread(lambda: warm_all(FlakyWarmer(failing, error), entries, concurrency, outcomes))  # type: ignore[arg-type]
    assert raised is error


@pytest.mark.parametrize("concurrency", [1, 3, 16])
def test_every_entry_gets_exactly_one_outcome_when_nothing_fails(concurrency: int) -> None:
    entries = [parse_entry(name) for name in "abcdef"]
    outcomes: list[WarmOutcome] = []
    assert run_in_thread(lambda: warm_all(FlakyWarmer("none", Boom()), entries, concurrency, outcomes)) is None  # type: ignore[arg-type]
    assert sorted(outcome.model for outcome in outcomes) == list("abcdef")
