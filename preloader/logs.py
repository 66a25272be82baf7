"""Event lines for people (`text`) or machines (`json`). One line per event, the model name first.

This is the tool's only output; it goes to stdout so `docker compose logs` and CI show it in order and
`--log-format json | jq` works. Secrets never reach it: nothing here is handed the API key.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO

from preloader.config import LogFormat

TOOL = "preloader"


class EventLog:
    """A closed or broken output (`| head -0`, `>&-`) ends the logging, not the run: the exit status is still
    the verdict, and no traceback storm follows."""

    def __init__(self, fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
        self.format = fmt
        self._stream = stream if stream is not None else sys.stdout  # None when started with stdout closed
        self._lock = threading.Lock()  # warm steps may log from worker threads

    def for_replica(self, replica: str, *, json_field: bool = True) -> EventLog:
        """The same output, every line naming `replica`: text says `model on URL: …`, json adds `"replica"`
        (unless `json_field` is False: the caller's lines already carry a `server` field)."""
        return _ReplicaLog(self, replica, json_field)

    def info(self, event: str, message: str, *, model: str | None = None, **fields: Any) -> None:
        self._emit("info", event, message, model, fields)

    def warning(self, event: str, message: str, *, model: str | None = None, **fields: Any) -> None:
        self._emit("warning", event, message, model, fields)

    def error(self, event: str, message: str, *, model: str | None = None, **fields: Any) -> None:
        self._emit("error", event, message, model, fields)

    def lines(self, event: str, lines: list[str], **fields: Any) -> None:
        """A block such as the summary table: verbatim in text, one object carrying `fields` in json."""
        if self.format == "json":
            self._emit("info", event, "", None, fields)
            return
        self._write("".join(line + "\n" for line in lines))

    def _emit(self, level: str, event: str, message: str, model: str | None, fields: dict[str, Any]) -> None:
        self._write(self._render(level, event, message, model, fields, None))

    def _render(
        self, level: str, event: str, message: str, model: str | None, fields: dict[str, Any], replica: str | None
    ) -> str:
        if self.format == "json":
            record: dict[str, Any] = {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": level,
                "event": event,
            }
            if model is not None:
                record["model"] = model
            if replica is not None:
                record["replica"] = replica
            if message:
                record["message"] = message
            record.update(fields)
            line = json.dumps(record, default=str, ensure_ascii=False)
        else:
            subject = model or TOOL
            if replica is not None:
                subject = f"{subject} on {replica}"
            # A model's failure already says "failed:"; the tool's own errors need the word.
            marker = {"warning": "warning: ", "error": "" if model else "error: "}.get(level, "")
            line = f"{subject}: {marker}{message}"
        return line + "\n"

    def _write(self, text: str) -> None:
        """Always valid UTF-8, whatever the locale: a server's error text may hold lone surrogates."""
        data = valid_utf8(text)
        with self._lock:
            if self._stream is None:
                return
            try:
                buffer = getattr(self._stream, "buffer", None)
                if buffer is not None:
                    self._stream.flush()
                    buffer.write(data)
                    buffer.flush()
                else:
                    self._stream.write(data.decode("utf-8"))
                    self._stream.flush()
            except (OSError, ValueError):  # EPIPE, EBADF, or a stream closed under us
                silence(self._stream)
                self._stream = None


class _ReplicaLog(EventLog):
    def __init__(self, parent: EventLog, replica: str, json_field: bool) -> None:  # the parent owns the stream
        self.format = parent.format
        self._parent, self._replica, self._json_field = parent, replica, json_field

    def lines(self, event: str, lines: list[str], **fields: Any) -> None:
        self._parent.lines(event, lines, **({"replica": self._replica} if self._json_field else {}), **fields)

    def _emit(self, level: str, event: str, message: str, model: str | None, fields: dict[str, Any]) -> None:
        replica = self._replica if self._json_field or self.format == "text" else None
        self._parent._write(self._render(level, event, message, model, fields, replica))


def valid_utf8(text: str) -> bytes:
    """UTF-8 bytes of `text`, lone surrogates replaced (json.loads turns an escaped \\ud800 into one).

    >>> valid_utf8("caf\\u00e9 \\udc80")
    b'caf\\xc3\\xa9 \\xef\\xbf\\xbd'
    """
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def silence(stream: TextIO) -> None:
    """Point a dead stream's descriptor at /dev/null, so the interpreter's final flush cannot fail either."""
    try:
        descriptor = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError):
        return
    try:
        os.dup2(null, descriptor)
    except OSError:
        pass
    finally:
        os.close(null)
