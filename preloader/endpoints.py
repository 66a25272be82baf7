"""Watch mode's HTTP side: `/ready`, `/live` and `/metrics`, for Compose healthchecks and Kubernetes probes.

Handlers only read the keeper's immutable snapshot, so a scrape or a probe never waits on the loop (which may
be in the middle of a long load) and never sends anything to Ollama.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry

from preloader.keeper import KeeperSnapshot
from preloader.metrics import CONTENT_TYPE, exposition

REQUEST_TIMEOUT = 5.0  # a probe that sends nothing must not hold a handler thread


class Endpoints:
    """A `ThreadingHTTPServer` in a daemon thread; `close()` stops it and frees the port."""

    def __init__(
        self,
        snapshot: Callable[[], KeeperSnapshot],
        registry: CollectorRegistry,
        address: tuple[str, int],
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        handler = _handler_class(snapshot, registry, clock, now)
        server_class = _IPv6Server if ":" in address[0] else ThreadingHTTPServer
        self._server = server_class(address, handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> Endpoints:
        self._thread = threading.Thread(target=self._server.serve_forever, name="preloader-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=2)
        self._server.server_close()

    def __enter__(self) -> Endpoints:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler_class(
    snapshot: Callable[[], KeeperSnapshot],
    registry: CollectorRegistry,
    clock: Callable[[], float],
    now: Callable[[], datetime],
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT
        server_version = "ollama-preloader"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the event log

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/ready":
                state = snapshot()
                self._json(200 if state.ready else 503, state.to_json(now()))
            elif path == "/live":
                state = snapshot()
                live = state.live(clock())
                body = {"live": live, "running": state.running, "last_cycle_at": _iso(state.last_cycle_at)}
                self._json(200 if live else 503, body)
            elif path == "/metrics":
                self._send(200, exposition(registry), CONTENT_TYPE)
            else:
                self._json(404, {"error": f"no such endpoint {path!r}; try /ready, /live or /metrics"})

        def _json(self, status: int, body: Any) -> None:
            self._send(status, (json.dumps(body) + "\n").encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
