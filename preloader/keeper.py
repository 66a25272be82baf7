"""Watch mode: keep the listed models resident for as long as we run, and say whether they are.

One loop thread owns all state and mutates it; every cycle it reads `/api/ps` once per server and decides
from that snapshot (with `check.residency_problem`, the same decision check mode makes):

- a listed model that is gone is re-warmed, with the reason when it can be told (see `_why_gone`);
- a present model whose expiry is no longer what we set (a client overrode the keep-alive), or that would
  expire within two intervals, gets its keep-alive re-asserted by a warm request (cheap when loaded);
- an unreachable server is polled fast, with no deadline, and everything is re-warmed once it is back;
- when re-warming one listed model evicts another listed one, the server cannot hold the set: we stop
  re-warming it, say so, and retry after a capped backoff, so the loop never thrashes the server.

Readers (HTTP endpoints, metrics) only ever see an immutable `KeeperSnapshot`, published under a lock.
Logs: one line per change of state, nothing per healthy cycle, a summary at most every ten minutes.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Literal, Protocol

from preloader.check import index_running, must_stay_resident, residency_problem
from preloader.client import OllamaClient, RunningModel, Timeout
from preloader.config import Config
from preloader.durations import KeepAlive, format_seconds
from preloader.entries import ModelEntry
from preloader.errors import OllamaBadResponse, OllamaError, OllamaResponseError
from preloader.logs import EventLog
from preloader.replicas import Replica, Resolution, in_parallel
from preloader.results import WarmOutcome
from preloader.retries import CONFLICT_BACKOFF, FAILURE_BACKOFF, MAX_KEEPER_BACKOFF, poll_delay
from preloader.verify import FOREVER_YEAR, describe_expiry, placement
from preloader.wait import ATTEMPT_CONNECT_TIMEOUT, ATTEMPT_READ_TIMEOUT
from preloader.warm import Warmer

DEFAULT_INTERVAL = 10.0
MAX_INTERVAL = 30.0
PS_TIMEOUT: Timeout = (ATTEMPT_CONNECT_TIMEOUT, ATTEMPT_READ_TIMEOUT)
SLOW_POLL_AFTER = 300.0  # a server down this long is not restarting: poll once a second instead of 4 times
SLOW_POLL = 1.0
OVERRIDE_SLACK = timedelta(seconds=1)  # the server rounds nothing, but our two reads of its clock differ a little
STOP_GRACE = 5.0  # how long a stop waits for a warm request in flight before the process lets it go

Reason = Literal["start", "restart", "keep_alive", "evicted", "unloaded", "options", "override", "expiring"]
REASONS: dict[Reason, str] = {
    "start": "first warm of this run",
    "restart": "the server restarted",
    "keep_alive": "its keep-alive ran out",
    "evicted": "another model evicted it",
    "unloaded": "it was unloaded by a request with keep_alive 0, or by the server (a restart quicker than the "
    "interval looks the same)",
    "options": "it is loaded with other options than the entry's",
    "override": "a client overrode its keep-alive",
    "expiring": "its keep-alive would run out within two intervals",
}


@dataclass(frozen=True)
class KeeperSettings:
    interval: float = DEFAULT_INTERVAL
    keep_alive: KeepAlive | None = None  # the run's default; an entry's own wins
    conflict_backoff: float = CONFLICT_BACKOFF
    failure_backoff: float = FAILURE_BACKOFF
    max_backoff: float = MAX_KEEPER_BACKOFF
    summary_every: float = 600.0
    warm_budget: float = 1800.0 * 3  # longest a warm may take, retries included: /live stays 200 meanwhile


# --- What readers see --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelState:
    model: str
    required: bool = True
    resident: bool = False
    why_not: str | None = "not warmed yet"
    expires_at: datetime | None = None
    where: str | None = None
    context_length: int | None = None
    last_warm_seconds: float | None = None
    load_seconds: float | None = None
    changed_at: datetime | None = None
    rewarms: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    failures: int = 0

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "model": self.model,
            "required": self.required,
            "resident": self.resident,
            "why_not": None if self.resident else self.why_not,
            "where": self.where,
            "expires": describe_expiry(self.expires_at, now) if self.resident else None,
            "expires_at": _iso(self.expires_at),
            "context_length": self.context_length,
            "last_warm_seconds": _round(self.last_warm_seconds),
            "load_seconds": _round(self.load_seconds),
            "changed_at": _iso(self.changed_at),
            "rewarms": dict(self.rewarms),
            "failures": self.failures,
        }


@dataclass(frozen=True)
class ServerState:
    server: str
    models: tuple[ModelState, ...]
    reachable: bool | None = None  # None: not asked yet
    version: str | None = None
    problem: str | None = None  # why the server as a whole is not ready (unreachable, refusing, thrashing)
    retry_at: datetime | None = None  # when a backed-off re-warm is tried again
    failures: int = 0  # cycles in which the server could not be read

    @property
    def ready(self) -> bool:
        return bool(self.reachable) and self.problem is None and all(m.resident for m in self.models if m.required)

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "server": self.server,
            "ready": self.ready,
            "reachable": self.reachable,
            "version": self.version,
            "problem": self.problem,
            "retry_at": _iso(self.retry_at),
            "models": [model.to_json(now) for model in self.models],
        }


@dataclass(frozen=True)
class KeeperSnapshot:
    servers: tuple[ServerState, ...]
    interval: float
    unresolved: tuple[str, ...] = ()  # names (resolve=all) that have no address: nothing there is ready
    running: bool = False
    alive_until: float = 0.0  # monotonic deadline: past it without a new cycle, the loop is wedged
    cycles: int = 0
    cycle_seconds_total: float = 0.0
    last_cycle_seconds: float | None = None
    last_cycle_at: datetime | None = None

    @property
    def ready(self) -> bool:
        return bool(self.servers) and not self.unresolved and all(server.ready for server in self.servers)

    def live(self, monotonic_now: float) -> bool:
        return self.running and monotonic_now < self.alive_until

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "running": self.running,
            "interval_seconds": self.interval,
            "last_cycle_at": _iso(self.last_cycle_at),
            "servers": [server.to_json(now) for server in self.servers],
            **({"unresolved": list(self.unresolved)} if self.unresolved else {}),
        }


# --- What the loop needs from the outside world -------------------------------------------------------------


class ServerClient(Protocol):
    base_url: str

    def ps(self, *, timeout: Timeout) -> list[RunningModel]: ...

    def version(self, *, timeout: Timeout) -> str: ...


class WarmsModels(Protocol):
    def warm(self, entry: ModelEntry) -> WarmOutcome: ...


@dataclass(frozen=True)
class Server:
    client: ServerClient
    warmer: WarmsModels
    target: str | None = None  # the configured name this replica's address came from (resolve=all)


class StopRequested(Exception):
    """Raised out of a retry's sleep so a stop never waits for a backoff to end."""


