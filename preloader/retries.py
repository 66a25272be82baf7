"""Every retry policy of the preloader, in one place, built from tenacity's pieces.

What is worth another attempt, how long to wait between attempts and when to stop are decided here; the steps
(wait, warm, verify, the keeper) build their `Retrying` from these and add only their own log lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from preloader.errors import OllamaBadResponse, OllamaResponseError, OllamaUnreachable

Sleep = Callable[[float], None]
BeforeSleep = Callable[[RetryCallState], None]

# Polling a server that is not up yet: detection lag is the point of the tool, and a refused connect costs
# nothing, so polls start at 0.1 s and grow by half up to 0.25 s (the mean lag is about half the cap).
FIRST_POLL = 0.1
MAX_POLL = 0.25
POLL_BACKOFF = wait_exponential(multiplier=FIRST_POLL, exp_base=1.5, min=FIRST_POLL, max=MAX_POLL)

# A warm request that failed transiently: 0.5 s doubling up to 10 s, for the configured number of attempts.
REQUEST_BACKOFF = wait_exponential(multiplier=0.5, min=0.5, max=10)

# Reading /api/ps after warming: three tries within a few seconds, then "could not verify".
PS_ATTEMPTS = 3
PS_BACKOFF = wait_exponential(multiplier=0.5, max=4)

# The keeper's own backoffs, between cycles rather than between attempts: after a warm evicted another listed
# model (the server cannot hold the set: minutes, not seconds), and after a warm failed (the request itself was
# already retried).
CONFLICT_BACKOFF = 60.0
FAILURE_BACKOFF = 30.0
MAX_KEEPER_BACKOFF = 600.0

# 5xx answers that will be the same on every attempt: retrying them only delays the report.
_DETERMINISTIC_5XX = (
    "requires more system memory",
    "does not support",
    "incompatible",
    "must be of type",
    "unknown model architecture",
    "file does not exist",
)


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: the server may answer differently in a moment."""
    if isinstance(exc, OllamaUnreachable):
        return True
    if isinstance(exc, OllamaBadResponse):
        return exc.incomplete  # cut off mid-body, like a reset; a complete malformed answer comes back the same
    if isinstance(exc, OllamaResponseError):
        if exc.status in (499, 502, 503, 504):
            return True
        return exc.status >= 500 and not any(text in exc.error for text in _DETERMINISTIC_5XX)
    return False


def transient_failures(
    attempts: int, *, before_sleep: BeforeSleep | None = None, sleep: Sleep = time.sleep
) -> Retrying:
    """A warm (or pull, or show) request: retried while it fails transiently, up to `attempts` in all."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=REQUEST_BACKOFF,
        retry=retry_if_exception(is_transient),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


def ps_reads() -> Retrying:
    """The residency check's `/api/ps`: a failure that may pass gets two more tries."""
    return Retrying(
        stop=stop_after_attempt(PS_ATTEMPTS),
        wait=PS_BACKOFF,
        retry=retry_if_exception(is_transient),
        reraise=True,
    )


def polls_until(
    remaining: Callable[[], float],
    retry_on: Callable[[BaseException], bool],
    *,
    before_sleep: BeforeSleep | None = None,
    sleep: Sleep = time.sleep,
) -> Retrying:
    """Poll fast until an attempt succeeds or the deadline passes; the last attempt falls right at the deadline.

    `remaining` reads the caller's own (injectable) clock, so tests drive the deadline without tenacity's.
    """

    def until_deadline(state: RetryCallState) -> float:
        return min(POLL_BACKOFF(state), remaining())

    return Retrying(
        stop=lambda _state: remaining() <= 0,
        wait=until_deadline,
        retry=retry_if_exception(retry_on),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )


def poll_delay(polls: int) -> float:
    """The n-th poll's delay (n ≥ 1) of the same schedule, for loops that poll without a Retrying (the keeper)."""
    return float(min(MAX_POLL, FIRST_POLL * 1.5 ** (polls - 1)))
