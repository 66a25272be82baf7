"""Check mode: is every listed model resident right now? One `/api/ps`, nothing else.

No warm request, no load, no keep-alive reset: a probe must not change what it measures, and any request
naming a model with a `keep_alive` would rewrite that model's expiry. The decision is a pure function of one
snapshot, and the watch loop (`keeper.py`) uses the same function, so "resident" means one thing everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from preloader.client import RunningModel, Timeout
from preloader.config import Config
from preloader.durations import KeepAlive, format_seconds
from preloader.entries import ModelEntry
from preloader.errors import OllamaError
from preloader.logs import EventLog
from preloader.names import InvalidModelName, parse_model_name
from preloader.replicas import Replica, Resolver, in_parallel, resolve, system_resolver
from preloader.statuses import EXIT_MODELS_NOT_READY, EXIT_OK, EXIT_SERVER_NOT_READY

# A probe answers in a couple of seconds or not at all: orchestrators run it with their own short timeout.
CHECK_TIMEOUT: Timeout = (2.0, 3.0)


@dataclass(frozen=True)
class Finding:
    model: str
    problem: str | None  # None: resident as listed; otherwise what is wrong and what to do


def must_stay_resident(entry: ModelEntry, default_keep_alive: KeepAlive | None) -> bool:
    """Cloud models have nothing to load; an entry that asks for keep_alive 0 asks to be unloaded."""
    if entry.name.cloud:
        return False
    keep_alive = entry.keep_alive or default_keep_alive
    return not (keep_alive is not None and keep_alive.unloads)


def index_running(running: Sequence[RunningModel]) -> dict[str, RunningModel]:
    """`/api/ps` entries keyed like `ModelEntry.name.key` (it reports `llama3.2:latest` for `llama3.2`)."""
    return {_key(model.name): model for model in running}


def residency_problem(entry: ModelEntry, found: RunningModel | None, now: datetime) -> str | None:
    """Why `entry` is not usable as listed in this snapshot, or None when it is."""
    if found is None:
        return "not loaded"
    if found.expires_at is not None and found.expires_at <= now:
        ago = format_seconds((now - found.expires_at).total_seconds())
        return f"its keep-alive ran out {ago} ago; the server is unloading it"
    wanted = entry.options.get("num_ctx")
    if isinstance(wanted, int) and found.context_length is not None and found.context_length != wanted:
        return (
            f"loaded with num_ctx {found.context_length}, but the entry asks for num_ctx={wanted}: a request "
            "with the entry's options reloads it. Make the entry match what your application sends"
        )
    return None


def check_models(
    entries: Sequence[ModelEntry],
    running: Sequence[RunningModel],
    now: datetime,
    default_keep_alive: KeepAlive | None,
) -> list[Finding]:
    """One finding per entry that must stay resident, in listed order."""
    loaded = index_running(running)
    return [
        Finding(entry.text, _explain(residency_problem(entry, loaded.get(entry.name.key), now), loaded))
        for entry in entries
        if must_stay_resident(entry, default_keep_alive)
    ]


def run_check(config: Config, client: ReadsPs, log: EventLog, *, now: datetime | None = None) -> int:
    """The whole of check mode: exit 0 (all resident), 4 (one line per model that is not), 3 (no answer)."""
    try:
        running = client.ps(timeout=CHECK_TIMEOUT)
    except OllamaError as exc:
        log.error(
            "unreachable",
            f"cannot read /api/ps from {client.base_url}: {exc}. Check that the server is up and OLLAMA_HOST "
            f"points at it (exit {EXIT_SERVER_NOT_READY})",
            url=client.base_url,
            exit_status=EXIT_SERVER_NOT_READY,
        )
        return EXIT_SERVER_NOT_READY
    findings = check_models(config.models, running, now or datetime.now(timezone.utc), config.keep_alive)
    missing = [finding for finding in findings if finding.problem is not None]
    for finding in missing:
        log.error("not-resident", f"not resident: {finding.problem}", model=finding.model)
    if missing:
        log.error(
            "check",
            f"{len(missing)} of {len(findings)} model(s) not resident on {client.base_url} "
            f"(exit {EXIT_MODELS_NOT_READY})",
            url=client.base_url,
            not_resident=[finding.model for finding in missing],
            exit_status=EXIT_MODELS_NOT_READY,
        )
        return EXIT_MODELS_NOT_READY
    log.info(
        "check",
        f"{len(findings)} of {len(findings)} model(s) resident on {client.base_url} (exit {EXIT_OK})",
        url=client.base_url,
        exit_status=EXIT_OK,
    )
    return EXIT_OK


def run_checks(
    config: Config,
    log: EventLog,
    connect: Callable[[Replica], ReadsPs],
    *,
    resolver: Resolver = system_resolver,
    now: datetime | None = None,
) -> int:
    """Check every replica at once; the worst status wins: 3 (one did not answer or has no address), else 4."""
    resolution = resolve(config, resolver)
    statuses = []
    for missing in resolution.unresolved:
        log.error(
            "unreachable",
            f"{missing.target}: {missing.reason}; nothing to check there (exit {EXIT_SERVER_NOT_READY})",
            url=missing.target,
            exit_status=EXIT_SERVER_NOT_READY,
        )
        statuses.append(EXIT_SERVER_NOT_READY)

    def one(replica: Replica) -> int:
        client = connect(replica)
        try:
            return run_check(config, client, log.for_replica(replica.url) if config.per_replica else log, now=now)
        finally:
            close = getattr(client, "close", None)
            if close is not None:
                close()

    statuses += in_parallel(one, resolution.replicas)
    if not config.per_replica:
        return statuses[0]
    worst = EXIT_SERVER_NOT_READY if EXIT_SERVER_NOT_READY in statuses else max(statuses, default=EXIT_OK)
    ready = sum(1 for status in statuses if status == EXIT_OK)
    log.info(
        "check-replicas",
        f"every listed model resident on {ready} of {len(statuses)} replica(s) (exit {worst})",
        ready=ready,
        replicas=len(statuses),
        exit_status=worst,
    )
    return worst


class ReadsPs(Protocol):
    """What check mode needs of the client: `OllamaClient`, or a scripted stand-in in tests."""

    base_url: str

    def ps(self, *, timeout: Timeout) -> list[RunningModel]: ...


def _explain(problem: str | None, loaded: Mapping[str, RunningModel]) -> str | None:
    if problem != "not loaded":
        return problem
    now_loaded = ", ".join(model.name for model in loaded.values()) or "nothing"
    return (
        f"not loaded (loaded now: {now_loaded}). Run the preloader (mode once or watch) to load it; if it keeps "
        "disappearing, the server evicts it: raise OLLAMA_MAX_LOADED_MODELS or memory, or list fewer models"
    )


def _key(reported: str) -> str:
    try:
        return parse_model_name(reported).key
    except InvalidModelName:
        return reported.lower()
