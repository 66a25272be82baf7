"""One preload run, step by step: announce, wait for the server, warm each model, verify residency."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from preloader.client import OllamaClient, RunningModel
from preloader.config import Config
from preloader.durations import format_seconds
from preloader.entries import ModelEntry
from preloader.errors import OllamaError, ServerNotReady
from preloader.logs import EventLog
from preloader.replicas import Replica, Resolver, describe, in_parallel, resolve, resolve_within, system_resolver
from preloader.results import Residency, WarmOutcome
from preloader.retries import ps_reads
from preloader.verify import unverified, verify_residency
from preloader.wait import wait_for_server
from preloader.warm import Warmer

PS_TIMEOUT = (10.0, 60.0)


@dataclass
class Progress:
    """What the run has learned so far about one replica. The CLI reads it even when a signal cuts the run short."""

    replica: str | None = None  # None: the run has one server and its lines name no replica
    server_version: str | None = None
    waited: float | None = None
    outcomes: list[WarmOutcome] = field(default_factory=list)
    residency: dict[str, Residency] = field(default_factory=dict)
    not_ready: str | None = None  # why this server never became healthy


def preload_replicas(
    config: Config,
    log: EventLog,
    progresses: list[Progress],
    *,
    resolver: Resolver = system_resolver,
    connect: Callable[[Replica], OllamaClient] | None = None,
) -> None:
    """Resolve the replicas, then wait for, warm and verify every one of them at once.

    A replica that never becomes healthy is recorded in its `Progress` and the others go on; anything else
    one of them raises ends the run (the CLI turns it into a status). `progresses` fills in as replicas are
    known, so an interrupted run still reports what was done.
    """
    announce(config, log)
    connect = connect or (lambda replica: OllamaClient(replica.url, api_key=config.api_key, proxy=replica.proxy))
    replicas: list[Replica]
    if config.resolve == "all":
        resolution = resolve_within(config, time.monotonic() + config.wait_timeout, resolver)
        log.info("replicas", describe(resolution), replicas=[replica.url for replica in resolution.replicas])
        for missing in resolution.unresolved:
            reason = f"{missing.reason} after {format_seconds(config.wait_timeout)}: no replica to warm"
            log.error("not-ready", f"{missing.target}: {reason}", server=missing.target)
            progresses.append(Progress(replica=missing.target, not_ready=reason))
        replicas = list(resolution.replicas)
    else:
        replicas = list(resolve(config).replicas)
    labelled = config.per_replica
    mine = [Progress(replica=replica.url if labelled else None) for replica in replicas]
    progresses.extend(mine)

    def one(index: int) -> None:
        replica, progress = replicas[index], mine[index]
        replica_log = log.for_replica(replica.url) if labelled else log
        client = connect(replica)
        try:
            preload(config, client, replica_log, progress)
        except ServerNotReady as exc:
            progress.not_ready = str(exc)
            replica_log.error("not-ready", str(exc))
        finally:
            client.close()

    in_parallel(one, range(len(replicas)))


def preload(config: Config, client: OllamaClient, log: EventLog, progress: Progress) -> None:
    """One server: wait for it, warm every model, verify they are resident."""
    status = wait_for_server(client, config.wait_timeout, log)
    progress.server_version, progress.waited = status.version, status.waited
    warm_all(Warmer(client, config, log), config.models, config.concurrency, progress.outcomes)
    if not any(outcome.outcome == "warmed" for outcome in progress.outcomes):
        return
    try:
        running = list_running(client)
    except OllamaError as exc:
        # Warmed is not proven resident: without /api/ps the run cannot say the models are ready.
        progress.residency = unverified(progress.outcomes, str(exc))
        log.error(
            "not-verified",
            f"could not verify that the warmed models are loaded: /api/ps failed ({exc})",
            error=str(exc),
        )
        return
    progress.residency = verify_residency(progress.outcomes, running, datetime.now(timezone.utc))
    report_residency(progress.residency, log)


def announce(config: Config, log: EventLog) -> None:
    names = [entry.text for entry in config.models]
    targets = [target.host.base_url for target in config.targets]
    where = targets[0] if len(targets) == 1 else f"{len(targets)} servers ({', '.join(targets)})"
    if config.resolve == "all":
        where = f"every address of {where}"
    log.info(
        "start",
        f"{len(names)} model(s) to warm on {where}: {', '.join(names)}",
        url=targets[0] if len(targets) == 1 else targets,
        models=names,
    )
    local = [entry for entry in config.models if not entry.name.cloud]
    limit = config.max_loaded_models
    if limit and len(local) > limit:
        log.warning(
            "too-many-models",
            f"{len(local)} models listed but the server keeps at most {limit} (OLLAMA_MAX_LOADED_MODELS): "
            "the first ones will be evicted by the last ones and the run will fail",
            listed=len(local),
            max_loaded_models=limit,
        )


def warm_all(warmer: Warmer, entries: Sequence[ModelEntry], concurrency: int, outcomes: list[WarmOutcome]) -> None:
    """Warm in listed order; with concurrency > 1, up to that many requests are in flight at once."""
    if concurrency <= 1:
        for entry in entries:
            outcomes.append(warmer.warm(entry))
        return
    # Daemon threads rather than a ThreadPoolExecutor: the executor's threads are joined at interpreter exit, so
    # a signal would wait for a 30-minute load to finish. Every worker reports each entry exactly once, as an
    # outcome or as the exception that ended it, so the loop below always gets len(entries) answers.
    todo: queue.Queue[ModelEntry] = queue.Queue()
    done: queue.Queue[WarmOutcome | BaseException] = queue.Queue()
    for entry in entries:
        todo.put(entry)

    def worker() -> None:
        while True:
            try:
                entry = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put(warmer.warm(entry))
            except BaseException as exc:  # handed to the main thread, which raises it
                done.put(exc)

    for _ in range(min(concurrency, len(entries))):
        threading.Thread(target=worker, daemon=True).start()
    for _ in entries:
        result = done.get()
        if isinstance(result, BaseException):
            raise result
        outcomes.append(result)


def list_running(client: OllamaClient) -> list[RunningModel]:
    return ps_reads()(client.ps, timeout=PS_TIMEOUT)


def report_residency(residency: dict[str, Residency], log: EventLog) -> None:
    for model, where in residency.items():
        if where.resident:
            log.info(
                "resident",
                f"resident ({where.where}, expires {where.expires})",
                model=model,
                where=where.where,
                expires=where.expires,
                context_length=where.context_length,
            )
        elif not where.required:
            log.info("unloaded", where.message or "unloaded as asked", model=model)
        else:
            log.error("not-resident", f"not resident: {where.message}", model=model)
