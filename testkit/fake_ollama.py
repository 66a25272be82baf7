"""A stand-in for an Ollama server, for tests.

It does what a real server cannot do on demand: faults (any status and text, raw or truncated bodies,
connection resets, a start delay, a socket that accepts and stays silent, loads that take exactly N seconds
or fail) and a record of what the client sent. The rest is what `tests/contract/` pins on real Ollama
0.11.4 and 0.32.15 for the routes the preloader uses: status codes, error texts, response shapes, and a
scheduler (serialised loads, keep-alive expiry, eviction, reloads on other runner options, loads aborted
when the client hangs up). `version` picks between the two where they differ (below 0.32.15: as 0.11.4).

Standard library only; binds 127.0.0.1 only; nothing happens at import time.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import json
import math
import os
import re
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

MAX_INT64 = 2**63 - 1
_NS = 1_000_000_000
BUSY_ERROR = "server busy, please try again.  maximum pending requests exceeded"
PULL_NOT_FOUND_ERROR = "pull model manifest: file does not exist"
_LOAD_FAILURE = "llama-server process has terminated: exit status 2"
_FAULT_TEXT = {503: BUSY_ERROR, 499: "request canceled", 500: _LOAD_FAILURE}
_JSON = "application/json; charset=utf-8"
_MODERN = (0, 32, 15)  # the newer behaviour of tests/real/FINDINGS.md
_PS_READY_ONLY_SINCE = (0, 30, 0)  # from v0.30 a model joins the scheduler (and /api/ps) once it serves
# An open-ended generation must stop somewhere: a fixed count keeps it finite but slower than one token.
UNBOUNDED_TOKENS = 64
_TOKEN_DELAY = 0.002
_EMBEDDING_LENGTH = 64


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple([*(int(part) for part in re.findall(r"\d+", version.split("-")[0])), 0, 0, 0][:3])


# --- names: simpler than Ollama's parser, enough for the names tests use ------------------------------

_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,79}")


def _display(text: str) -> str | None:
    """The name as /api/ps reports it (`llama3.2:latest`), or None when Ollama would call it invalid."""
    base, tag = text.rsplit(":", 1) if text.rfind(":") > text.rfind("/") else (text, "latest")
    parts = base.split("/")  # [[host/]namespace/]model; a host with a port is not needed by any test
    if len(parts) > 3 or not all(_PART.fullmatch(p) for p in [*parts, tag]):
        return None
    if len(parts) == 3 and parts[0].lower() == "registry.ollama.ai":
        parts = parts[1:]
    if len(parts) == 2 and parts[0].lower() == "library":
        parts = parts[1:]
    return "/".join(parts) + ":" + tag


def _key(text: str) -> str | None:
    shown = _display(text.strip())
    return shown.lower() if shown else None  # Ollama matches every name part case-insensitively


# --- request fields whose errors reach the client -------------------------------------------------------

_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": _NS, "m": 60 * _NS, "h": 3600 * _NS}
_DURATION_PIECE = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration: nanoseconds, or ValueError with Go's message (overflow checked coarsely)."""
    body = text[1:] if text[:1] in "+-" else text
    pieces = [m.groups() for m in _DURATION_PIECE.finditer(body) if m.group()]
    if body == "0":
        return 0
    for whole, frac, unit in pieces:
        if not unit and (whole or frac):
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNITS and (whole or frac):
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
    total = sum(float(f"{whole or 0}.{frac or 0}") * _UNITS.get(unit, -1) for whole, frac, unit in pieces)
    if not pieces or not all(whole or frac for whole, frac, _ in pieces) or total > MAX_INT64:
        raise ValueError(f'time: invalid duration "{text}"')
    return -int(total) if text.startswith("-") else int(total)


class _ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _ClientGone(Exception):
    """The client hung up (or the fake is stopping) while its request was queued or loading."""


