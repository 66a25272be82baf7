"""A stateful stand-in for an Ollama server, for tests.

The fake keeps a model store, a scheduler (serialised loads, keep-alive expiry, eviction, reloads on
different runner options, loads cancelled when the client hangs up) and answers with Ollama's status
codes, error texts and response shapes. Tests drive it through its public methods and then inspect what
the client sent (`requests`) and what the scheduler did (`loaded()`, `load_count()`, `cancelled_loads`).

Standard library only; binds 127.0.0.1 only; nothing happens at import time.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.server
import ipaddress
import json
import math
import os
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "BUSY_ERROR",
    "PULL_NOT_FOUND_ERROR",
    "FakeOllama",
    "LoadedModel",
    "ModelName",
    "RecordedRequest",
    "go_parse_duration",
    "normalize_name",
    "parse_name",
]

MAX_INT64 = 2**63 - 1
_NS = 1_000_000_000
BUSY_ERROR = "server busy, please try again.  maximum pending requests exceeded"
PULL_NOT_FOUND_ERROR = "pull model manifest: file does not exist"
_DEFAULT_LOAD_FAILURE = "llama-server process has terminated: exit status 2"
DEFAULT_HOST = "registry.ollama.ai"
DEFAULT_NAMESPACE = "library"
DEFAULT_TAG = "latest"
_MISSING = "!MISSING!"
# An open-ended generation has to stop somewhere; a fixed count keeps "unbounded" warms finite but slower.
UNBOUNDED_TOKENS = 64
# The reference was read from Ollama's source at v0.33.0-rc2 and holds for v0.32.15; v0.11.4 was observed
# (tests/real/FINDINGS.md). Where they disagree and the reference does not say when the behaviour changed,
# versions before this one behave like the observed v0.11.4.
_REFERENCE_VERSION = (0, 32, 15)
# From v0.30 a model is added to the scheduler only once it serves, so /api/ps no longer lists loads.
_PS_READY_ONLY_SINCE = (0, 30, 0)

_JSON = "application/json; charset=utf-8"
_NDJSON = "application/x-ndjson"
_TEXT = "text/plain; charset=utf-8"


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


_INT_OPTIONS = frozenset(
    _words("num_keep seed num_predict top_k repeat_last_n num_ctx num_batch num_gpu main_gpu")
    + _words("num_thread draft_num_predict")
)
_FLOAT_OPTIONS = frozenset(
    _words("temperature top_p min_p typical_p repeat_penalty presence_penalty frequency_penalty")
)
_BOOL_OPTIONS = frozenset({"use_mmap", "numa"})
_STRING_LIST_OPTIONS = frozenset({"stop"})

_VOCAB = _words(
    " the| model| is| warm| and| ready| to| answer| quickly|.| Loading| weights| into| memory| takes| time|,| so|"
    " we| preload",
    "|",
)


# --------------------------------------------------------------------------------------------------
# Model names


@dataclass(frozen=True)
class ModelName:
    """A fully qualified model name, with the caller's spelling kept."""

    host: str
    namespace: str
    model: str
    tag: str

    @property
    def key(self) -> str:
        """Case-insensitive identity: Ollama matches every part with EqualFold."""
        return self.full().lower()

    def full(self) -> str:
        return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"

    def display_shortest(self) -> str:
        if self.host.lower() != DEFAULT_HOST:
            return f"{self.host}/{self.namespace}/{self.model}:{self.tag}"
        if self.namespace.lower() != DEFAULT_NAMESPACE:
            return f"{self.namespace}/{self.model}:{self.tag}"
        return f"{self.model}:{self.tag}"


def _cut_promised(s: str, sep: str) -> tuple[str, str, bool]:
    # A separator promises a part on both sides; an empty side becomes a part that can never validate.
    i = s.rfind(sep)
    if i < 0:
        return s, "", False
    return s[:i] or _MISSING, s[i + len(sep) :] or _MISSING, True


_PART_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _valid_part(kind: str, part: str) -> bool:
    limit = 350 if kind == "host" else 80
    if not 1 <= len(part.encode("utf-8", "surrogatepass")) <= limit or part[0] not in _PART_START:
        return False
    for ch in part[1:]:
        if ch in _PART_START or ch == "-":
            continue
        if ch == "." and kind != "namespace":
            continue
        if ch == ":" and kind == "host":
            continue
        return False
    return True


def parse_name(text: str) -> ModelName | None:
    """Parse `[host/][namespace/]model[:tag]` the way Ollama does; None when the name is invalid."""
    s = text
    host = namespace = tag = ""
    # "/" can never be part of a tag, so a ":" before the last "/" belongs to the host (a port).
    if s.rfind(":") > s.rfind("/"):
        s, tag, _ = _cut_promised(s, ":")
    s, model, promised = _cut_promised(s, "/")
    if not promised:
        model = s
    else:
        s, namespace, promised = _cut_promised(s, "/")
        if not promised:
            namespace = s
        else:
            scheme, sep, rest = s.partition("://")
            host = rest if sep else scheme
    name = ModelName(host or DEFAULT_HOST, namespace or DEFAULT_NAMESPACE, model, tag or DEFAULT_TAG)
    kinds = (("host", name.host), ("namespace", name.namespace), ("model", name.model), ("tag", name.tag))
    if all(_valid_part(kind, part) for kind, part in kinds):
        return name
    return None


def normalize_name(text: str) -> str:
    """The form Ollama reports names in (`llama3.2:latest`); ValueError for an invalid name."""
    name = parse_name(text.strip())
    if name is None:
        raise ValueError(f"invalid model name: {text!r}")
    return name.display_shortest()


