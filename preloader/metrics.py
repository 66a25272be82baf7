"""Prometheus metrics of the watch loop, made at scrape time from the keeper's snapshot.

A custom collector in its own `CollectorRegistry` (never the global one): every value comes from the one
`KeeperSnapshot`, so `/metrics`, `/ready` and the logs cannot disagree, and nothing is counted twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timezone

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from preloader.keeper import KeeperSnapshot, seconds_until

PREFIX = "ollama_preload"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class KeeperCollector(Collector):
    def __init__(
        self,
        snapshot: Callable[[], KeeperSnapshot],
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self._snapshot, self._now = snapshot, now

    def collect(self) -> Iterator[Metric]:
        snapshot, now = self._snapshot(), self._now()
        labels = ["server", "model"]
        resident = GaugeMetricFamily(f"{PREFIX}_model_resident", "1 when the model is loaded as listed", labels=labels)
        expiry = GaugeMetricFamily(
            f"{PREFIX}_model_expiry_seconds",
            "Seconds until the server unloads the model; +Inf when pinned (keep_alive -1); absent when not loaded",
            labels=labels,
        )
        warm = GaugeMetricFamily(
            f"{PREFIX}_model_last_warm_seconds", "Wall time of the last successful warm request", labels=labels
        )
        load = GaugeMetricFamily(
            f"{PREFIX}_model_load_seconds", "The server's load_duration in the last successful warm", labels=labels
        )
        rewarms = CounterMetricFamily(
            f"{PREFIX}_model_warms",
            "Warm requests that succeeded, by reason (start, restart, keep_alive, evicted, unloaded, options, "
            "override, expiring)",
            labels=[*labels, "reason"],
        )
        failures = CounterMetricFamily(f"{PREFIX}_model_warm_failures", "Warm requests that failed", labels=labels)
        server_up = GaugeMetricFamily(
            f"{PREFIX}_server_up", "1 when the server answered the last /api/ps", labels=["server"]
        )
        server_ready = GaugeMetricFamily(
            f"{PREFIX}_server_ready", "1 when every required model is resident on the server", labels=["server"]
        )
        unreachable = CounterMetricFamily(
            f"{PREFIX}_server_unreachable", "Times the server went from answering to not answering", labels=["server"]
        )
        for server in snapshot.servers:
            server_up.add_metric([server.server], 1.0 if server.reachable else 0.0)
            server_ready.add_metric([server.server], 1.0 if server.ready else 0.0)
            unreachable.add_metric([server.server], float(server.failures))
            for model in server.models:
                if not model.required:
                    continue
                key = [server.server, model.model]
                resident.add_metric(key, 1.0 if model.resident else 0.0)
                left = seconds_until(model.expires_at, now) if model.resident else None
                if left is not None:
                    expiry.add_metric(key, left)
                if model.last_warm_seconds is not None:
                    warm.add_metric(key, model.last_warm_seconds)
                if model.load_seconds is not None:
                    load.add_metric(key, model.load_seconds)
                for reason, count in sorted(model.rewarms.items()):
                    rewarms.add_metric([*key, reason], float(count))
                failures.add_metric(key, float(model.failures))
        yield from (resident, expiry, warm, load, rewarms, failures, server_up, server_ready, unreachable)
        yield GaugeMetricFamily(f"{PREFIX}_ready", "1 when every server is ready", value=1.0 if snapshot.ready else 0.0)
        yield SummaryMetricFamily(
            f"{PREFIX}_cycle_seconds",
            "Duration of the watch loop's cycles (one /api/ps per due server, plus any warm requests)",
            count_value=snapshot.cycles,
            sum_value=snapshot.cycle_seconds_total,
        )
        if snapshot.last_cycle_seconds is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_last_cycle_seconds", "Duration of the last cycle", value=snapshot.last_cycle_seconds
            )


def keeper_registry(
    snapshot: Callable[[], KeeperSnapshot], now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(KeeperCollector(snapshot, now))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