def _keep_alive(value: Any) -> int | None:
    """api.Duration.UnmarshalJSON: nanoseconds (MAX_INT64 = forever); its errors are the handler's 400.

    Seconds beyond int64 nanoseconds (~292 years) overflow in Go to a negative duration that is not
    "forever": -1 here, a model gone as soon as it is idle."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return (
            None if value is None else MAX_INT64 if value < 0 else -1 if value * _NS >= MAX_INT64 else int(value * _NS)
        )
    if isinstance(value, str):
        try:
            ns = parse_duration(value)
        except ValueError as exc:
            raise _ApiError(400, str(exc)) from None
        return MAX_INT64 if ns < 0 else ns
    kind = {bool: "bool", list: "[]interface {}"}.get(type(value), "map[string]interface {}")
    raise _ApiError(400, f"Unsupported type: '{kind}'")


_INTEGER, _FLOAT, _BOOLEAN = ("integer", (int, float)), ("float32", (int, float)), ("boolean", (bool,))
_OPTION_TYPES: dict[str, tuple[str, tuple[type, ...]]] = {
    **dict.fromkeys(("seed", "num_predict", "top_k", "num_ctx", "num_batch", "num_gpu", "num_thread"), _INTEGER),
    **dict.fromkeys(("temperature", "top_p", "min_p", "repeat_penalty"), _FLOAT),
    **dict.fromkeys(("use_mmap", "numa"), _BOOLEAN),
}
# Options that shape the runner: a different value means another runner, hence a reload.
_RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "num_thread", "use_mmap")


def _options(requested: dict[str, Any], default_num_ctx: int) -> tuple[dict[str, Any], int]:
    """api.Options.FromMap: (runner options, num_predict); a mistyped option is a 500, unknown keys pass."""
    for key, value in requested.items():
        name, types = _OPTION_TYPES.get(key, ("", (object,)))
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise _ApiError(500, f'option "{key}" must be of type {name}')
    runner = {k: requested.get(k) for k in _RUNNER_OPTIONS}
    runner["num_ctx"] = int(requested.get("num_ctx") or default_num_ctx)
    return runner, int(requested.get("num_predict", -1))


def _rfc3339(ns: int) -> str:
    """Go's RFC3339Nano in UTC: trailing zeros of the fraction are dropped."""
    secs, frac = divmod(min(ns, MAX_INT64), _NS)
    fraction = f".{frac:09d}".rstrip("0").rstrip(".")
    return datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


# --- records --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float  # time.monotonic() on arrival

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), default)


@dataclass(frozen=True)
class LoadedModel:
    """A snapshot of one resident runner."""

    name: str
    options: dict[str, Any]  # the runner options it was loaded with (num_ctx, ...)
    keep_alive: float  # seconds; math.inf means forever
    load_count: int  # loads of this model so far, this one included


@dataclass
class _Model:
    name: str  # as /api/ps reports it
    embedding: bool = False
    load_delay: float = 0.0
    load_error: str | None = None
    size: int = 100_000_000
    size_vram: int = 0  # bytes in GPU memory, as /api/ps reports them; 0 = CPU only
    context_length: int = 4096  # the trained context; 0.32.15 caps /api/ps `context_length` at it
    from_gguf: bool = False
    load_count: int = 0

    @property
    def key(self) -> str:
        return self.name.lower()

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"manifest:{self.key}".encode()).hexdigest()

    def details(self, modern: bool) -> dict[str, Any]:
        # 0.11.4 names the GGUF blob a model was created from as its parent; 0.32.15 leaves it empty.
        parent = f"/root/.ollama/models/blobs/sha256-{self.digest}" if self.from_gguf and not modern else ""
        family, quantization = ("bert", "F16") if self.embedding else ("llama", "Q4_K_M")
        size = f"{self.size * 2 / 1e6:.0f}M"
        details = {"parent_model": parent, "format": "gguf", "family": family, "families": [family]}
        return details | {"parameter_size": size, "quantization_level": quantization}


@dataclass
class _Runner:
    model: _Model
    options: dict[str, Any]
    keep_alive_ns: int
    load_count: int = 0
    ref_count: int = 0
    loading: bool = True
    expires_ns: int | None = None  # set when the last request lets go

    def snapshot(self) -> LoadedModel:
        keep_alive = math.inf if self.keep_alive_ns >= MAX_INT64 else self.keep_alive_ns / _NS
        return LoadedModel(self.model.name, dict(self.options), keep_alive, self.load_count)

    def expired(self, now: int) -> bool:
        return not self.loading and not self.ref_count and self.expires_ns is not None and self.expires_ns <= now


