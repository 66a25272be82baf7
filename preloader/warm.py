"""Warm one model: find out what it is, then load it the way it can be loaded. Decisions, no HTTP details.

Completion models get a short generation (`/api/generate`), embedding-only models an embedding
(`/api/embed`): sending an embedding model to generate is refused with a 400, the classic peer bug.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tenacity import RetryCallState, Retrying

from preloader.client import ModelInfo, OllamaClient, Timeout, WarmResult
from preloader.config import Config
from preloader.durations import KeepAlive, format_seconds
from preloader.entries import ModelEntry
from preloader.errors import OllamaError, OllamaResponseError, OllamaTimeout, OllamaUnreachable
from preloader.logs import EventLog
from preloader.results import Kind, WarmOutcome
from preloader.retries import transient_failures

DEFAULT_PROMPT = "Hi"
DEFAULT_EMBED_INPUT = "warm-up"
SHOW_TIMEOUT: Timeout = (10.0, 60.0)
PULL_LOG_EVERY = 5.0


class Warmer:
    """Warms entries with the settings of one run; safe to share between worker threads."""

    def __init__(
        self,
        client: OllamaClient,
        config: Config,
        log: EventLog,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client, self._config, self._log = client, config, log
        self._sleep, self._clock = sleep, clock
        # Never hang up on a load: Ollama aborts a load whose client disconnected, so the read timeout is long.
        self._warm_timeout: Timeout = (10.0, config.warm_timeout)

    def warm(self, entry: ModelEntry) -> WarmOutcome:
        model = entry.text
        if entry.name.cloud:
            self._log.info("skipped", "skipped: cloud model, served by ollama.com; nothing to load here", model=model)
            return WarmOutcome(entry, "skipped", error="cloud model")
        try:
            info, pulled = self._inspect(entry)
            kind: Kind = "embed" if info.embedding_only else "generate"
            self._log.info("warming", f"warming via /api/{kind}", model=model, kind=kind)
            start = self._clock()
            result = self._retrying(model, "warm")(self._send, entry, kind)
            seconds = self._clock() - start
        except OllamaError as exc:
            message = self._explain(entry, exc)
            self._log.error("failed", f"failed: {message}", model=model, error=message)
            return WarmOutcome(entry, "failed", error=message)
        load = f"; server load {format_seconds(result.load_seconds)}" if result.load_seconds is not None else ""
        self._log.info(
            "warmed",
            f"warmed in {format_seconds(seconds)} ({kind}{load})",
            model=model,
            kind=kind,
            seconds=round(seconds, 3),
            load_seconds=_round(result.load_seconds),
        )
        return WarmOutcome(
            entry,
            "warmed",
            kind=kind,
            seconds=seconds,
            load_seconds=result.load_seconds,
            pulled=pulled,
            keep_alive=self._keep_alive(entry),
        )

    def _inspect(self, entry: ModelEntry) -> tuple[ModelInfo, bool]:
        show = self._retrying(entry.text, "show")
        try:
            return show(self._client.show, entry.text, timeout=SHOW_TIMEOUT), False
        except OllamaResponseError as exc:
            if exc.status != 404 or self._config.pull != "missing":
                raise
        self._pull(entry.text)
        return show(self._client.show, entry.text, timeout=SHOW_TIMEOUT), True

    def _pull(self, model: str) -> None:
        self._log.info("pulling", "not on the server; pulling it (OLLAMA_PRELOAD_PULL=missing)", model=model)
        start = last_log = self._clock()
        for progress in self._client.pull(model, timeout=self._warm_timeout):
            now = self._clock()
            if progress.total and progress.completed is not None and now - last_log >= PULL_LOG_EVERY:
                last_log = now
                percent = 100 * progress.completed / progress.total
                self._log.info(
                    "pull-progress",
                    f"pulling: {progress.status} {percent:.0f}%",
                    model=model,
                    status=progress.status,
                    completed=progress.completed,
                    total=progress.total,
                )
        self._log.info(
            "pulled",
            f"pulled in {format_seconds(self._clock() - start)}",
            model=model,
            seconds=round(self._clock() - start, 3),
        )

    def _keep_alive(self, entry: ModelEntry) -> KeepAlive | None:
        return entry.keep_alive or self._config.keep_alive

    def _send(self, entry: ModelEntry, kind: Kind) -> WarmResult:
        keep_alive = self._keep_alive(entry)
        wire = keep_alive.wire if keep_alive is not None else None
        if kind == "embed":
            return self._client.embed(
                entry.text,
                input=entry.prompt or DEFAULT_EMBED_INPUT,
                options=entry.options,
                keep_alive=wire,
                timeout=self._warm_timeout,
            )
        options: dict[str, Any] = {"num_predict": self._config.num_predict, **entry.options}
        # Our own prompt goes in raw: through the chat template a two-letter prompt becomes ~10 tokens whose
        # evaluation cost as much as the load itself on a small CPU model (BENCHMARKS.md). An entry's own prompt
        # (or think) goes through the template, as the application's requests will.
        raw = not entry.prompt and entry.think is None
        return self._client.generate(
            entry.text,
            prompt=entry.prompt or DEFAULT_PROMPT,
            options=options,
            keep_alive=wire,
            think=entry.think,
            raw=raw,
            timeout=self._warm_timeout,
        )

    def _retrying(self, model: str, what: str) -> Retrying:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            wait = state.next_action.sleep if state.next_action else 0.0
            self._log.warning(
                "retry",
                f"{what} attempt {state.attempt_number} failed ({error}); retrying in {format_seconds(wait)}",
                model=model,
                attempt=state.attempt_number,
                error=str(error),
            )

        return transient_failures(self._config.attempts, before_sleep=before_sleep, sleep=self._sleep)

    def _explain(self, entry: ModelEntry, exc: OllamaError) -> str:
        """The server's words, plus what the user can do about them."""
        if isinstance(exc, OllamaResponseError) and exc.status == 404 and self._config.pull == "never":
            return (
                f"not found on the server ({exc.error}). Pull it first (ollama pull {entry.text}) "
                "or set OLLAMA_PRELOAD_PULL=missing"
            )
        if isinstance(exc, OllamaTimeout) and exc.timeout >= self._config.warm_timeout:
            return (
                f"no answer within {format_seconds(exc.timeout)}; the load may still be slow. Raise "
                "OLLAMA_PRELOAD_WARM_TIMEOUT (and the server's OLLAMA_LOAD_TIMEOUT) for large models"
            )
        if isinstance(exc, OllamaResponseError) and exc.status == 403 and exc.error in ("", "Forbidden"):
            return (
                "HTTP 403 with no explanation: a loopback-bound Ollama refuses requests whose Host header "
                "is not local; if a proxy is in between, have it send Host: localhost"
            )
        if isinstance(exc, OllamaUnreachable):
            return f"{exc} (if the server closed the connection mid-request it may have crashed: see its log)"
        if isinstance(exc, OllamaResponseError) and exc.status == 401:
            return f"{exc} — the proxy in front of Ollama wants credentials: set OLLAMA_API_KEY"
        return str(exc)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
