"""Which servers are the replicas, and running one piece of work on each of them at once.

The configured targets are the replicas (`OLLAMA_PRELOAD_RESOLVE=none`), or every address each target's name
resolves to (`all`): a Compose service scaled up or a Kubernetes headless Service is one name with one address
per replica. Requests then go to the address itself, so the `Host` header is that address: a loopback-bound
Ollama accepts a loopback or private IP there, and one bound to a wildcard accepts anything (its
`allowedHostsMiddleware`); the service name would be refused by the first kind (`tests/real/test_replicas_real.py`).

Resolution is a step called per run (once, check) or per cycle (watch): replicas come and go with scaling.
"""

from __future__ import annotations

import ipaddress
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

from preloader.config import Config, Target
from preloader.durations import format_seconds

LOOKUP_TIMEOUT = 5.0  # one lookup; a resolver that does not answer is a resolver that failed
LOOKUP_POLL = 0.25  # how often a name without addresses is looked up again while waiting for it
T = TypeVar("T")
R = TypeVar("R")

Resolver = Callable[[str, int], Sequence[str]]  # (name, port) -> addresses; raises LookupFailed


class LookupFailed(Exception):
    """The resolver gave no answer (as opposed to "no such name", which is an empty answer)."""


@dataclass(frozen=True)
class Replica:
    url: str  # where requests go: the target's URL, or the same with the host replaced by one address
    target: str  # the configured target's URL, which messages name next to the replica
    proxy: str | None = None


@dataclass(frozen=True)
class Unresolved:
    target: str
    reason: str
    temporary: bool  # the lookup failed (keep what was known) rather than answering "no address"


@dataclass(frozen=True)
class Resolution:
    replicas: tuple[Replica, ...]
    unresolved: tuple[Unresolved, ...] = ()


def system_resolver(name: str, port: int) -> list[str]:
    """Every address (A and AAAA) glibc's `getaddrinfo` gives `name`, as the system resolves it; no address is []."""
    try:
        infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", socket.EAI_NONAME)):
            return []
        raise LookupFailed(exc.strerror or str(exc)) from None
    return [str(info[4][0]) for info in infos]


def resolve(config: Config, resolver: Resolver = system_resolver, *, timeout: float = LOOKUP_TIMEOUT) -> Resolution:
    """The replicas of this moment: one per target, or one per address of each target's name."""
    replicas: list[Replica] = []
    unresolved: list[Unresolved] = []
    for target in config.targets:
        url = target.host.base_url
        if config.resolve == "none":
            replicas.append(Replica(url, url, target.proxy.url))
            continue
        try:
            addresses = _addresses(target, resolver, timeout)
        except LookupFailed as exc:
            unresolved.append(Unresolved(url, f"looking up {_name(target)} failed: {exc}", temporary=True))
            continue
        if not addresses:
            unresolved.append(Unresolved(url, f"{_name(target)} has no address (yet)", temporary=False))
        for address in addresses:
            replicas.append(Replica(replace(target.host, host=address).base_url, url, target.proxy.url))
    return Resolution(tuple(dict.fromkeys(replicas)), tuple(unresolved))


def resolve_within(
    config: Config,
    deadline: float,
    resolver: Resolver = system_resolver,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Resolution:
    """Look names up until every target has an address or the deadline passes: a replica that is starting
    (a container being created) has no DNS entry yet, which is "not ready", not "misconfigured"."""
    while True:
        left = deadline - clock()
        resolution = resolve(config, resolver, timeout=max(min(LOOKUP_TIMEOUT, left), 0.05))
        if not resolution.unresolved or left <= 0:
            return resolution
        sleep(min(LOOKUP_POLL, max(deadline - clock(), 0.0)))


def describe(resolution: Resolution) -> str:
    """`http://ollama:11434 → 3 replicas: http://10.0.0.2:11434, …` for the log."""
    by_target: dict[str, list[str]] = {}
    for replica in resolution.replicas:
        by_target.setdefault(replica.target, []).append(replica.url)
    parts = [f"{target} → {len(urls)} replica(s): {', '.join(urls)}" for target, urls in by_target.items()]
    parts += [f"{missing.target} → none: {missing.reason}" for missing in resolution.unresolved]
    return "; ".join(parts)


def in_parallel(work: Callable[[T], R], items: Iterable[T], *, poll: float = 0.5) -> list[R]:
    """`work(item)` for every item at once, results in the items' order; what any of them raised is raised here.

    Daemon threads, not an executor: an executor joins its threads at exit, so a SIGTERM would wait for a
    30-minute load. The caller's thread only waits, in short slices, so a signal handler runs at once.
    One item runs in the caller's thread: one replica behaves exactly as a run without replicas.
    """
    todo = list(items)
    if len(todo) == 1:
        return [work(todo[0])]
    done: queue.Queue[tuple[int, R | None, BaseException | None]] = queue.Queue()

    def run(index: int, item: T) -> None:
        try:
            done.put((index, work(item), None))
        except BaseException as exc:  # handed to the caller's thread, which raises it
            done.put((index, None, exc))

    for index, item in enumerate(todo):
        threading.Thread(target=run, args=(index, item), name=f"preloader-replica-{index}", daemon=True).start()
    results: dict[int, R] = {}
    while len(results) < len(todo):
        try:
            index, result, error = done.get(timeout=poll)
        except queue.Empty:
            continue
        if error is not None:
            raise error
        results[index] = result  # type: ignore[assignment]  # no error: `work` returned this
    return [results[index] for index in range(len(todo))]


def _addresses(target: Target, resolver: Resolver, timeout: float) -> list[str]:
    """The target's addresses, sorted (IPv4 first) so tables and labels keep one order between cycles."""
    name = target.host.connect_host
    answer: queue.Queue[Sequence[str] | BaseException] = queue.Queue()

    def lookup() -> None:
        try:
            answer.put(resolver(name, int(target.host.port)))
        except BaseException as exc:
            answer.put(exc)

    # getaddrinfo has no timeout of its own (a dead DNS server costs 5 s per try and attempt): run it aside.
    threading.Thread(target=lookup, name="preloader-lookup", daemon=True).start()
    try:
        result = answer.get(timeout=timeout)
    except queue.Empty:
        raise LookupFailed(f"no answer within {format_seconds(timeout)}") from None
    if isinstance(result, LookupFailed):
        raise result
    if isinstance(result, BaseException):
        raise LookupFailed(f"{type(result).__name__}: {result}")
    unique = {ipaddress.ip_address(address.partition("%")[0]) for address in result}
    return [str(address) for address in sorted(unique, key=lambda ip: (ip.version, ip))]


def _name(target: Target) -> str:
    return target.host.connect_host
