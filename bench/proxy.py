"""Timing a real `ollama serve` from outside: when it became ready, and when each request reached it.

A real server logs neither moment with sub-second precision, so the readiness benchmark puts two small
loopback helpers around it:

* `RecordingProxy` relays TCP between the approach under test and the server and notes when every HTTP
  request line passes. While the server does not listen yet, the proxy resets the client's connection,
  which every client treats like a refused one (the preloader, the bash script, curl and `ollama ps`
  all see an unreachable server and try again later).
* `ReadinessProbe` asks the server itself for `GET /api/version` every few milliseconds and keeps the
  moment the first successful probe was *sent*: a conservative "ready" moment (it can only be early, which
  makes every approach's lag look longer, never shorter).
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

_REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|DELETE) (/\S*) HTTP/1\.[01]\r\n")
_CARRY = 64  # bytes kept from the previous chunk, so a request line split across reads is still seen


@dataclass(frozen=True)
class SeenRequest:
    at: float  # time.monotonic() when the chunk holding the request line arrived
    method: str
    path: str


class RecordingProxy:
    def __init__(self, backend_port: int) -> None:
        self.backend_port = backend_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._seen: list[SeenRequest] = []
        self._connections: list[float] = []  # accept moments, refused-by-the-server attempts included
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True)

    def start(self) -> RecordingProxy:
        self._accepter.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._accepter.join(2)
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(2)

    def __enter__(self) -> RecordingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def seen(self) -> list[SeenRequest]:
        with self._lock:
            return list(self._seen)

    @property
    def first_connection(self) -> float | None:
        with self._lock:
            return self._connections[0] if self._connections else None

    def first(self, method: str, path: str) -> SeenRequest | None:
        return next((r for r in self.seen if r.method == method and r.path == path), None)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._connections.append(time.monotonic())
            thread = threading.Thread(target=self._serve, args=(client,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        try:
            backend = socket.create_connection(("127.0.0.1", self.backend_port), timeout=5)
        except OSError:
            # No server yet: answer like a closed port would, with a reset rather than an empty close.
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        backend.settimeout(None)
        with self._lock:
            self._sockets.update((client, backend))
        upstream = threading.Thread(target=self._pipe, args=(client, backend, True), daemon=True)
        upstream.start()
        self._pipe(backend, client, False)
        upstream.join()
        with self._lock:
            self._sockets.difference_update((client, backend))
        for sock in (client, backend):
            with contextlib.suppress(OSError):
                sock.close()

    def _pipe(self, source: socket.socket, sink: socket.socket, record: bool) -> None:
        carry = b""
        try:
            while chunk := source.recv(65536):
                if record:
                    now = time.monotonic()
                    window = carry + chunk
                    for match in _REQUEST_LINE.finditer(window):
                        if match.end() > len(carry):  # not already seen in the previous window
                            self._note(SeenRequest(now, match.group(1).decode(), match.group(2).decode()))
                    carry = window[-_CARRY:]
                sink.sendall(chunk)
        except OSError:
            pass
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def _note(self, request: SeenRequest) -> None:
        with self._lock:
            self._seen.append(request)


class ReadinessProbe:
    """Polls `GET /api/version` on the server directly until it answers; `ready_at` is the send moment."""

    def __init__(self, port: int, interval: float = 0.005) -> None:
        self.port = port
        self.interval = interval
        self.ready_at: float | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"probe-{port}", daemon=True)

    def start(self) -> ReadinessProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)

    def wait(self, timeout: float) -> float | None:
        self._thread.join(timeout)
        return self.ready_at

    def _run(self) -> None:
        while not self._stopping.is_set():
            sent = time.monotonic()
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            try:
                connection.request("GET", "/api/version")
                if connection.getresponse().status == 200:
                    self.ready_at = sent
                    return
            except OSError:
                pass
            finally:
                connection.close()
            self._stopping.wait(self.interval)