@dataclass
class _Fault:
    kind: str  # "fail" | "reset" | "truncate"
    times: int
    status: int = 0
    error: str | None = None
    raw_body: bytes | None = None


# --- the server -----------------------------------------------------------------------------------------


class FakeOllama:
    """An Ollama look-alike on 127.0.0.1, with a model store, a scheduler and injectable faults.

    `start_delay`: connections are refused that long after start(). `silent_for`: then accepted but not
    answered that long (Ollama listens before it serves). `legacy_show`: /api/show has no `capabilities`, as
    before v0.6.4. `default_num_ctx` is the server's OLLAMA_CONTEXT_LENGTH.
    """

    def __init__(
        self,
        *,
        version: str = "0.11.4",
        max_loaded: int = 3,
        default_keep_alive: float = 300.0,
        start_delay: float = 0.0,
        silent_for: float = 0.0,
        legacy_show: bool = False,
        pullable: Iterable[str] = (),
        default_num_ctx: int = 4096,
    ) -> None:
        self.version = version
        self.max_loaded = max(1, max_loaded)
        self.default_keep_alive_ns = MAX_INT64 if default_keep_alive < 0 else int(default_keep_alive * _NS)
        self.start_delay, self.silent_for = start_delay, silent_for
        self.legacy_show, self.default_num_ctx = legacy_show, default_num_ctx
        self.modern = _version_tuple(version) >= _MODERN
        self.ps_lists_loading = _version_tuple(version) < _PS_READY_ONLY_SINCE

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._load_lock = threading.Lock()
        self._stopping = threading.Event()
        self._models: dict[str, _Model] = {}
        self._pullable: dict[str, dict[str, Any]] = {}
        self._runners: dict[str, _Runner] = {}
        self._cancelled: list[str] = []
        self._requests: list[RecordedRequest] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._conns: set[socket.socket] = set()
        self._serve_thread: threading.Thread | None = None

        # Bound now (so the URL is known before anything answers) but not listening: connects are refused.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        for name in pullable:
            self.add_pullable(name)

    def start(self) -> FakeOllama:
        if self._serve_thread is None:
            if self.start_delay <= 0:
                self._sock.listen(128)
            self._serve_thread = threading.Thread(target=self._serve, name=f"fake-ollama-{self.port}", daemon=True)
            self._serve_thread.start()
        return self

    def stop(self) -> None:
        """Close the port and every connection; loads in progress give up at once."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
            conns = list(self._conns)
        with contextlib.suppress(OSError):
            self._sock.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=2)

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        if self.start_delay > 0:
            if self._stopping.wait(self.start_delay):
                return
            with contextlib.suppress(OSError):  # closed by stop() meanwhile: accept() below ends the thread
                self._sock.listen(128)
        # Listening but not accepting: handshakes complete into the backlog and requests sit unread.
        if self.silent_for > 0 and self._stopping.wait(self.silent_for):
            return
        self._sock.settimeout(0.05)
        while not self._stopping.is_set():
            try:
                conn, addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._handle, args=(conn, addr), daemon=True).start()

    def _handle(self, conn: socket.socket, addr: Any) -> None:
        with contextlib.suppress(Exception):  # a dropped or reset connection must never take the fake down
            _Handler(conn, addr, self)
        with self._lock:
            self._conns.discard(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def add_model(self, name: str, **spec: Any) -> None:
        """Put a model in the store, replacing one of the same name. `spec`: `embedding`, `load_delay` (every
        load takes exactly that long), `load_error` (then fails with 500 and this text), `size`,
        `size_vram`, `context_length` (trained), `from_gguf` (created by blob upload + /api/create)."""
        shown = _display(name.strip())
        if shown is None:
            raise ValueError(f"invalid model name: {name!r}")
        model = _Model(shown, **spec)
        with self._lock:
            self._models[model.key] = model

    def add_pullable(self, name: str, **spec: Any) -> None:
        """Make `name` downloadable by /api/pull; once pulled it exists as if `add_model(name, **spec)`."""
        key = _key(name)
        if key is None:
            raise ValueError(f"invalid model name: {name!r}")
        with self._lock:
            self._pullable[key] = spec

    def remove_model(self, name: str) -> None:
        with self._lock:
            self._models.pop(_key(name) or "", None)

    def fail(
        self, path: str, status: int, error: str | None = None, times: int = 1, *, raw_body: bytes | None = None
    ) -> None:
        """Answer the next `times` requests to `path` with `status` and `{"error": error}` (a default text
        for 500/503/499), or with `raw_body` as is (`fail(path, 200, raw_body=b"<html>")` is a garbled 200)."""
        text = error if error is not None else _FAULT_TEXT.get(status, f"status {status}")
        self._add_fault(path, _Fault("fail", times, status, text, raw_body))

    def reset_connection(self, path: str, times: int = 1) -> None:
        """Read the next `times` requests to `path`, then drop the connection with a TCP RST."""
        self._add_fault(path, _Fault("reset", times))

    def truncate(self, path: str, times: int = 1) -> None:
        """Answer the next `times` requests to `path` with a 200 JSON body cut in half: the Content-Length
        promises the whole body, half of it is sent, then the connection closes."""
        self._add_fault(path, _Fault("truncate", times))

    def _add_fault(self, path: str, fault: _Fault) -> None:
        if fault.times > 0:
            with self._lock:
                self._faults.setdefault(path, deque()).append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            if not queue:
                return None
            queue[0].times -= 1
            return queue.popleft() if queue[0].times <= 0 else queue[0]

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if r.path == path]

    @property
    def cancelled_loads(self) -> list[str]:
        """Models whose load was aborted because the client hung up, in order."""
        with self._lock:
            return list(self._cancelled)

    def loaded(self) -> dict[str, LoadedModel]:
        """Ready runners by reported name (`llama3.2:latest`); loads still in progress are left out."""
        with self._lock:
            self._reap()
            return {r.model.name: r.snapshot() for r in self._runners.values() if not r.loading}

    def load_count(self, name: str) -> int:
        with self._lock:
            model = self._models.get(_key(name) or "")
            return model.load_count if model is not None else 0

    def evict(self, name: str) -> None:
        """Drop a runner at once, as the scheduler does under memory pressure."""
        with self._cond:
            runner = self._runners.get(_key(name) or "")
            if runner is not None and not runner.loading:
                del self._runners[runner.model.key]
            self._cond.notify_all()

    def _client_gone(self, conn: socket.socket | None) -> bool:
        if self._stopping.is_set():
            return True
        try:
            return conn is not None and conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def _wait_watching(self, seconds: float, conn: socket.socket | None) -> bool:
        """Sleep, but give up (False) as soon as the client hangs up or the fake stops."""
        deadline = time.monotonic() + seconds
        while not self._client_gone(conn):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self._stopping.wait(min(remaining, 0.01))
        return False

    def _wait_cond(self, conn: socket.socket | None) -> None:
        if self._client_gone(conn):
            raise _ClientGone
        self._cond.wait(0.01)

    def _reap(self) -> None:
        now = time.time_ns()
        for key in [key for key, runner in self._runners.items() if runner.expired(now)]:
            del self._runners[key]

    def _use(self, runner: _Runner, keep_alive_ns: int | None) -> _Runner:
        runner.ref_count += 1
        runner.expires_ns = None
        if keep_alive_ns is not None:  # only a request that sets keep_alive changes a loaded model's
            runner.keep_alive_ns = keep_alive_ns
        return runner

    def _acquire(
        self, model: _Model, options: dict[str, Any], keep_alive_ns: int | None, conn: socket.socket | None
    ) -> _Runner:
        """A runner for `model` with these runner options, loading it (one load at a time) if need be."""
        key = model.key
        with self._cond:
            self._reap()
            runner = self._runners.get(key)
            if runner is not None and not runner.loading and runner.options == options:
                return self._use(runner, keep_alive_ns)
        # A request queued behind another load gives up when its client leaves.
        while not self._load_lock.acquire(timeout=0.01):
            if self._client_gone(conn):
                raise _ClientGone
        try:
            with self._cond:
                self._reap()
                current = self._runners.get(key)
                if current is not None and current.options == options:
                    return self._use(current, keep_alive_ns)
                if current is not None:  # other runner options: the old runner finishes its requests, goes
                    while current.ref_count > 0 and self._runners.get(key) is current:
                        self._wait_cond(conn)
                    self._runners.pop(key, None)
                keep = self.default_keep_alive_ns if keep_alive_ns is None else keep_alive_ns
                runner = _Runner(model, dict(options), keep)
                while len(self._runners) >= self.max_loaded:
                    self._reap()
                    # The shortest keep-alive goes first; -1 does not protect a model from eviction.
                    victims = sorted(
                        self._runners.values(), key=lambda r: (r.ref_count > 0, r.keep_alive_ns, r.model.key)
                    )
                    if victims and victims[0].ref_count == 0:
                        del self._runners[victims[0].model.key]
                    elif len(self._runners) >= self.max_loaded:
                        self._wait_cond(conn)
                self._runners[key] = runner
            completed = self._wait_watching(model.load_delay, conn)
            with self._cond:
                self._cond.notify_all()
                if not completed or model.load_error is not None:
                    if self._runners.get(key) is runner:
                        del self._runners[key]
                    if completed:
                        raise _ApiError(500, model.load_error or _LOAD_FAILURE)
                    if not self._stopping.is_set():
                        self._cancelled.append(model.name)
                    raise _ClientGone
                model.load_count += 1
                runner.load_count = model.load_count
                runner.loading, runner.ref_count = False, 1
                return runner
        finally:
            self._load_lock.release()

    def _release(self, runner: _Runner) -> None:
        with self._cond:
            runner.ref_count = max(0, runner.ref_count - 1)
            if runner.ref_count == 0 and runner.keep_alive_ns <= 0:
                if self._runners.get(runner.model.key) is runner:
                    del self._runners[runner.model.key]
            elif runner.ref_count == 0:
                runner.expires_ns = time.time_ns() + runner.keep_alive_ns
            self._cond.notify_all()

    def _expire(self, model: _Model) -> None:
        """keep_alive 0 with nothing to do: unload now if idle, otherwise once the last request ends."""
        with self._cond:
            runner = self._runners.get(model.key)
            if runner is not None and not runner.loading:
                runner.keep_alive_ns = 0
                if runner.ref_count == 0:
                    del self._runners[model.key]
            self._cond.notify_all()

    def _ps(self) -> list[dict[str, Any]]:
        rows = []
        with self._lock:
            self._reap()
            now = time.time_ns()
            for runner in self._runners.values():
                if runner.loading and not self.ps_lists_loading:
                    continue
                expires = runner.expires_ns if runner.expires_ns is not None else now + runner.keep_alive_ns
                model = runner.model
                # 0.11.4 reports the runner's num_ctx as is (99999 on a model trained for 2048); newer cap it.
                num_ctx = int(runner.options["num_ctx"])
                context_length = min(num_ctx, model.context_length) if self.modern else num_ctx
                entry = {"name": model.name, "model": model.name, "size": model.size, "digest": model.digest}
                entry |= {"details": model.details(self.modern), "expires_at": _rfc3339(expires)}
                entry |= {"size_vram": model.size_vram, "context_length": context_length}
                rows.append((min(expires, MAX_INT64), entry))
        return [entry for _, entry in sorted(rows, key=lambda row: -row[0])]


# --- HTTP -----------------------------------------------------------------------------------------------

_ROUTES = {
    "/": ("GET HEAD", "_h_root"),
    "/api/version": ("GET HEAD", "_h_version"),
    "/api/ps": ("GET", "_h_ps"),
    "/api/show": ("POST", "_h_show"),
    "/api/generate": ("POST", "_h_generate"),
    "/api/embed": ("POST", "_h_embed"),
    "/api/pull": ("POST", "_h_pull"),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # streamed lines must leave as soon as they are written

    def __init__(self, conn: socket.socket, addr: Any, fake: FakeOllama) -> None:
        self.fake = fake
        self._held: _Runner | None = None
        super().__init__(conn, addr, fake)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: bytes, content_type: str | None, *, length: int | None = None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode(), _JSON)

    def _drop(self, *, reset: bool) -> None:
        conn = self.connection
        if reset:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            # detach+close frees the descriptor although rfile/wfile still hold the socket object, so
            # with a zero linger the close is an RST.
            os.close(conn.detach())

    def _dispatch(self) -> None:
        fake = self.fake
        path = urlsplit(self.path).path or "/"
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            body: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            body = None
        record = RecordedRequest(self.command, path, dict(self.headers.items()), body, raw, time.monotonic())
        with fake._lock:
            fake._requests.append(record)
        fault = fake._take_fault(path)
        if fault is not None and fault.kind == "reset":
            return self._drop(reset=True)
        if fault is not None and fault.kind == "truncate":
            whole = json.dumps({"model": "truncated", "created_at": _rfc3339(time.time_ns()), "done": True}).encode()
            self._send(200, whole[: len(whole) // 2], _JSON, length=len(whole))
            self.wfile.flush()
            return self._drop(reset=False)
        if fault is not None and fault.raw_body is not None:
            return self._send(fault.status, fault.raw_body, "text/plain")
        if fault is not None:
            return self._json(fault.status, {"error": fault.error})
        methods, handler = _ROUTES.get(path, ("", ""))
        if not handler:
            return self._send(404, b"404 page not found", "text/plain")
        if self.command not in methods.split():
            return self._send(405, b"405 method not allowed", "text/plain")
        try:
            if self.command == "POST" and not isinstance(body, dict):
                raise _ApiError(400, "invalid request body" if raw.strip() else "missing request body")
            getattr(self, handler)(body)
        except _ApiError as exc:
            self._json(exc.status, {"error": exc.message})
        except _ClientGone:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._json(499, {"error": "request canceled"})
        finally:
            self._let_go()

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _dispatch  # http.server dispatches on do_<METHOD>

    def _hold(self, model: _Model, options: dict[str, Any], keep_alive_ns: int | None) -> None:
        self._held = self.fake._acquire(model, options, keep_alive_ns, self.connection)

    def _let_go(self) -> None:
        # Released before the answer goes out, so a client holding its answer sees the scheduler settled.
        if self._held is not None:
            runner, self._held = self._held, None
            self.fake._release(runner)

    def _model(self, raw: Any, *, missing: str) -> _Model:
        if not isinstance(raw, str) or not raw.strip():
            raise _ApiError(404, missing)
        key = _key(raw)
        if key is None:
            # 0.11.4 answers an invalid name as a missing model (404 `model 'a//b' not found`).
            raise _ApiError(400, "invalid model name") if self.fake.modern else _ApiError(404, missing)
        with self.fake._lock:
            model = self.fake._models.get(key)
        if model is None:
            raise _ApiError(404, missing)
        return model

    def _h_root(self, _: Any) -> None:
        self._send(200, b"Ollama is running", "text/plain; charset=utf-8")

    def _h_version(self, _: Any) -> None:
        self._json(200, {"version": self.fake.version})

    def _h_ps(self, _: Any) -> None:
        self._json(200, {"models": self.fake._ps()})

    def _h_show(self, req: dict[str, Any]) -> None:
        raw = req.get("model") or req.get("name") or ""
        if not raw:
            raise _ApiError(400, "model is required")
        # 0.32.15 names the model as /api/ps would (`nope:latest`); 0.11.4 echoes it as sent.
        shown = (_display(raw) or raw) if self.fake.modern else raw
        model = self._model(raw, missing=f"model '{shown}' not found")
        arch = model.details(self.fake.modern)["family"]
        info: dict[str, Any] = {"general.architecture": arch, "general.parameter_count": model.size * 2}
        info |= {f"{arch}.context_length": model.context_length, f"{arch}.embedding_length": _EMBEDDING_LENGTH}
        if model.embedding:
            info[f"{arch}.pooling_type"] = 1  # what tells an embedding model apart when capabilities are missing
        resp: dict[str, Any] = {
            "template": "" if model.embedding else "{{ .Prompt }}",
            "details": model.details(self.fake.modern),
            "model_info": dict(sorted(info.items())),
        }
        if not self.fake.legacy_show:
            resp["capabilities"] = ["embedding"] if model.embedding else ["completion"]
        self._json(200, resp)

    def _h_generate(self, req: dict[str, Any]) -> None:
        fake = self.fake
        start = time.monotonic_ns()
        keep_alive = _keep_alive(req.get("keep_alive"))
        raw_model = req.get("model")
        model = self._model(raw_model, missing=f"model '{raw_model or ''}' not found")
        head = {"model": raw_model, "created_at": _rfc3339(time.time_ns()), "response": ""}
        prompt = req.get("prompt") or ""
        # 0.11.4 compares whole seconds (`int(Seconds()) == 0`), so 0.5 or "500ms" unloads too.
        unload = keep_alive is not None and (keep_alive == 0 if fake.modern else 0 <= keep_alive < _NS)
        if not prompt and unload:  # before the capability check: this unloads embedding models too
            fake._expire(model)
            return self._json(200, head | {"done": True, "done_reason": "unload"})
        if model.embedding:
            raise _ApiError(400, f"{json.dumps(raw_model)} does not support generate")
        options, num_predict = _options(req.get("options") or {}, fake.default_num_ctx)
        self._hold(model, options, keep_alive)
        loaded = time.monotonic_ns()
        if not prompt:  # load only: one object whatever `stream` says, and no metrics
            self._let_go()
            return self._json(200, head | {"done": True, "done_reason": "load"})
        # num_predict 0 is no limit, like -1: never "zero tokens".
        count = UNBOUNDED_TOKENS if num_predict <= 0 else min(num_predict, UNBOUNDED_TOKENS)
        reason = "length" if 0 < num_predict <= UNBOUNDED_TOKENS else "stop"
        # Both preloaders send stream:false, so a generation is always answered as one object.
        eval_start = time.monotonic_ns()
        if not fake._wait_watching(_TOKEN_DELAY * count, self.connection):
            raise _ClientGone
        now = time.monotonic_ns()
        final = head | {"response": " warm" * count, "done": True, "done_reason": reason}
        if not req.get("raw"):
            final["context"] = list(range(1, count + 2))
        final |= {"total_duration": now - start, "load_duration": loaded - start, "prompt_eval_count": 1}
        final |= {"prompt_eval_duration": 1000, "eval_count": count, "eval_duration": now - eval_start}
        self._json(200, final)

    def _h_embed(self, req: dict[str, Any]) -> None:
        start = time.monotonic_ns()
        keep_alive = _keep_alive(req.get("keep_alive"))
        raw_model = req.get("model")
        model = self._model(raw_model, missing=f"model {json.dumps(raw_model)} not found, try pulling it first")
        value = req.get("input")
        inputs = [value] if isinstance(value, str) and value else value if isinstance(value, list) else []
        options, _ = _options(req.get("options") or {}, self.fake.default_num_ctx)
        self._hold(model, options, keep_alive)
        loaded = time.monotonic_ns()
        self._let_go()
        if not inputs:
            return self._json(200, {"model": raw_model, "embeddings": []})
        vectors = []
        for text in inputs:
            seed = hashlib.sha256(f"{model.name}\0{text}".encode()).digest()
            raw = [b - 127.5 for b in (seed * 2)[:_EMBEDDING_LENGTH]]
            norm = math.sqrt(sum(x * x for x in raw)) or 1.0
            vectors.append([x / norm for x in raw])
        answer = {"model": raw_model, "embeddings": vectors, "total_duration": time.monotonic_ns() - start}
        self._json(200, answer | {"load_duration": loaded - start, "prompt_eval_count": len(inputs)})

    def _h_pull(self, req: dict[str, Any]) -> None:
        """Always streamed (both preloaders stream); a failure is an `error` line inside the 200."""
        raw = req.get("model") or req.get("name") or ""
        key = _key(raw)
        if key is None:
            raise _ApiError(400, "invalid model name")
        with self.fake._lock:
            spec = self.fake._pullable.get(key)
        digest, total = hashlib.sha256(key.encode()).hexdigest(), int((spec or {}).get("size", 100_000_000))
        layer = {"status": f"pulling {digest[:12]}", "digest": f"sha256:{digest}", "total": total}
        lines: list[dict[str, Any]] = [{"status": "pulling manifest"}]
        if spec is None:
            lines.append({"error": PULL_NOT_FOUND_ERROR})
        else:  # a zero `completed` is left out (omitempty)
            lines += [layer, layer | {"completed": total // 2}, layer | {"completed": total}]
            lines += [{"status": s} for s in ("verifying sha256 digest", "writing manifest", "success")]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for line in lines:
            if line.get("status") == "success":
                self.fake.add_model(raw, **(spec or {}))
            data = json.dumps(line).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.fake._stopping.wait(0.005)
        self.wfile.write(b"0\r\n\r\n")