# --- The loop ------------------------------------------------------------------------------------------------


@dataclass
class _Work:
    """The loop thread's own view of one server; readers never touch it."""

    server: Server
    state: ServerState
    log: EventLog  # the keeper's log, naming this server in text when there are several
    last_seen: dict[str, RunningModel] = field(default_factory=dict)  # listed models at their last sighting
    previous_keys: set[str] | None = None  # every model in the last successful /api/ps
    set_expiry: dict[str, datetime] = field(default_factory=dict)  # what our last warm left as expiry
    warmed_once: set[str] = field(default_factory=set)
    down_since: float | None = None
    polls: int = 0
    restarted: bool = False
    backoff: float | None = None
    backoff_until: float | None = None
    conflict: str | None = None  # why re-warming is paused: the server cannot hold the listed set
    model_retry: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (not before, backoff)
    due: float = 0.0  # monotonic time of this server's next pass
    contacted: bool = False  # it has answered at least once


class Keeper:
    def __init__(
        self,
        servers: Sequence[Server],
        entries: Sequence[ModelEntry],
        log: EventLog,
        settings: KeeperSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
        stop_event: threading.Event | None = None,
        discover: Callable[[], Resolution] | None = None,
        connect: Callable[[Replica], Server] | None = None,
        labelled: bool = False,
    ) -> None:
        """`discover` and `connect`: the servers are whatever `discover` answers at the start of each cycle
        (replicas behind a name come and go); without them, `servers` is the fixed set."""
        self.settings = settings or KeeperSettings()
        self._entries = tuple(entries)
        self._log, self._clock, self._now = log, clock, now
        self._stop = stop_event or threading.Event()
        self._lock = threading.Lock()
        self._required = {
            entry.name.key: must_stay_resident(entry, self.settings.keep_alive) for entry in self._entries
        }
        self._discover, self._connect, self._labelled = discover, connect, labelled or len(servers) > 1
        self._unresolved: tuple[str, ...] = ()  # names that have no address: not ready until they have one
        self._next_lookup = 0.0
        self._works = [self._new_work(server) for server in servers]
        self._cycles, self._cycle_total = 0, 0.0
        self._last_cycle: tuple[float, datetime] | None = None
        self._alive_until = clock() + 3 * self.settings.interval
        self._last_summary = clock()
        self._running = False
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._snapshot = self._build_snapshot()

    @classmethod
    def from_config(
        cls,
        config: Config,
        log: EventLog,
        clients: Sequence[OllamaClient],
        *,
        interval: float = DEFAULT_INTERVAL,
        discover: Callable[[], Resolution] | None = None,
    ) -> Keeper:
        """The production wiring: one Warmer per server, whose retry sleeps end as soon as a stop is asked.
        With `discover`, servers are made from the replicas it finds each cycle (and `clients` may be empty)."""
        stop = threading.Event()
        labelled = config.per_replica or len(clients) > 1

        def sleep(seconds: float) -> None:
            if stop.wait(seconds):
                raise StopRequested

        def server(client: OllamaClient, target: str | None = None) -> Server:
            quiet = _WarningsOnly(log.for_replica(client.base_url) if labelled else log)
            return Server(client, Warmer(client, config, quiet, sleep=sleep), target)

        def connect(replica: Replica) -> Server:
            client = OllamaClient(replica.url, api_key=config.api_key, proxy=replica.proxy)
            return server(client, replica.target)

        settings = KeeperSettings(
            interval=interval,
            keep_alive=config.keep_alive,
            warm_budget=config.attempts * (config.warm_timeout + 10.0) + 3 * interval,
        )
        return cls(
            [server(client) for client in clients],
            config.models,
            log,
            settings,
            stop_event=stop,
            discover=discover,
            connect=connect if discover is not None else None,
            labelled=labelled,
        )

    def close(self) -> None:
        """Close the clients of every server the keeper made itself (from discovered replicas)."""
        if self._connect is None:
            return
        for work in self._works:
            _close(work.server.client)

    # -- what readers call ---------------------------------------------------------------------------------

    def snapshot(self) -> KeeperSnapshot:
        with self._lock:
            return self._snapshot

    def stop(self) -> None:
        """Ask the loop to end: no new request starts; one in flight finishes or is let go (see `watch`)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- the loop ------------------------------------------------------------------------------------------

    def run_forever(self) -> None:
        self._running = True
        self._publish()
        try:
            while not self._stop.is_set():
                delay = self.cycle()
                self._stop.wait(delay)
        except StopRequested:
            pass
        finally:
            self._running = False
            self._publish()

    def start(self) -> threading.Thread:
        """Run the loop in a daemon thread: a stop must never wait for a load the process can abandon."""

        def target() -> None:
            try:
                self.run_forever()
            except BaseException as exc:  # handed to the caller of `join`, which owns exit statuses
                self._error = exc

        self._thread = threading.Thread(target=target, name="preloader-keeper", daemon=True)
        self._thread.start()
        return self._thread

    def watch(self, *, grace: float = STOP_GRACE) -> bool:
        """Run the loop in its thread until `stop()` (the CLI's SIGTERM/SIGINT handlers call it); True if it
        ended cleanly, False if a warm request was still in flight after `grace` seconds.

        The calling thread only waits, so a signal is handled at once even while a load is in flight. A warm in
        flight gets `grace` seconds; past that the caller exits, the connection closes, and Ollama aborts that
        load cleanly (it never keeps a half-loaded model for a client that left).
        """
        self.start()
        while not self._stop.is_set() and not self.join(0.5):
            pass
        clean = self.join(grace)
        if not clean:
            self._log.warning(
                "stopping",
                f"stopped with a warm request in flight after {format_seconds(grace)}; the server "
                "aborts that load when we disconnect",
            )
        self._log.info("stopped", "stopped on request")
        return clean

    def join(self, timeout: float) -> bool:
        """Wait for the loop to end; True if it did. Re-raises what killed it."""
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                return False
        if self._error is not None:
            raise self._error
        return True

    def cycle(self) -> float:
        """One pass over every server that is due; returns the seconds until the next one is.

        Servers have their own schedules: one that is down is polled fast without hurrying the others. Due
        servers are handled at once, each in its own thread.
        """
        start, wall = self._clock(), self._now()
        if self._discover is not None and start >= self._next_lookup:
            # Once per interval: a down server is polled 4 times a second, its name need not be looked up as often.
            self._next_lookup = start + self.settings.interval
            self._rediscover()

        def one(work: _Work) -> None:
            if not self._stop.is_set():
                work.due = self._clock() + self._cycle_server(work)

        # Replicas are independent machines: one loading a model for minutes must not delay the others' checks.
        # Each pass touches only its own _Work; the snapshot is rebuilt from immutable states.
        in_parallel(one, [work for work in self._works if work.due <= start])
        end = self._clock()
        self._cycles += 1
        self._cycle_total += end - start
        self._last_cycle = (end - start, wall)
        self._alive_until = end + 3 * self.settings.interval
        self._maybe_summarize(end)
        self._publish()
        return max(min((work.due for work in self._works), default=end + self.settings.interval) - end, 0.0)

    def _new_work(self, server: Server) -> _Work:
        url = server.client.base_url
        models = tuple(ModelState(entry.text, required=self._required[entry.name.key]) for entry in self._entries)
        log = self._log.for_replica(url, json_field=False) if self._labelled else self._log
        return _Work(server, ServerState(url, models), log)

    def _rediscover(self) -> None:
        """Follow the replicas: a new address is a server to warm in this very cycle; a vanished one leaves
        readiness. A lookup that failed (not "no such name") keeps that name's servers: DNS hiccups are not scaling.
        """
        assert self._discover is not None and self._connect is not None
        resolution = self._discover()
        found = {replica.url: replica for replica in resolution.replicas}
        failed = {missing.target for missing in resolution.unresolved if missing.temporary}
        kept: list[_Work] = []
        for work in self._works:
            if work.state.server in found or work.server.target in failed:
                kept.append(work)
                continue
            self._log.warning(
                "replica-gone",
                f"replica {work.state.server} is no longer an address of {work.server.target}: it leaves readiness",
                server=work.state.server,
            )
            _close(work.server.client)
        known = {work.state.server for work in kept}
        for url, replica in found.items():
            if url in known:
                continue
            self._log.info(
                "replica-new", f"new replica {url} of {replica.target}: warming it", server=url, target=replica.target
            )
            kept.append(self._new_work(self._connect(replica)))
        self._works = kept
        unresolved = tuple(
            f"{missing.target}: {missing.reason}"
            for missing in resolution.unresolved
            if not missing.temporary or not any(work.server.target == missing.target for work in kept)
        )
        if unresolved != self._unresolved:
            for problem in unresolved:
                self._log.warning("no-replica", f"{problem}; waiting for an address (not ready meanwhile)")
        self._unresolved = unresolved

    # -- one server ----------------------------------------------------------------------------------------

    def _cycle_server(self, work: _Work) -> float:
        client = work.server.client
        try:
            running = client.ps(timeout=PS_TIMEOUT)
        except OllamaError as exc:
            if _will_not_change(exc):  # a real answer that waiting will not change: a proxy or address problem
                self._set_problem(work, f"the server refused /api/ps: {exc}. Check OLLAMA_HOST and OLLAMA_API_KEY")
                return self.settings.interval
            return self._server_down(work, exc)
        if work.down_since is not None or not work.contacted:
            self._server_up(work)
        self._set_problem(work, work.conflict)  # a refusal, or an outage, is over

        now, mono = self._now(), self._clock()
        loaded = index_running(running)
        if not work.restarted and any(key in work.warmed_once and key not in loaded for key in self._required):
            # Something listed is gone: a restart too quick to see as an outage still shows as a new version.
            self._check_version(work)
        todo = self._decide(work, loaded, now)
        self._observe(work, loaded, now, {entry.name.key: reason for entry, reason in todo})
        work.restarted = False
        if not todo and work.conflict is not None and self._server_holds_all(work):
            self._recovered(work)
        if not todo or self._stop.is_set():
            return self.settings.interval
        if work.backoff_until is not None and mono < work.backoff_until:
            return self.settings.interval
        before = {key for key in loaded if self._is_listed(key)}
        warmed = self._warm(work, todo)
        if not warmed:
            return self.settings.interval
        try:
            after = index_running(client.ps(timeout=PS_TIMEOUT))
        except OllamaError as exc:
            return self._server_down(work, exc)
        self._after_warm(work, before | set(warmed), after, warmed)
        return self.settings.interval

    def _decide(
        self, work: _Work, loaded: Mapping[str, RunningModel], now: datetime
    ) -> list[tuple[ModelEntry, Reason]]:
        """What to warm in this cycle, and why, from one /api/ps snapshot."""
        todo: list[tuple[ModelEntry, Reason]] = []
        horizon = timedelta(seconds=2 * self.settings.interval)
        mono = self._clock()
        for entry in self._entries:
            key = entry.name.key
            if not self._required[key]:
                continue
            not_before = work.model_retry.get(key, (0.0, 0.0))[0]
            if mono < not_before:
                continue
            found = loaded.get(key)
            if key not in work.warmed_once:
                todo.append((entry, "start"))
            elif residency_problem(entry, found, now) is not None:
                todo.append((entry, self._why_gone(work, entry, found, loaded, now)))
            elif found is not None and self._overridden(work, entry, found):
                todo.append((entry, "override"))
            elif found is not None and _expires_within(found, now, horizon):
                todo.append((entry, "expiring"))
        return todo

    def _why_gone(
        self,
        work: _Work,
        entry: ModelEntry,
        found: RunningModel | None,
        loaded: Mapping[str, RunningModel],
        now: datetime,
    ) -> Reason:
        """The best explanation one snapshot and the previous one allow. Ollama logs none of this at INFO."""
        key = entry.name.key
        if found is not None and found.expires_at is not None and found.expires_at <= now:
            return "keep_alive"
        if found is not None:
            return "options"
        if work.restarted:
            return "restart"
        seen = work.last_seen.get(key)
        if seen is not None and seen.expires_at is not None and seen.expires_at <= now + OVERRIDE_SLACK:
            return "keep_alive"
        # The scheduler evicts only to load something: a model that was not there before is the cause.
        if work.previous_keys is not None and any(other not in work.previous_keys for other in loaded):
            return "evicted"
        return "unloaded"

    def _overridden(self, work: _Work, entry: ModelEntry, found: RunningModel) -> bool:
        keep_alive = entry.keep_alive or self.settings.keep_alive
        if keep_alive is None or found.expires_at is None:
            return False  # the server's default applies: there is no value of ours to defend
        if keep_alive.forever:
            return found.expires_at.year < FOREVER_YEAR
        ours = work.set_expiry.get(entry.name.key)
        return ours is not None and found.expires_at < ours - OVERRIDE_SLACK

    def _warm(self, work: _Work, todo: Sequence[tuple[ModelEntry, Reason]]) -> list[str]:
        """Warm each entry in turn; the keys of those that warmed."""
        warmed: list[str] = []
        for entry, reason in todo:
            if self._stop.is_set():
                break
            key = entry.name.key
            self._log_reason(work, entry, reason)
            self._alive_until = max(self._alive_until, self._clock() + self.settings.warm_budget)
            self._publish()
            outcome = work.server.warmer.warm(entry)
            if outcome.outcome != "warmed":
                self._warm_failed(work, entry, outcome, still_loaded=reason in ("override", "expiring"))
                continue
            work.warmed_once.add(key)
            work.model_retry.pop(key, None)
            if reason == "options":
                # Someone loads it with other options: reloading ours back at once would fight them every cycle.
                work.model_retry[key] = (self._clock() + self.settings.conflict_backoff, self.settings.conflict_backoff)
            warmed.append(key)
            self._update_model(
                work,
                entry,
                last_warm_seconds=outcome.seconds,
                load_seconds=outcome.load_seconds,
                rewarms=_plus_one(self._model(work, entry).rewarms, reason),
            )
            load = f"; server load {format_seconds(outcome.load_seconds)}" if outcome.load_seconds is not None else ""
            if reason in ("override", "expiring"):
                continue  # the "reassert" line said it all; a failure would still be logged
            work.log.info(
                "warmed",
                f"warmed in {format_seconds(outcome.seconds or 0.0)} ({outcome.kind}{load})",
                model=entry.text,
                server=work.state.server,
                reason=reason,
                seconds=_round(outcome.seconds),
                load_seconds=_round(outcome.load_seconds),
            )
        return warmed

    def _after_warm(
        self, work: _Work, should_be_resident: set[str], after: Mapping[str, RunningModel], warmed: Sequence[str]
    ) -> None:
        """Look again right after warming: a listed model that vanished meanwhile was evicted by our own warm."""
        now = self._now()
        lost = [key for key in should_be_resident if key not in after and self._required.get(key, False)]
        for key in warmed:
            expires_at = after[key].expires_at if key in after else None
            if expires_at is not None:
                work.set_expiry[key] = expires_at
        if lost:
            self._conflict(work, lost, warmed, after)
        self._observe(work, after, now, {key: "evicted" for key in lost})
        if not lost and work.conflict is not None:
            self._recovered(work)

    def _recovered(self, work: _Work) -> None:
        work.backoff = work.backoff_until = work.conflict = None
        self._set_problem(work, None)
        work.log.info("recovered", "every listed model is resident again", server=work.state.server)

    def _server_holds_all(self, work: _Work) -> bool:
        return all(model.resident for model in work.state.models if model.required)

    def _conflict(
        self, work: _Work, lost: Sequence[str], warmed: Sequence[str], after: Mapping[str, RunningModel]
    ) -> None:
        settings = self.settings
        work.backoff = (
            settings.conflict_backoff if work.backoff is None else min(2 * work.backoff, settings.max_backoff)
        )
        work.backoff_until = self._clock() + work.backoff
        names = {entry.name.key: entry.text for entry in self._entries}
        listed = sum(1 for required in self._required.values() if required)
        now_loaded = ", ".join(model.name for model in after.values()) or "nothing"
        problem = (
            f"warming {', '.join(names[k] for k in warmed)} evicted {', '.join(names[k] for k in lost)}: the server "
            f"cannot keep all {listed} listed models loaded (loaded now: {now_loaded}). "
            "Raise OLLAMA_MAX_LOADED_MODELS on the server, give it more memory, or list fewer models. Re-warming "
            f"paused; next try in {format_seconds(work.backoff)}"
        )
        work.conflict = problem
        work.state = replace(work.state, retry_at=self._now() + timedelta(seconds=work.backoff))
        self._set_problem(work, problem)

    def _warm_failed(self, work: _Work, entry: ModelEntry, outcome: WarmOutcome, *, still_loaded: bool) -> None:
        key = entry.name.key
        previous = work.model_retry.get(key)
        backoff = self.settings.failure_backoff if previous is None else min(2 * previous[1], self.settings.max_backoff)
        work.model_retry[key] = (self._clock() + backoff, backoff)
        state = self._model(work, entry)
        why = f"warm failed: {outcome.error}; next try in {format_seconds(backoff)}"
        if still_loaded:  # a failed re-assert leaves the model where it was: loaded, with someone else's expiry
            self._update_model(work, entry, failures=state.failures + 1)
        else:
            self._update_model(work, entry, failures=state.failures + 1, resident=False, why_not=why)
        work.log.error("warm-failed", why, model=entry.text, server=work.state.server, error=outcome.error)

    # -- server reachability -------------------------------------------------------------------------------

    def _server_down(self, work: _Work, exc: OllamaError) -> float:
        mono = self._clock()
        if work.down_since is None:
            work.down_since, work.polls = mono, 0
            first = not work.contacted
            text = (
                f"waiting for the server at {work.state.server} (no deadline in watch mode): {exc}"
                if first
                else f"server unreachable: {exc}; polling until it is back, then re-warming every listed model"
            )
            work.log.warning("unreachable", text, server=work.state.server, error=str(exc))
            work.state = replace(work.state, reachable=False, failures=work.state.failures + 1)
            self._set_problem(work, f"server unreachable: {exc}")
            for entry in self._entries:
                self._update_model(work, entry, resident=False, why_not="the server is unreachable")
        work.polls += 1
        if mono - work.down_since >= SLOW_POLL_AFTER:
            return SLOW_POLL
        return poll_delay(work.polls)

    def _server_up(self, work: _Work) -> None:
        version = self._check_version(work)
        down_for = self._clock() - work.down_since if work.down_since is not None else None
        if not work.contacted:
            after = f" after {format_seconds(down_for)}" if down_for is not None else ""
            work.log.info(
                "ready",
                f"server ready{after} (Ollama {version or 'unknown'})",
                server=work.state.server,
                version=version,
            )
        elif down_for is not None:
            work.restarted = True
            # A restart is when a user applies the fix a conflict asked for (OLLAMA_MAX_LOADED_MODELS, memory).
            work.backoff = work.backoff_until = None
            work.log.info(
                "back",
                f"server back after {format_seconds(down_for)} (Ollama {version or 'unknown'})",
                server=work.state.server,
                version=version,
                seconds=round(down_for, 3),
            )
        work.contacted, work.down_since = True, None
        work.state = replace(work.state, reachable=True)

    def _check_version(self, work: _Work) -> str | None:
        """Ask the version; a different one than before means the server restarted (an upgrade)."""
        try:
            version: str | None = work.server.client.version(timeout=PS_TIMEOUT)
        except OllamaError:
            return None  # /api/ps answered; the version only adds to the report
        known = work.state.version
        if known is not None and version != known:
            work.restarted = True
            work.backoff = work.backoff_until = None
        work.state = replace(work.state, version=version)
        return version

    # -- state -----------------------------------------------------------------------------------------------

    def _observe(
        self,
        work: _Work,
        loaded: Mapping[str, RunningModel],
        now: datetime,
        reasons: Mapping[str, Reason] | None = None,
    ) -> None:
        """Fold one /api/ps snapshot into the models' states; `reasons` say why the gone ones went."""
        for entry in self._entries:
            key = entry.name.key
            found = loaded.get(key)
            previous = self._model(work, entry)
            problem = residency_problem(entry, found, now)
            if found is not None:
                work.last_seen[key] = found
            if problem is None and found is not None:
                self._update_model(
                    work,
                    entry,
                    resident=True,
                    why_not=None,
                    expires_at=found.expires_at,
                    where=placement(found.size, found.size_vram),
                    context_length=found.context_length,
                )
                if not previous.resident and key in work.warmed_once:
                    work.log.info(
                        "resident",
                        f"resident ({placement(found.size, found.size_vram)}, expires "
                        f"{describe_expiry(found.expires_at, now) or 'unknown'})",
                        model=entry.text,
                        server=work.state.server,
                    )
            else:
                reason = (reasons or {}).get(key)
                why: str | None
                if reason is not None and reason != "start":
                    why = f"gone: {REASONS[reason]}"
                elif previous.resident:
                    why = problem
                else:
                    why = previous.why_not  # what made it go, or fail: keep the first explanation
                self._update_model(work, entry, resident=False, why_not=why, expires_at=None, where=None)
        work.previous_keys = set(loaded)

    def _log_reason(self, work: _Work, entry: ModelEntry, reason: Reason) -> None:
        if reason == "start":  # a load may take minutes: say it started
            work.log.info("warming", "warming", model=entry.text, server=work.state.server, reason=reason)
            return
        state = self._model(work, entry)
        if reason in ("override", "expiring"):
            detail = describe_expiry(state.expires_at, self._now()) or "unknown"
            work.log.info(
                "reassert",
                f"{REASONS[reason]} (expires {detail}); re-asserting it",
                model=entry.text,
                server=work.state.server,
                reason=reason,
            )
            return
        why = f"gone: {REASONS[reason]}; re-warming"
        self._update_model(work, entry, resident=False, why_not=why)
        work.log.warning("gone", why, model=entry.text, server=work.state.server, reason=reason)

    def _set_problem(self, work: _Work, problem: str | None) -> None:
        if problem == work.state.problem:
            return
        work.state = replace(work.state, problem=problem, retry_at=work.state.retry_at if problem else None)
        if problem is not None and not problem.startswith("server unreachable"):
            work.log.error("not-ready", f"not ready: {problem}", server=work.state.server)

    def _model(self, work: _Work, entry: ModelEntry) -> ModelState:
        return work.state.models[self._entries.index(entry)]

    def _update_model(self, work: _Work, entry: ModelEntry, **changes: Any) -> None:
        index = self._entries.index(entry)
        current = work.state.models[index]
        updated = replace(current, **changes)
        if updated == current:
            return
        if updated.resident != current.resident or updated.why_not != current.why_not:
            updated = replace(updated, changed_at=self._now())
        models = list(work.state.models)
        models[index] = updated
        work.state = replace(work.state, models=tuple(models))

    def _is_listed(self, key: str) -> bool:
        return key in self._required

    def _maybe_summarize(self, mono: float) -> None:
        if mono - self._last_summary < self.settings.summary_every:
            return
        self._last_summary = mono
        models = [model for work in self._works for model in work.state.models if model.required]
        resident = sum(1 for model in models if model.resident)
        rewarms = sum(sum(model.rewarms.values()) - model.rewarms.get("start", 0) for model in models)
        failures = sum(model.failures for model in models)
        self._log.info(
            "summary",
            f"keeping {len(self._entries)} model(s) on {len(self._works)} server(s): {resident} of {len(models)} "
            f"resident; since start {rewarms} re-warm(s), {failures} failed warm(s), {self._cycles} cycle(s)",
            resident=resident,
            required=len(models),
            rewarms=rewarms,
            failures=failures,
            cycles=self._cycles,
        )

    def _publish(self) -> None:
        snapshot = self._build_snapshot()
        with self._lock:
            self._snapshot = snapshot

    def _build_snapshot(self) -> KeeperSnapshot:
        last = self._last_cycle
        return KeeperSnapshot(
            servers=tuple(work.state for work in self._works),
            unresolved=self._unresolved,
            interval=self.settings.interval,
            running=self._running,
            alive_until=self._alive_until,
            cycles=self._cycles,
            cycle_seconds_total=self._cycle_total,
            last_cycle_seconds=last[0] if last else None,
            last_cycle_at=last[1] if last else None,
        )


# --- helpers ------------------------------------------------------------------------------------------------


class _WarningsOnly(EventLog):
    """The Warmer's retries and failures still reach the log; its per-warm info lines are the keeper's to say."""

    def __init__(self, inner: EventLog) -> None:  # no super().__init__: every line goes through `inner`
        self.format = inner.format
        self._inner = inner

    def info(self, event: str, message: str, *, model: str | None = None, **fields: Any) -> None:
        pass

    def warning(self, event: str, message: str, *, model: str | None = None, **fields: Any) -> None:
        self._inner.warning(event, message, model=model, **fields)

    def error(self, event: str, message: str, *, model: str | None = None, **fields: Any) -> None:
        self._inner.error(event, message, model=model, **fields)

    def lines(self, event: str, lines: list[str], **fields: Any) -> None:
        self._inner.lines(event, lines, **fields)


def _close(client: ServerClient) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        close()


def _will_not_change(exc: OllamaError) -> bool:
    if isinstance(exc, OllamaResponseError):
        return exc.status < 500
    return isinstance(exc, OllamaBadResponse) and not exc.incomplete


def _expires_within(found: RunningModel, now: datetime, horizon: timedelta) -> bool:
    if found.expires_at is None or found.expires_at.year >= FOREVER_YEAR:
        return False
    return found.expires_at - now <= horizon


def _plus_one(counts: Mapping[str, int], reason: str) -> Mapping[str, int]:
    return MappingProxyType({**counts, reason: counts.get(reason, 0) + 1})


def seconds_until(expires_at: datetime | None, now: datetime) -> float | None:
    """For metrics: +inf for a pinned model, never negative, None when unknown."""
    if expires_at is None:
        return None
    if expires_at.year >= FOREVER_YEAR:
        return math.inf
    return max((expires_at - now).total_seconds(), 0.0)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
