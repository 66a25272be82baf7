"""Wait until the server answers `GET /api/version`, within a hard deadline.

Ollama listens before it serves (GPU discovery runs between the two), so a successful connect proves
nothing: each attempt needs a real HTTP answer, and its own timeout so a silent server cannot hold us past
the deadline. Polling starts fast and stays fast because detection lag is the whole point of the tool: a
refused connect to a not-yet-listening server costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import RetryCallState

from preloader.client import OllamaClient
from preloader.durations import format_seconds
from preloader.errors import OllamaBadResponse, OllamaError, OllamaResponseError, ServerNotReady
from preloader.logs import EventLog
from preloader.retries import polls_until

ATTEMPT_CONNECT_TIMEOUT = 1.0
ATTEMPT_READ_TIMEOUT = 5.0
LOG_EVERY = 5.0  # seconds between "still waiting" lines
_REFUSAL_HINTS = {
    401: "A proxy in front of Ollama wants credentials: set OLLAMA_API_KEY",
    403: "An Ollama bound to loopback refuses a non-local Host header: a proxy in between must send Host: localhost",
    404: "This address answers HTTP but has no /api/version: check OLLAMA_HOST and its path prefix",
}


@dataclass(frozen=True)
class ServerStatus:
    version: str
    waited: float  # seconds until the first successful answer


def wait_for_server(
    client: OllamaClient,
    timeout: float,
    log: EventLog,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> ServerStatus:
    start = clock()
    deadline = start + timeout
    progress = _ProgressLog(log, client.base_url, start, clock)

    def remaining() -> float:
        return max(deadline - clock(), 0.0)

    retrying = polls_until(remaining, _not_up_yet, before_sleep=progress, sleep=sleep)
    log.info(
        "wait",
        f"waiting up to {format_seconds(timeout)} for the server at {client.base_url}",
        url=client.base_url,
        timeout_seconds=timeout,
    )
    try:
        version = retrying(
            lambda: client.version(
                timeout=(
                    min(ATTEMPT_CONNECT_TIMEOUT, max(remaining(), 0.05)),
                    min(ATTEMPT_READ_TIMEOUT, max(remaining(), 0.05)),
                )
            )
        )
    except OllamaResponseError as exc:
        if exc.status < 500:
            raise ServerNotReady(
                f"the server at {client.base_url} refused the health check: {exc}. "
                + _REFUSAL_HINTS.get(exc.status, "Check that OLLAMA_HOST points at an Ollama server")
            ) from exc
        raise ServerNotReady(
            f"the server at {client.base_url} kept failing for {format_seconds(timeout)}: {exc}"
        ) from exc
    except OllamaBadResponse as exc:
        if exc.incomplete:
            raise ServerNotReady(
                f"the server at {client.base_url} kept cutting its answers off for {format_seconds(timeout)}: {exc}"
            ) from exc
        raise ServerNotReady(
            f"the server at {client.base_url} answered the health check, but not as Ollama does: {exc}"
        ) from exc
    except OllamaError as exc:
        raise ServerNotReady(
            f"the server at {client.base_url} did not answer within {format_seconds(timeout)} "
            f"({retrying.statistics.get('attempt_number', 1)} attempts; last: {exc}). Check that Ollama is running "
            "and that OLLAMA_HOST points at it, or raise OLLAMA_PRELOAD_WAIT_TIMEOUT for slow starts"
        ) from exc
    status = ServerStatus(version=version, waited=clock() - start)
    log.info(
        "ready",
        f"server ready after {format_seconds(status.waited)} (Ollama {version})",
        version=version,
        seconds=round(status.waited, 3),
    )
    return status


def _not_up_yet(exc: BaseException) -> bool:
    """No answer, or a proxy's 5xx while Ollama starts behind it. A 4xx is a real answer: waiting won't change it."""
    if isinstance(exc, OllamaResponseError):
        return exc.status >= 500
    if isinstance(exc, OllamaBadResponse):
        return exc.incomplete  # a whole answer that is not Ollama's will not become Ollama's by waiting
    return isinstance(exc, OllamaError)


class _ProgressLog:
    """before_sleep hook: a line every few seconds, not one per attempt."""

    def __init__(self, log: EventLog, url: str, start: float, clock: Callable[[], float]) -> None:
        self._log, self._url, self._start, self._clock = log, url, start, clock
        self._last = start

    def __call__(self, state: RetryCallState) -> None:
        now = self._clock()
        if now - self._last < LOG_EVERY:
            return
        self._last = now
        error = state.outcome.exception() if state.outcome else None
        self._log.info(
            "waiting",
            f"still waiting for the server after {format_seconds(now - self._start)} "
            f"(attempt {state.attempt_number}: {error})",
            attempt=state.attempt_number,
            seconds=round(now - self._start, 3),
            error=str(error),
        )
