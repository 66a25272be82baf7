"""Event lines: always valid UTF-8 (JSON lines always parse), and a dead output ends the logging, not the run."""

from __future__ import annotations

import io
import json
import os

import pytest

from preloader.logs import EventLog


class Sink(io.TextIOWrapper):
    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="latin-1")  # a locale that cannot even encode the text


@pytest.mark.parametrize("text", ["bad \ud800 surrogate", "lone \udfff", "ok caf\u00e9 \U0001f600", "nul \x00 byte"])
@pytest.mark.parametrize("fmt", ["text", "json"])
def test_every_line_is_valid_utf8_whatever_the_server_said(text: str, fmt: str) -> None:
    sink = Sink()
    log = EventLog(fmt, sink)  # type: ignore[arg-type]
    log.error("failed", f"failed: {text}", model="m", error=text)
    raw = sink.buffer.getvalue()  # type: ignore[attr-defined]
    decoded = raw.decode("utf-8")  # strict: raises on invalid UTF-8
    assert decoded.count("\n") == 1
    if fmt == "json":
        assert json.loads(decoded)["model"] == "m"


class Broken(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("stream", [Broken(), None])
def test_a_closed_or_missing_output_silences_the_log_without_raising(stream: io.StringIO | None) -> None:
    log = EventLog("text", stream)
    if stream is None:
        log._stream = None  # what sys.stdout is when the process starts with stdout closed
    for _ in range(3):
        log.info("start", "still running")
    log.lines("summary", ["a", "b"])


def test_a_broken_pipe_on_a_real_descriptor_is_pointed_at_dev_null() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)
    stream = os.fdopen(write_end, "w")
    log = EventLog("text", stream)
    log.info("start", "nobody reads this")
    log.info("start", "nor this")
    stream.write("the interpreter's final flush\n")
    stream.flush()  # would raise BrokenPipeError if the descriptor still pointed at the dead pipe
    stream.close()