def _go_q(text: str) -> str:
    """Go's %q, for error texts that quote the model string."""
    out = ['"']
    simple = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch in simple:
            out.append(simple[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Go's time.ParseDuration, because keep_alive strings are parsed with it and its errors reach the client


_UNITS: dict[bytes, int] = {
    b"ns": 1,
    b"us": 1_000,
    "\u00b5s".encode(): 1_000,
    "\u03bcs".encode(): 1_000,
    b"ms": 1_000_000,
    b"s": _NS,
    b"m": 60 * _NS,
    b"h": 3600 * _NS,
}


def _time_quote(raw: bytes) -> str:
    out = ['"']
    for byte in raw:
        if byte >= 0x80 or byte < 0x20:
            out.append(f"\\x{byte:02x}")
        elif byte in b'"\\':
            out.append("\\" + chr(byte))
        else:
            out.append(chr(byte))
    out.append('"')
    return "".join(out)


def _is_digit(byte: int) -> bool:
    return 0x30 <= byte <= 0x39


def go_parse_duration(text: str) -> int:
    """Nanoseconds, or ValueError carrying Go's exact message."""
    orig = text.encode("utf-8", "surrogatepass")
    invalid = ValueError("time: invalid duration " + _time_quote(orig))
    s = orig
    total = 0
    neg = False
    if s[:1] in (b"-", b"+"):
        neg = s[:1] == b"-"
        s = s[1:]
    if s == b"0":
        return 0
    if not s:
        raise invalid
    while s:
        if not (s[0] == 0x2E or _is_digit(s[0])):
            raise invalid
        i = value = 0
        while i < len(s) and _is_digit(s[i]):
            if value > (1 << 63) // 10:
                raise invalid
            value = value * 10 + s[i] - 0x30
            if value > 1 << 63:
                raise invalid
            i += 1
        pre = i > 0
        s = s[i:]
        frac, scale, post = 0, 1.0, False
        if s[:1] == b".":
            s = s[1:]
            i, overflow = 0, False
            while i < len(s) and _is_digit(s[i]):
                if not overflow:
                    nxt = frac * 10 + s[i] - 0x30
                    if frac > MAX_INT64 // 10 or nxt > 1 << 63:
                        overflow = True
                    else:
                        frac, scale = nxt, scale * 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            raise invalid
        i = 0
        while i < len(s) and not (s[i] == 0x2E or _is_digit(s[i])):
            i += 1
        if i == 0:
            raise ValueError("time: missing unit in duration " + _time_quote(orig))
        unit_text, s = s[:i], s[i:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise ValueError("time: unknown unit " + _time_quote(unit_text) + " in duration " + _time_quote(orig))
        if value > (1 << 63) // unit:
            raise invalid
        value *= unit
        if frac > 0:
            value += int(float(frac) * (float(unit) / scale))
            if value > 1 << 63:
                raise invalid
        total += value
        if total > 1 << 63:
            raise invalid
    if neg:
        return -total
    if total > MAX_INT64:
        raise invalid
    return total


# --------------------------------------------------------------------------------------------------
# Request binding that fails like gin's ShouldBindJSON into Ollama's request structs


class _ApiError(Exception):
    def __init__(self, status: int, message: str, content_type: str = _JSON) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.content_type = content_type


class _ClientGone(Exception):
    """The client hung up (or the fake is stopping) while its request was queued or loading."""


_GO_TYPES = {
    "string": "string",
    "bool": "bool",
    "int": "int",
    "map": "map[string]interface {}",
    "[]int": "[]int",
    "messages": "[]api.Message",
}


def _fields(spec: str) -> dict[str, str]:
    """`"model:string stream:bool"` -> {"model": "string", "stream": "bool"}: a request struct's JSON fields."""
    return dict(item.split(":", 1) for item in spec.split())


_GENERATE_FIELDS = _fields(
    "model:string prompt:string suffix:string system:string template:string context:[]int stream:bool raw:bool "
    "format:any keep_alive:duration images:any options:map think:any truncate:bool shift:bool logprobs:bool "
    "top_logprobs:int"
)
_CHAT_FIELDS = _fields(
    "model:string messages:messages stream:bool format:any keep_alive:duration tools:any options:map think:any "
    "truncate:bool shift:bool logprobs:bool top_logprobs:int"
)
_EMBED_FIELDS = _fields("model:string input:any truncate:bool dimensions:int keep_alive:duration options:map")
_EMBEDDINGS_FIELDS = _fields("model:string prompt:string keep_alive:duration options:map")
_SHOW_FIELDS = _fields("model:string name:string system:string template:string verbose:bool options:map")
_PULL_FIELDS = _fields("model:string name:string insecure:bool username:string password:string stream:bool")
_DELETE_FIELDS = _fields("model:string name:string")


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _reject_constant(token: str) -> Any:
    # Go's decoder has no NaN/Infinity literals.
    raise ValueError(token)


def _go_syntax_error(text: str, err: json.JSONDecodeError | ValueError) -> str:
    pos = getattr(err, "pos", None)
    if pos is None or pos >= len(text.rstrip()):
        return "unexpected EOF"
    ch = text[pos]
    shown = "'\\''" if ch == "'" else "'" + json.dumps(ch, ensure_ascii=False)[1:-1] + "'"
    msg = getattr(err, "msg", "")
    if "property name" in msg:
        where = "looking for beginning of object key string"
    elif "':' delimiter" in msg:
        where = "after object key"
    elif "',' delimiter" in msg:
        where = "after object key:value pair"
    elif "control character" in msg:
        where = "in string literal"
    else:
        where = "looking for beginning of value"
    return f"invalid character {shown} {where}"


def _parse_keep_alive(value: Any) -> int:
    """api.Duration.UnmarshalJSON: nanoseconds, MAX_INT64 meaning forever."""
    if isinstance(value, bool):
        raise _ApiError(400, "Unsupported type: 'bool'")
    if isinstance(value, (int, float)):
        if value < 0:
            return MAX_INT64
        ns = float(value) * float(_NS)
        # Go's float->int conversion is undefined past int64; treating it as "forever" is the useful reading.
        return MAX_INT64 if not math.isfinite(ns) or ns >= 2**63 else int(ns)
    if isinstance(value, str):
        try:
            ns = go_parse_duration(value)
        except ValueError as exc:
            raise _ApiError(400, str(exc)) from None
        return MAX_INT64 if ns < 0 else ns
    if isinstance(value, list):
        raise _ApiError(400, "Unsupported type: '[]interface {}'")
    raise _ApiError(400, "Unsupported type: 'map[string]interface {}'")


def _bind(raw: bytes, struct_name: str, schema: dict[str, str]) -> dict[str, Any]:
    text = raw.decode("utf-8", "replace")
    stripped = text.lstrip(" \t\r\n")
    if not stripped:
        raise _ApiError(400, "missing request body")
    try:
        # raw_decode, like Go's Decoder.Decode, ignores whatever follows the first value.
        value, _ = json.JSONDecoder(parse_constant=_reject_constant).raw_decode(stripped)
    except json.JSONDecodeError as exc:
        raise _ApiError(400, _go_syntax_error(stripped, exc)) from None
    except ValueError as exc:
        raise _ApiError(400, _go_syntax_error(stripped, exc)) from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _ApiError(400, f"json: cannot unmarshal {_json_kind(value)} into Go value of type api.{struct_name}")
    out: dict[str, Any] = {}
    saved: _ApiError | None = None
    lowered = {name.lower(): name for name in schema}
    for key, item in value.items():
        # encoding/json prefers an exact field match but also accepts a case-insensitive one.
        fname = key if key in schema else lowered.get(key.lower())
        if fname is None or item is None:
            continue
        kind = schema[fname]
        if kind == "duration":
            out[fname] = _parse_keep_alive(item)  # a custom unmarshaler's error aborts decoding at once
            continue
        problem = _type_problem(kind, item)
        if problem is not None:
            offending, go_type = problem
            saved = saved or _ApiError(
                400, f"json: cannot unmarshal {offending} into Go struct field {struct_name}.{fname} of type {go_type}"
            )
            continue
        out[fname] = int(item) if kind == "int" else item
    if saved is not None:
        raise saved
    return out


def _type_problem(kind: str, item: Any) -> tuple[str, str] | None:
    """(offending value, Go type) as Go's UnmarshalTypeError names them, or None when the type fits."""
    got = _json_kind(item)
    go_type = _GO_TYPES.get(kind, kind)
    if kind in ("string", "bool"):
        return None if got == kind else (got, go_type)
    if kind == "int":
        if got != "number":
            return got, go_type
        if float(item).is_integer() and abs(item) < 2**63:
            return None
        return f"number {json.dumps(item)}", go_type
    if kind == "map":
        return None if got == "object" else (got, go_type)
    if kind in ("[]int", "messages"):
        if got != "array":
            return got, go_type
        for element in item:
            if element is None:
                continue
            kind_of = _json_kind(element)
            if kind == "[]int" and (kind_of != "number" or not float(element).is_integer()):
                return kind_of, "int"
            if kind == "messages" and kind_of != "object":
                return kind_of, "api.Message"
    return None


def _runner_options(requested: dict[str, Any], default_num_ctx: int) -> tuple[dict[str, Any], int]:
    """api.Options.FromMap: runner options (with defaults) and num_predict; 500 on a mistyped option."""
    values: dict[str, Any] = {
        "num_ctx": default_num_ctx,
        "num_batch": 512,
        "num_gpu": -1,
        "main_gpu": 0,
        "use_mmap": None,
        "num_thread": 0,
        "draft_num_predict": 0,
    }
    num_predict = -1
    for key, val in requested.items():
        if val is None:
            continue
        if key in _INT_OPTIONS:
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise _ApiError(500, f"option {_go_q(key)} must be of type integer")
            val = int(val)
        elif key in _FLOAT_OPTIONS:
            if isinstance(val, bool) or not isinstance(val, (int, float)):
                raise _ApiError(500, f"option {_go_q(key)} must be of type float32")
        elif key in _BOOL_OPTIONS:
            if not isinstance(val, bool):
                raise _ApiError(500, f"option {_go_q(key)} must be of type boolean")
        elif key in _STRING_LIST_OPTIONS:
            if not isinstance(val, list):
                raise _ApiError(500, f"option {_go_q(key)} must be of type array")
            if not all(isinstance(v, str) for v in val):
                raise _ApiError(500, f"option {_go_q(key)} must be of an array of strings")
        else:
            continue  # unknown keys are only logged by Ollama
        if key in values:
            values[key] = val
        if key == "num_predict":
            num_predict = val
    return values, num_predict


# --------------------------------------------------------------------------------------------------
# Output formatting


def _go_json(obj: Any) -> bytes:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    # encoding/json escapes HTML-significant characters and the JS line separators.
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text.encode("utf-8")


def _rfc3339nano(ns: int) -> str:
    secs, frac = divmod(ns, _NS)
    stamp = datetime.fromtimestamp(secs, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    digits = f"{frac:09d}".rstrip("0")
    return f"{stamp}.{digits}Z" if digits else f"{stamp}Z"


def _now_ns() -> int:
    return time.time_ns()


def _version_tuple(version: str) -> tuple[int, ...]:
    core = version.lstrip("v").split("-", 1)[0].split("+", 1)[0]
    parts: list[int] = []
    for piece in core.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple([*parts, 0, 0, 0][:3])


def _short_float32(x: float) -> float:
    """The float64 whose repr is Go's shortest float32 rendering of x."""
    f32 = struct.unpack("<f", struct.pack("<f", x))[0]
    for digits in range(6, 10):
        text = f"{f32:.{digits}g}"
        if struct.unpack("<f", struct.pack("<f", float(text)))[0] == f32:
            return float(text)
    return f32


def _host_allowed(host_header: str) -> bool:
    """allowedHostsMiddleware for a loopback listener: anything else is refused with an empty 403."""
    host = host_header
    if host.startswith("["):
        end = host.find("]")
        if end > 0 and host[end + 1 : end + 2] == ":":
            host = host[1:end]
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        addr = None
    if addr is not None:
        private = (
            addr.version == 4
            and any(addr in ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
        ) or (addr.version == 6 and addr in ipaddress.ip_network("fc00::/7"))
        if addr.is_loopback or addr.is_unspecified or private:
            return True
    lowered = host.lower()
    if lowered in ("", "localhost", socket.gethostname().lower()):
        return True
    return any(lowered.endswith(suffix) for suffix in (".localhost", ".local", ".internal"))


def _http_date() -> str:
    return email.utils.formatdate(usegmt=True)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"status code {status}"  # what Go writes for a code it has no text for (e.g. 499)


# --------------------------------------------------------------------------------------------------
# Public records


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes
    at: float
    query: str = ""

    def header(self, name: str, default: str | None = None) -> str | None:
        """Case-insensitive header lookup."""
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), default)


@dataclass(frozen=True)
class LoadedModel:
    """A snapshot of one resident runner."""

    name: str
    options: dict[str, Any]
    keep_alive: float  # seconds; math.inf means forever
    expires_at: float | None  # epoch seconds; None while a request holds the runner; math.inf when forever
    load_count: int
    ref_count: int
    loaded_at: float  # time.monotonic()
    size: int
    size_vram: int
    context_length: int


@dataclass
class _ModelSpec:
    name: ModelName
    embedding: bool
    load_delay: float
    size: int
    size_vram: int
    family: str
    context_length: int
    embedding_length: int
    load_error: str | None
    modified_ns: int
    from_gguf: bool = False

    @property
    def key(self) -> str:
        return self.name.key

    @property
    def blob_path(self) -> str:
        return f"/root/.ollama/models/blobs/sha256-{self.digest}"

    @property
    def display(self) -> str:
        return self.name.display_shortest()

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"manifest:{self.key}".encode()).hexdigest()

    @property
    def parameter_count(self) -> int:
        return self.size * 2  # roughly what a 4-bit quantisation packs into that many bytes

    def details(self) -> dict[str, Any]:
        count = self.parameter_count
        size = f"{count / 1e9:.1f}B" if count >= 1e9 else f"{count / 1e6:.0f}M"
        return {
            "parent_model": "",
            "format": "gguf",
            "family": self.family,
            "families": [self.family],
            "parameter_size": size,
            "quantization_level": "Q4_K_M" if not self.embedding else "F16",
        }


@dataclass
class _Runner:
    spec: _ModelSpec
    options: dict[str, Any]
    keep_alive_ns: int
    loaded_at: float
    load_count: int = 0
    ref_count: int = 0
    loading: bool = True
    expires_ns: int | None = None

    def snapshot(self, context_length: int) -> LoadedModel:
        forever = self.keep_alive_ns >= MAX_INT64
        if self.ref_count or self.loading:
            expires: float | None = None
        elif forever:
            expires = math.inf
        else:
            expires = (self.expires_ns or 0) / _NS
        return LoadedModel(
            name=self.spec.display,
            options=dict(self.options),
            keep_alive=math.inf if forever else self.keep_alive_ns / _NS,
            expires_at=expires,
            load_count=self.load_count,
            ref_count=self.ref_count,
            loaded_at=self.loaded_at,
            size=self.spec.size,
            size_vram=self.spec.size_vram,
            context_length=context_length,
        )


@dataclass
class _Fault:
    kind: str  # "fail" | "reset"
    times: int
    status: int = 0
    error: str | None = None
    raw_body: bytes | None = None


_DEFAULT_FAULT_TEXT = {503: BUSY_ERROR, 499: "request canceled", 500: _DEFAULT_LOAD_FAILURE}


# --------------------------------------------------------------------------------------------------
# The server


class FakeOllama:
    """An Ollama look-alike on 127.0.0.1, with a model store and a scheduler."""

    def __init__(
        self,
        *,
        version: str = "0.11.4",
        max_loaded: int = 3,
        default_keep_alive: float = 300.0,
        start_delay: float = 0.0,
        silent_for: float = 0.0,
        legacy_show: bool = False,
        ps_lists_loading: bool | None = None,
        pullable: Iterable[str] = (),
        token_delay: float = 0.002,
        default_num_ctx: int = 4096,
        port: int = 0,
    ) -> None:
        self.version = version
        self.max_loaded = max(1, max_loaded)
        self.default_keep_alive_ns = MAX_INT64 if default_keep_alive < 0 else int(default_keep_alive * _NS)
        self.start_delay = start_delay
        self.silent_for = silent_for
        self.legacy_show = legacy_show
        # None: what the version does (loading models are listed before v0.30); a bool forces it either way.
        self.ps_lists_loading = (
            _version_tuple(version) < _PS_READY_ONLY_SINCE if ps_lists_loading is None else ps_lists_loading
        )
        self.token_delay = token_delay
        self.default_num_ctx = default_num_ctx

        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._load_lock = threading.Lock()
        self._stopping = threading.Event()
        self._models: dict[str, _ModelSpec] = {}
        self._pullable: dict[str, dict[str, Any]] = {}
        self._runners: dict[str, _Runner] = {}
        self._load_counts: dict[str, int] = {}
        self._cancelled: list[str] = []
        self._requests: list[RecordedRequest] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._conns: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._serve_thread: threading.Thread | None = None
        self._started = False
        self._stopped = False

        # Bound now (so the URL is known before anything answers) but not listening: connects are refused.
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", port))
        self.port: int = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

        for name in pullable:
            self.add_pullable(name)

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> FakeOllama:
        if self._started:
            return self
        self._started = True
        if self.start_delay <= 0:
            self._sock.listen(128)
        self._serve_thread = threading.Thread(target=self._serve, name=f"fake-ollama-{self.port}", daemon=True)
        self._serve_thread.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._serve_thread is not None:
            self._serve_thread.join(timeout=2)
        deadline = time.monotonic() + 2
        for thread in list(self._threads):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _serve(self) -> None:
        if self.start_delay > 0:
            if self._stopping.wait(self.start_delay):
                return
            try:
                self._sock.listen(128)
            except OSError:
                return  # stopped while waiting
        # Listening but not accepting: the kernel completes handshakes into the backlog and requests sit
        # unread, which is what a client sees while Ollama runs GPU discovery before serving.
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
                if self._stopping.is_set():
                    conn.close()
                    return
                self._conns.add(conn)
                self._threads = [t for t in self._threads if t.is_alive()]
                thread = threading.Thread(target=self._handle, args=(conn, addr), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _handle(self, conn: socket.socket, addr: Any) -> None:
        try:
            _Handler(conn, addr, self)
        except Exception:
            pass  # a dropped or reset connection must never take the fake down
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    # -- model store -------------------------------------------------------------------------------

    def add_model(
        self,
        name: str,
        *,
        embedding: bool = False,
        load_delay: float = 0.0,
        size: int = 100_000_000,
        size_vram: int = 0,
        family: str = "llama",
        context_length: int = 4096,
        embedding_length: int = 384,
        load_error: str | None = None,
        from_gguf: bool = False,
    ) -> None:
        """Put a model in the local store (replacing one with the same name). `load_error` makes every load
        of it fail with 500 and that text after `load_delay`. `from_gguf` marks a model created from a GGUF
        file (blob upload + /api/create), whose `/api/show` `details.parent_model` is the blob's absolute path."""
        parsed = parse_name(name.strip())
        if parsed is None:
            raise ValueError(f"invalid model name: {name!r}")
        spec = _ModelSpec(
            name=parsed,
            embedding=embedding,
            load_delay=load_delay,
            size=size,
            size_vram=size_vram,
            family=family,
            context_length=context_length,
            embedding_length=embedding_length,
            load_error=load_error,
            modified_ns=_now_ns(),
            from_gguf=from_gguf,
        )
        with self._lock:
            self._models[parsed.key] = spec

    def add_pullable(self, name: str, **model_kwargs: Any) -> None:
        """Make `name` downloadable by /api/pull; once pulled it exists as if `add_model(name, **kwargs)`."""
        parsed = parse_name(name.strip())
        if parsed is None:
            raise ValueError(f"invalid model name: {name!r}")
        with self._lock:
            self._pullable[parsed.key] = {"name": name.strip(), **model_kwargs}

    def remove_model(self, name: str) -> None:
        parsed = parse_name(name.strip())
        if parsed is not None:
            with self._lock:
                self._models.pop(parsed.key, None)

    def _lookup(self, name: ModelName) -> _ModelSpec | None:
        with self._lock:
            return self._models.get(name.key)

    # -- version-dependent behaviour ---------------------------------------------------------------

    @property
    def _follows_reference(self) -> bool:
        """True for versions the reference describes; older ones do what v0.11.4 was seen doing."""
        return _version_tuple(self.version) >= _REFERENCE_VERSION

    def _context_length(self, runner: _Runner) -> int:
        # v0.11.4 reports the runner's num_ctx as is (99999 on a model trained for 2048); newer servers cap it.
        num_ctx = int(runner.options["num_ctx"])
        return min(num_ctx, runner.spec.context_length) if self._follows_reference else num_ctx

    def _unload_requested(self, keep_alive_ns: int | None) -> bool:
        """The completion handlers' "nothing to do and keep_alive 0" test. v0.11.4 compares whole seconds
        (`int(Seconds()) == 0`), so 0.5 or "500ms" unloads too; the reference compares the duration with 0."""
        if keep_alive_ns is None:
            return False
        return keep_alive_ns == 0 if self._follows_reference else keep_alive_ns < _NS

    # -- faults ------------------------------------------------------------------------------------

    def fail(
        self, path: str, status: int, error: str | None = None, times: int = 1, *, raw_body: bytes | None = None
    ) -> None:
        """Answer the next `times` requests to `path` with `status` and `{"error": error}` (a default text
        for 500/503/499 when error is None), or with `raw_body` as text/plain when given."""
        text = error if error is not None else _DEFAULT_FAULT_TEXT.get(status, _reason(status).lower())
        self._add_fault(path, _Fault("fail", times, status, text, raw_body))

    def reset_connection(self, path: str, times: int = 1) -> None:
        """Read the next `times` requests to `path`, then drop the connection with a TCP RST."""
        self._add_fault(path, _Fault("reset", times))

    def _add_fault(self, path: str, fault: _Fault) -> None:
        if fault.times <= 0:
            return
        with self._lock:
            self._faults.setdefault(path, deque()).append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            queue = self._faults.get(path)
            if not queue:
                return None
            fault = queue[0]
            fault.times -= 1
            if fault.times <= 0:
                queue.popleft()
            return fault

    # -- inspection --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if r.path == path]

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def cancelled_loads(self) -> list[str]:
        with self._lock:
            return list(self._cancelled)

    def loaded(self) -> dict[str, LoadedModel]:
        """Ready runners by reported name (`llama3.2:latest`); loads still in progress are left out."""
        with self._lock:
            self._reap_locked()
            return {
                r.spec.display: r.snapshot(self._context_length(r)) for r in self._runners.values() if not r.loading
            }

    def load_count(self, name: str) -> int:
        parsed = parse_name(name.strip())
        if parsed is None:
            return 0
        with self._lock:
            return self._load_counts.get(parsed.key, 0)

    def evict(self, name: str) -> None:
        """Drop a runner at once, as the scheduler does under memory pressure."""
        parsed = parse_name(name.strip())
        if parsed is None:
            return
        with self._cond:
            runner = self._runners.get(parsed.key)
            if runner is not None and not runner.loading:
                del self._runners[parsed.key]
            self._cond.notify_all()

    # -- scheduler ---------------------------------------------------------------------------------

    def _client_gone(self, conn: socket.socket | None) -> bool:
        if self._stopping.is_set():
            return True
        if conn is None:
            return False
        try:
            data = conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        return data == b""

    def _wait_watching(self, seconds: float, conn: socket.socket | None) -> bool:
        """Sleep, but give up (False) as soon as the client hangs up or the fake stops."""
        deadline = time.monotonic() + seconds
        while True:
            if self._client_gone(conn):
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            self._stopping.wait(min(remaining, 0.01))

    def _reap_locked(self) -> None:
        now = _now_ns()
        for key, runner in list(self._runners.items()):
            if (
                not runner.loading
                and runner.ref_count == 0
                and runner.expires_ns is not None
                and runner.expires_ns <= now
            ):
                del self._runners[key]

    def _use_locked(self, runner: _Runner, keep_alive_ns: int | None) -> None:
        runner.ref_count += 1
        runner.expires_ns = None
        if keep_alive_ns is not None:
            runner.keep_alive_ns = keep_alive_ns

    def _wait_cond(self, conn: socket.socket | None) -> None:
        if self._client_gone(conn):
            raise _ClientGone
        self._cond.wait(0.01)

    def _pick_victim_locked(self, exclude: _Runner) -> _Runner:
        candidates = sorted(
            (r for r in self._runners.values() if r is not exclude and not r.loading),
            key=lambda r: (r.keep_alive_ns, r.spec.display.lower()),
        )
        idle = [r for r in candidates if r.ref_count == 0]
        return idle[0] if idle else candidates[0]

    def _acquire(
        self, spec: _ModelSpec, options: dict[str, Any], keep_alive_ns: int | None, conn: socket.socket | None
    ) -> tuple[_Runner, bool]:
        """A runner for `spec` with these runner options; True when this request loaded it."""
        with self._cond:
            self._reap_locked()
            runner = self._runners.get(spec.key)
            if runner is not None and not runner.loading and runner.options == options:
                self._use_locked(runner, keep_alive_ns)
                return runner, False
        # Loads are serialised; a request queued behind one gives up if its client leaves.
        while not self._load_lock.acquire(timeout=0.01):
            if self._client_gone(conn):
                raise _ClientGone
        try:
            return self._load(spec, options, keep_alive_ns, conn)
        finally:
            self._load_lock.release()

    def _load(
        self, spec: _ModelSpec, options: dict[str, Any], keep_alive_ns: int | None, conn: socket.socket | None
    ) -> tuple[_Runner, bool]:
        with self._cond:
            self._reap_locked()
            current = self._runners.get(spec.key)
            if current is not None and current.options == options:
                self._use_locked(current, keep_alive_ns)
                return current, False
            if current is not None:
                # Different runner options: the old runner has to finish its requests and go.
                while current.ref_count > 0 and self._runners.get(spec.key) is current:
                    self._wait_cond(conn)
                if self._runners.get(spec.key) is current:
                    del self._runners[spec.key]
            runner = _Runner(
                spec=spec,
                options=dict(options),
                keep_alive_ns=self.default_keep_alive_ns if keep_alive_ns is None else keep_alive_ns,
                loaded_at=time.monotonic(),
            )
            while True:
                self._reap_locked()
                others = [r for r in self._runners.values() if r is not runner]
                if len(others) < self.max_loaded:
                    break
                victim = self._pick_victim_locked(runner)
                if victim.ref_count == 0:
                    del self._runners[victim.spec.key]
                    continue
                self._wait_cond(conn)
            self._runners[spec.key] = runner
        completed = self._wait_watching(spec.load_delay, conn)
        with self._cond:
            if not completed or spec.load_error is not None:
                if self._runners.get(spec.key) is runner:
                    del self._runners[spec.key]
                self._cond.notify_all()
                if not completed:
                    if not self._stopping.is_set():
                        self._cancelled.append(spec.display)
                    raise _ClientGone
                raise _ApiError(500, spec.load_error or _DEFAULT_LOAD_FAILURE)
            self._load_counts[spec.key] = self._load_counts.get(spec.key, 0) + 1
            runner.load_count = self._load_counts[spec.key]
            runner.loading = False
            runner.loaded_at = time.monotonic()
            runner.ref_count = 1
            self._cond.notify_all()
        return runner, True

    def _release(self, runner: _Runner) -> None:
        with self._cond:
            runner.ref_count = max(0, runner.ref_count - 1)
            if runner.ref_count == 0:
                if runner.keep_alive_ns == 0:
                    if self._runners.get(runner.spec.key) is runner:
                        del self._runners[runner.spec.key]
                else:
                    runner.expires_ns = _now_ns() + runner.keep_alive_ns
            self._cond.notify_all()

    def _expire(self, spec: _ModelSpec) -> None:
        """keep_alive 0 with nothing to do: unload now if idle, otherwise once the last request ends."""
        with self._cond:
            runner = self._runners.get(spec.key)
            if runner is None or runner.loading:
                return
            runner.keep_alive_ns = 0
            if runner.ref_count == 0:
                del self._runners[spec.key]
            self._cond.notify_all()

    def _ps_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            self._reap_locked()
            now = _now_ns()
            rows: list[tuple[int, dict[str, Any]]] = []
            for runner in self._runners.values():
                if runner.loading and not self.ps_lists_loading:
                    continue
                if runner.loading or runner.ref_count > 0 or runner.expires_ns is None:
                    expires = now + runner.keep_alive_ns
                else:
                    expires = runner.expires_ns
                spec = runner.spec
                entry: dict[str, Any] = {
                    "name": spec.display,
                    "model": spec.display,
                    "size": spec.size,
                    "digest": spec.digest,
                    "details": spec.details(),
                    "expires_at": _rfc3339nano(expires),
                    "size_vram": spec.size_vram,
                }
                if _version_tuple(self.version) >= (0, 10, 0):
                    entry["context_length"] = self._context_length(runner)
                rows.append((expires // _NS, entry))
        rows.sort(key=lambda row: -row[0])
        return [entry for _, entry in rows]


# --------------------------------------------------------------------------------------------------
# HTTP


_ROUTES: dict[str, dict[str, str]] = {
    "/": {"GET": "_h_root", "HEAD": "_h_root"},
    "/api/version": {"GET": "_h_version", "HEAD": "_h_version"},
    "/api/status": {"GET": "_h_status"},
    "/api/tags": {"GET": "_h_tags", "HEAD": "_h_tags"},
    "/api/ps": {"GET": "_h_ps"},
    "/api/show": {"POST": "_h_show"},
    "/api/generate": {"POST": "_h_generate"},
    "/api/chat": {"POST": "_h_chat"},
    "/api/embed": {"POST": "_h_embed"},
    "/api/embeddings": {"POST": "_h_embeddings"},
    "/api/pull": {"POST": "_h_pull"},
    "/api/delete": {"DELETE": "_h_delete"},
}


def _source_suffix(raw: str) -> tuple[str, str]:
    """modelref.parseSourceSuffix: (base, "cloud" | "local" | "")."""
    idx = raw.rfind(":")
    if idx >= 0:
        suffix_raw = raw[idx + 1 :].strip()
        suffix = suffix_raw.lower()
        if suffix in ("cloud", "local"):
            return raw[:idx], suffix
        if "/" not in suffix_raw and suffix.endswith("-cloud"):
            return raw[: idx + 1] + suffix_raw[: -len("-cloud")], "cloud"
    return raw, ""


def _model_ref(raw: str, empty_status: int, empty_message: str) -> tuple[ModelName, str, str]:
    """parseAndValidateModelRef: (name, base string, source)."""
    trimmed = raw.strip()
    if not trimmed:
        raise _ApiError(empty_status, empty_message)
    base, source = _source_suffix(trimmed)
    if source and _source_suffix(base)[1]:
        raise _ApiError(400, f"use either :local or :cloud, not both: {_go_q(trimmed)}")
    name = parse_name(base)
    if name is None:
        raise _ApiError(400, "invalid model name")
    return name, base, source


def _think_requested(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value in ("high", "medium", "low"))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # streamed chunks must leave as soon as they are written

    def __init__(self, conn: socket.socket, addr: Any, fake: FakeOllama) -> None:
        self.fake = fake
        self._raw = b""
        self._chunked = False
        self._held: _Runner | None = None
        super().__init__(conn, addr, fake)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: Any) -> None:
        return

    def send_response(self, code: int, message: str | None = None) -> None:
        # Go sends no Server header; a Date header is all it adds.
        self.send_response_only(code, message or _reason(code))
        self.send_header("Date", _http_date())

    # stdlib dispatches on do_<METHOD>
    def do_GET(self) -> None:
        self._dispatch()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_GET

    # -- plumbing ----------------------------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, content_type: str = _JSON) -> None:
        self._send(status, _go_json(obj), content_type)

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self._chunked = self.request_version != "HTTP/1.0"
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.close_connection = True
        self.end_headers()

    def _stream_line(self, obj: Any) -> None:
        data = _go_json(obj) + b"\n"
        if self._chunked:
            data = b"%x\r\n%s\r\n" % (len(data), data)
        self.wfile.write(data)

    def _end_stream(self) -> None:
        if self._chunked:
            self.wfile.write(b"0\r\n\r\n")

    def _reset(self) -> None:
        conn = self.connection
        with contextlib.suppress(OSError):
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        with contextlib.suppress(OSError):
            # detach+close releases the descriptor even though rfile/wfile still reference the socket,
            # so the zero linger turns the close into an RST.
            os.close(conn.detach())

    def _dispatch(self) -> None:
        fake = self.fake
        split = urlsplit(self.path)
        path = split.path or "/"
        self._raw = self._read_body()
        try:
            parsed: Any = json.loads(self._raw) if self._raw.strip() else None
        except ValueError:
            parsed = None
        fake._record(
            RecordedRequest(
                method=self.command,
                path=path,
                headers=dict(self.headers.items()),
                body=parsed,
                raw=self._raw,
                at=time.monotonic(),
                query=split.query,
            )
        )
        fault = fake._take_fault(path)
        if fault is not None and fault.kind == "reset":
            self._reset()
            return
        if not _host_allowed(self.headers.get("Host", "")):
            self._send(403, b"", None)
            return
        if self.command == "OPTIONS":
            self._send(204, b"", None)
            return
        if fault is not None:
            if fault.raw_body is not None:
                self._send(fault.status, fault.raw_body, "text/plain")
            else:
                self._json(fault.status, {"error": fault.error})
            return
        methods = _ROUTES.get(path)
        if methods is not None and path == "/api/status" and _version_tuple(fake.version) < (0, 16, 2):
            methods = None
        if methods is None and path != "/" and path.endswith("/") and self.command in _ROUTES.get(path[:-1], {}):
            self.send_response(301 if self.command == "GET" else 307)
            self.send_header("Location", path[:-1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if methods is None:
            self._send(404, b"404 page not found", "text/plain")
            return
        handler = methods.get(self.command)
        if handler is None:
            self._send(405, b"405 method not allowed", "text/plain")
            return
        try:
            getattr(self, handler)()
        except _ApiError as exc:
            self._json(exc.status, {"error": exc.message}, exc.content_type)
        except _ClientGone:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self._json(499, {"error": "request canceled"})

    def _hold(self, spec: _ModelSpec, options: dict[str, Any], keep_alive_ns: int | None) -> None:
        self._held, _ = self.fake._acquire(spec, options, keep_alive_ns, self.connection)

    def _let_go(self) -> None:
        # Released before the final bytes go out, so a client that has its answer already sees the
        # scheduler settled (idle runner, expiry timer running) rather than racing the handler thread.
        if self._held is not None:
            runner, self._held = self._held, None
            self.fake._release(runner)

    # -- simple endpoints --------------------------------------------------------------------------

    def _h_root(self) -> None:
        self._send(200, b"Ollama is running", _TEXT)

    def _h_version(self) -> None:
        self._json(200, {"version": self.fake.version})

    def _h_status(self) -> None:
        self._json(200, {"cloud": {"disabled": False, "source": "none"}})

    def _h_ps(self) -> None:
        self._json(200, {"models": self.fake._ps_entries()})

    def _h_tags(self) -> None:
        fake = self.fake
        with fake._lock:
            specs = sorted(fake._models.values(), key=lambda s: -(s.modified_ns // _NS))
        new_api = _version_tuple(fake.version) >= (0, 30, 0)
        models = []
        for spec in specs:
            details = spec.details()
            del details["parent_model"]
            entry: dict[str, Any] = {
                "name": spec.display,
                "model": spec.display,
                "modified_at": _rfc3339nano(spec.modified_ns),
                "size": spec.size,
                "digest": spec.digest,
                "details": details,
            }
            if new_api:
                details["context_length"] = spec.context_length
                details["embedding_length"] = spec.embedding_length
                entry["capabilities"] = ["embedding"] if spec.embedding else ["completion"]
            models.append(entry)
        self._json(200, {"models": models})

    def _h_show(self) -> None:
        req = _bind(self._raw, "ShowRequest", _SHOW_FIELDS)
        raw_model = req.get("model") or req.get("name") or ""
        if not raw_model:
            raise _ApiError(400, "model is required")
        name, _, _ = _model_ref(raw_model, 400, "model is required")
        spec = self.fake._lookup(name)
        if spec is None:
            # The reference normalises the name first (`llama3.1:latest`); v0.11.4 echoes it as sent.
            shown = name.display_shortest() if self.fake._follows_reference else raw_model
            raise _ApiError(404, f"model '{shown}' not found")
        arch = spec.family
        info: dict[str, Any] = {
            "general.architecture": arch,
            "general.file_type": 15,
            "general.parameter_count": spec.parameter_count,
            "general.quantization_version": 2,
            f"{arch}.block_count": 16,
            f"{arch}.context_length": spec.context_length,
            f"{arch}.embedding_length": spec.embedding_length,
        }
        if spec.embedding:
            info[f"{arch}.pooling_type"] = 1
        template = "" if spec.embedding else "{{ .Prompt }}"
        modelfile = (
            '# Modelfile generated by "ollama show"\n'
            "# To build a new Modelfile based on this, replace FROM with:\n"
            f"# FROM {spec.display}\n\nFROM {spec.blob_path}\n"
        )
        if template:
            modelfile += f'TEMPLATE "{template}"\n'
        resp: dict[str, Any] = {"modelfile": modelfile}
        if template:
            resp["template"] = template
        resp["details"] = spec.details()
        if spec.from_gguf:
            resp["details"]["parent_model"] = spec.blob_path
        resp["model_info"] = dict(sorted(info.items()))  # Go marshals map keys in sorted order
        if not self.fake.legacy_show:
            resp["capabilities"] = ["embedding"] if spec.embedding else ["completion"]
        resp["modified_at"] = _rfc3339nano(spec.modified_ns)
        self._json(200, resp)

    def _h_delete(self) -> None:
        req = _bind(self._raw, "DeleteRequest", _DELETE_FIELDS)
        raw_model = req.get("model") or req.get("name") or ""
        trimmed = raw_model.strip()
        if not trimmed:
            raise _ApiError(400, "model is required")
        name = parse_name(_source_suffix(trimmed)[0])
        if name is None:
            raise _ApiError(400, f"name {_go_q(raw_model)} is invalid")
        with self.fake._lock:
            if self.fake._models.pop(name.key, None) is None:
                raise _ApiError(404, f"model '{raw_model}' not found")
        self._send(200, b"", None)

    # -- pull --------------------------------------------------------------------------------------

    def _h_pull(self) -> None:
        fake = self.fake
        req = _bind(self._raw, "PullRequest", _PULL_FIELDS)
        raw_name = req.get("model") or req.get("name") or ""
        name, base, source = _model_ref(raw_name, 400, "invalid model name")
        if source == "cloud":
            # Cloud refs are pulled as their legacy stub names.
            base = base + "-cloud" if base.rfind(":") > base.rfind("/") else base + ":cloud"
            parsed = parse_name(base)
            if parsed is None:
                raise _ApiError(400, "invalid model name")
            name = parsed
        with fake._lock:
            template = fake._pullable.get(name.key)
        stream = req.get("stream", True)
        blobs: list[tuple[str, int]] = []
        if template is not None:
            size = int(template.get("size", 100_000_000))
            for layer, layer_size in (("model", size), ("params", 96)):
                digest = hashlib.sha256(f"{name.key}:{layer}".encode()).hexdigest()
                blobs.append((digest, layer_size))
        if not stream:
            if template is None:
                raise _ApiError(500, PULL_NOT_FOUND_ERROR, content_type="application/json")
            for _ in range(3):
                if not fake._wait_watching(0.01, self.connection):
                    raise _ClientGone
            self._finish_pull(name, template)
            self._json(200, {"status": "success"}, content_type="application/json")
            return
        self._start_stream(_NDJSON)
        self._stream_line({"status": "pulling manifest"})
        if template is None:
            self._stream_line({"error": PULL_NOT_FOUND_ERROR})
            self._end_stream()
            return
        for digest, total in blobs:
            for step in range(3):
                completed = total * step // 2
                line: dict[str, Any] = {
                    "status": f"pulling {digest[:12]}",
                    "digest": f"sha256:{digest}",
                    "total": total,
                }
                if completed:
                    line["completed"] = completed  # omitempty: a zero count is not sent
                self._stream_line(line)
                fake._stopping.wait(0.005)
        for status in ("verifying sha256 digest", "writing manifest", "removing unused layers"):
            self._stream_line({"status": status})
        self._finish_pull(name, template)
        self._stream_line({"status": "success"})
        self._end_stream()

    def _finish_pull(self, name: ModelName, template: dict[str, Any]) -> None:
        kwargs = {k: v for k, v in template.items() if k != "name"}
        self.fake.add_model(name.display_shortest(), **kwargs)

    # -- generate / chat ---------------------------------------------------------------------------

    def _h_generate(self) -> None:
        self._completion(chat=False)

    def _h_chat(self) -> None:
        self._completion(chat=True)

    def _completion(self, *, chat: bool) -> None:
        fake = self.fake
        start = time.monotonic_ns()
        struct_name = "ChatRequest" if chat else "GenerateRequest"
        req = _bind(self._raw, struct_name, _CHAT_FIELDS if chat else _GENERATE_FIELDS)
        if not 0 <= req.get("top_logprobs", 0) <= 20:
            raise _ApiError(400, "top_logprobs must be between 0 and 20")
        raw_model: str = req.get("model", "")
        if chat:
            name, _, _ = _model_ref(raw_model, 400, "model is required")
        elif fake._follows_reference:
            name, _, _ = _model_ref(raw_model, 404, f"model '{raw_model}' not found")
        else:
            # v0.11.4 parses the string as sent (no trimming, no :cloud/:local) and answers an invalid name
            # as a missing model: 404 `model 'a//b' not found`.
            parsed = parse_name(raw_model)
            if parsed is None:
                raise _ApiError(404, f"model '{raw_model}' not found")
            name = parsed
        spec = fake._lookup(name)
        if spec is None:
            raise _ApiError(404, f"model '{raw_model}' not found")
        keep_alive: int | None = req.get("keep_alive")
        nothing_to_do = not req.get("messages") if chat else not req.get("prompt")
        if nothing_to_do and fake._unload_requested(keep_alive):
            fake._expire(spec)
            self._json(200, self._completion_head(raw_model, chat) | {"done": True, "done_reason": "unload"})
            return
        if not chat and req.get("raw") and (req.get("template") or req.get("system") or req.get("context")):
            raise _ApiError(400, "raw mode does not support template, system, or context")
        if _think_requested(req.get("think")):
            raise _ApiError(400, f"{_go_q(raw_model)} does not support thinking")
        if spec.embedding:
            raise _ApiError(400, f"{_go_q(raw_model)} does not support {'chat' if chat else 'generate'}")
        if not chat and req.get("suffix"):
            raise _ApiError(400, f"{spec.name.full()} does not support insert")
        options, num_predict = _runner_options(req.get("options") or {}, fake.default_num_ctx)
        self._hold(spec, options, keep_alive)
        try:
            loaded = time.monotonic_ns()
            if nothing_to_do:
                self._let_go()
                self._json(200, self._completion_head(raw_model, chat) | {"done": True, "done_reason": "load"})
                return
            prompt = (
                " ".join(str(m.get("content", "")) for m in req["messages"] if isinstance(m, dict))
                if chat
                else req["prompt"]
            )
            self._generate_tokens(req, raw_model, chat, prompt, num_predict, start, loaded)
        finally:
            self._let_go()

    def _completion_head(self, raw_model: str, chat: bool, text: str = "") -> dict[str, Any]:
        head: dict[str, Any] = {"model": raw_model, "created_at": _rfc3339nano(_now_ns())}
        if chat:
            head["message"] = {"role": "assistant", "content": text}
        else:
            head["response"] = text
        return head

    def _generate_tokens(
        self,
        req: dict[str, Any],
        raw_model: str,
        chat: bool,
        prompt: str,
        num_predict: int,
        start: int,
        loaded: int,
    ) -> None:
        fake = self.fake
        stream = req.get("stream", True)
        prompt_tokens = max(1, len(prompt.split()))
        if num_predict <= 0:  # 0 is no limit too, as on v0.11.4: never "zero tokens"
            count, reason = UNBOUNDED_TOKENS, "stop"
        else:
            count = min(num_predict, UNBOUNDED_TOKENS)
            reason = "length" if num_predict <= UNBOUNDED_TOKENS else "stop"
        rng = random.Random(hashlib.sha256(prompt.encode()).digest())
        prompt_eval_start = time.monotonic_ns()
        prompt_eval_ns = max(1, time.monotonic_ns() - prompt_eval_start)
        if stream:
            self._start_stream(_NDJSON)
        pieces: list[str] = []
        eval_start = time.monotonic_ns()
        for _ in range(count):
            if not fake._wait_watching(fake.token_delay, self.connection):
                raise _ClientGone
            piece = rng.choice(_VOCAB)
            pieces.append(piece)
            if stream:
                self._stream_line(self._completion_head(raw_model, chat, piece) | {"done": False})
        eval_ns = max(1, time.monotonic_ns() - eval_start)
        final = self._completion_head(raw_model, chat, "" if stream else "".join(pieces))
        final["done"] = True
        final["done_reason"] = reason
        if not chat and not req.get("raw"):
            final["context"] = [rng.randrange(1, 32000) for _ in range(prompt_tokens + count)]
        metrics = {
            "total_duration": time.monotonic_ns() - start,
            "load_duration": loaded - start,
            "prompt_eval_count": prompt_tokens,
            "prompt_eval_duration": prompt_eval_ns,
            "eval_count": count,
            "eval_duration": eval_ns if count else 0,
        }
        final.update({k: v for k, v in metrics.items() if v})  # every metric is omitempty
        self._let_go()
        if stream:
            self._stream_line(final)
            self._end_stream()
        else:
            self._json(200, final)

    # -- embeddings --------------------------------------------------------------------------------

    def _h_embed(self) -> None:
        fake = self.fake
        start = time.monotonic_ns()
        req = _bind(self._raw, "EmbedRequest", _EMBED_FIELDS)
        raw_model: str = req.get("model", "")
        name, _, _ = _model_ref(raw_model, 404, f"model '{raw_model}' not found")
        value = req.get("input")
        inputs: list[str] = []
        if isinstance(value, str):
            inputs = [value] if value else []
        elif isinstance(value, list):
            if not all(isinstance(v, str) for v in value):
                raise _ApiError(400, "invalid input type")
            inputs = list(value)
        elif value is not None:
            raise _ApiError(400, "invalid input type")
        spec = fake._lookup(name)
        if spec is None:
            raise _ApiError(404, f"model {_go_q(raw_model)} not found, try pulling it first")
        options, _ = _runner_options(req.get("options") or {}, fake.default_num_ctx)
        self._hold(spec, options, req.get("keep_alive"))
        try:
            loaded = time.monotonic_ns()
            if not inputs:
                self._let_go()
                self._json(200, {"model": raw_model, "embeddings": []})
                return
            dims = req.get("dimensions", 0)
            vectors = []
            for text in inputs:
                vec = _unit(_raw_vector(spec, text))
                if 0 < dims < len(vec):
                    vec = _unit(vec[:dims])
                vectors.append([_short_float32(x) for x in vec])
            self._let_go()
            self._json(
                200,
                {
                    "model": raw_model,
                    "embeddings": vectors,
                    "total_duration": time.monotonic_ns() - start,
                    "load_duration": loaded - start,
                    "prompt_eval_count": sum(max(1, len(t.split())) for t in inputs),
                },
            )
        finally:
            self._let_go()

    def _h_embeddings(self) -> None:
        fake = self.fake
        req = _bind(self._raw, "EmbeddingRequest", _EMBEDDINGS_FIELDS)
        raw_model: str = req.get("model", "")
        name, _, _ = _model_ref(raw_model, 400, "model is required")
        spec = fake._lookup(name)
        if spec is None:
            raise _ApiError(404, f"model {_go_q(raw_model)} not found, try pulling it first")
        options, _ = _runner_options(req.get("options") or {}, fake.default_num_ctx)
        self._hold(spec, options, req.get("keep_alive"))
        try:
            prompt = req.get("prompt", "")
            vec = _raw_vector(spec, prompt) if prompt else []
            self._let_go()
            self._json(200, {"embedding": vec})
        finally:
            self._let_go()


def _raw_vector(spec: _ModelSpec, text: str) -> list[float]:
    rng = random.Random(hashlib.sha256(f"{spec.key}\0{text}".encode()).digest())
    return [rng.gauss(0.0, 1.0) for _ in range(spec.embedding_length)]


def _unit(vec: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vec))
    return [x / max(norm, 1e-12) for x in vec]
