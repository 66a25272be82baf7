"""Event lines for people (`text`) or machines (`json`). One line per event, the model name first.

This is the tool's only output; it goes to stdout so `docker compose logs` and CI show it in order and
`--log-format json | jq` works. Secrets never reach it: nothing here is handed the API key.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import datetime, timezone
from typing import Any, TextIO

from preloader.config import LogFormat

TOOL = "preloader"


class EventLog:
    def __init__(self, fmt: LogFormat = "text", stream: TextIO | None = None) -> None:
        self.format = fmt
        self._stream = stream or sys.stdout
        self._lock = threading.Lock()  # warm steps may log from worker threads

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
        with self._lock:
            for line in lines:
                self._stream.write(line + "\n")
            self._stream.flush()

    def _emit(self, level: str, event: str, message: str, model: str | None, fields: dict[str, Any]) -> None:
        if self.format == "json":
            record: dict[str, Any] = {
                "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": level,
                "event": event,
            }
            if model is not None:
                record["model"] = model
            if message:
                record["message"] = message
            record.update(fields)
            line = json.dumps(record, default=str)
        else:
            subject = model or TOOL
            # A model's failure already says "failed:"; the tool's own errors need the word.
            marker = {"warning": "warning: ", "error": "" if model else "error: "}.get(level, "")
            line = f"{subject}: {marker}{message}"
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()
