"""Durations as Ollama reads them: Go's `time.ParseDuration`, plus integer seconds where Ollama allows them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign
    "\u03bcs": 1e-6,  # Greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_COMPONENT = re.compile(r"(\d*)(?:\.(\d*))?([^\d.]*)")
_INTEGER = re.compile(r"[+-]?\d+")


class DurationError(ValueError):
    """A duration Go would refuse; the message is Go's own wording."""


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string, with Go's rules and error messages.

    >>> parse_go_duration("1h30m")
    5400.0
    >>> parse_go_duration("-1.5s")
    -1.5
    >>> parse_go_duration("300")
    Traceback (most recent call last):
    ...
    preloader.durations.DurationError: time: missing unit in duration "300"
    """
    quoted = f'"{text}"'
    body = text
    sign = 1.0
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise DurationError(f"time: invalid duration {quoted}")
    total = 0.0
    pos = 0
    while pos < len(body):
        match = _COMPONENT.match(body, pos)
        assert match is not None  # the pattern can match the empty string
        whole, frac, unit = match.groups()
        if not whole and not frac:
            raise DurationError(f"time: invalid duration {quoted}")
        if not unit:
            raise DurationError(f"time: missing unit in duration {quoted}")
        if unit not in _UNITS:
            raise DurationError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(f"{whole or '0'}.{frac or '0'}") * _UNITS[unit]
        pos = match.end()
    return sign * total


@dataclass(frozen=True)
class KeepAlive:
    """A keep-alive as the user wrote it, and what it means.

    `wire` is what goes into the request's JSON: a number for plain integers (the API refuses the string
    "-1") and the Go duration string otherwise. `seconds` is `math.inf` for "forever".
    """

    wire: int | str
    seconds: float

    @property
    def forever(self) -> bool:
        return math.isinf(self.seconds)

    @property
    def unloads(self) -> bool:
        return self.seconds == 0

    def describe(self) -> str:
        return "forever" if self.forever else format_seconds(self.seconds)


def parse_keep_alive(text: str) -> KeepAlive:
    """What `OLLAMA_KEEP_ALIVE` accepts: integer seconds or a Go duration; negative means forever.

    >>> parse_keep_alive("-1")
    KeepAlive(wire=-1, seconds=inf)
    >>> parse_keep_alive("30m")
    KeepAlive(wire='30m', seconds=1800.0)
    """
    value = text.strip()
    if _INTEGER.fullmatch(value):
        number = int(value)
        return KeepAlive(wire=number, seconds=math.inf if number < 0 else float(number))
    seconds = parse_go_duration(value)
    if 0 < seconds < 1:
        # Observed on Ollama 0.11.4: the server truncates to whole seconds, so "500ms" unloads at once.
        raise DurationError(f'Ollama counts keep-alive in whole seconds, so "{value}" would unload the model at once')
    return KeepAlive(wire=value, seconds=math.inf if seconds < 0 else seconds)


def parse_timeout(text: str) -> float:
    """A positive timeout: a Go duration (`90s`, `5m`) or a number of seconds (`90`, `0.5`).

    >>> parse_timeout("5m"), parse_timeout("2.5")
    (300.0, 2.5)
    """
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        seconds = parse_go_duration(value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise DurationError(f'duration must be positive, got "{value}"')
    return seconds


def format_seconds(seconds: float) -> str:
    """Seconds for people: sub-second values keep two decimals, long ones become minutes/hours.

    >>> [format_seconds(s) for s in (0.0421, 1.234, 59.96, 300, 5400)]
    ['0.04 s', '1.23 s', '60.0 s', '5m', '1h30m']
    """
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"
