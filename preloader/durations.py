"""Durations as Ollama reads them: Go's `time.ParseDuration`, plus integer seconds where Ollama allows them."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# Nanoseconds per unit, as in Go's `time` package.
_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
NANOSECONDS = 1_000_000_000
MAX_NANOSECONDS = (1 << 63) - 1  # Go's time.Duration is an int64 of nanoseconds
MAX_SECONDS = MAX_NANOSECONDS // NANOSECONDS  # 9223372036 s, about 292 years
MIN_TIMEOUT = 0.001  # below a millisecond a timeout is a typo, and curl's --max-time would round it to "none"
# One grammar per kind, ASCII only: Python's int() and float() also take non-ASCII digits, '1_0', '1e3' and ' 5 '.
_INTEGER = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)", re.ASCII)


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
    return parse_go_duration_ns(text) / NANOSECONDS


def parse_go_duration_ns(text: str) -> int:
    """Go's `time.ParseDuration`, step for step in integer nanoseconds, overflow checks included.

    >>> parse_go_duration_ns("1.5h")
    5400000000000
    >>> parse_go_duration_ns("9999999999h")
    Traceback (most recent call last):
    ...
    preloader.durations.DurationError: time: invalid duration "9999999999h"
    """
    invalid = DurationError(f"time: invalid duration {_quote(text)}")
    body = text
    negative = False
    if body[:1] in ("+", "-"):
        negative = body[0] == "-"
        body = body[1:]
    if body == "0":
        return 0
    if not body:
        raise invalid
    total = 0
    while body:
        if not (body[0] == "." or _ascii_digit(body[0])):
            raise invalid
        whole, body, overflow = _leading_int(body)
        if overflow:
            raise invalid
        pre = whole is not None
        fraction, scale, post = 0, 1.0, False
        if body[:1] == ".":
            fraction, scale, body, post = _leading_fraction(body[1:])
        if not pre and not post:
            raise invalid
        end = 0
        while end < len(body) and not (body[end] == "." or _ascii_digit(body[end])):
            end += 1
        if end == 0:
            raise DurationError(f"time: missing unit in duration {_quote(text)}")
        unit, body = body[:end], body[end:]
        if unit not in _UNITS:
            raise DurationError(f"time: unknown unit {_quote(unit)} in duration {_quote(text)}")
        value = whole or 0
        if value > (1 << 63) // _UNITS[unit]:
            raise invalid
        value *= _UNITS[unit]
        if fraction > 0:
            value += int(float(fraction) * (float(_UNITS[unit]) / scale))
            if value > 1 << 63:
                raise invalid
        total += value
        if total > 1 << 63:
            raise invalid
    if negative:
        return -total
    if total > MAX_NANOSECONDS:
        raise invalid
    return total


def _ascii_digit(char: str) -> bool:
    return "0" <= char <= "9"


def _leading_int(text: str) -> tuple[int | None, str, bool]:
    """Go's leadingInt: the value (None when there was no digit), the rest, and whether it overflowed."""
    value, index = 0, 0
    while index < len(text) and _ascii_digit(text[index]):
        if value > (1 << 63) // 10:
            return None, text, True
        value = value * 10 + ord(text[index]) - ord("0")
        if value > 1 << 63:
            return None, text, True
        index += 1
    return (value if index else None), text[index:], False


def _leading_fraction(text: str) -> tuple[int, float, str, bool]:
    """Go's leadingFraction: digits past int64 stop adding precision instead of failing."""
    value, scale, index, overflow = 0, 1.0, 0, False
    while index < len(text) and _ascii_digit(text[index]):
        if not overflow:
            following = value * 10 + ord(text[index]) - ord("0")
            if value > ((1 << 63) - 1) // 10 or following > 1 << 63:
                overflow = True
            else:
                value, scale = following, scale * 10
        index += 1
    return value, scale, text[index:], index > 0


def _quote(text: str) -> str:
    """Go's `time.quote`: non-ASCII and control characters as \\x bytes, so a message stays one clean line."""
    out: list[str] = []
    for char in text:
        if char < " " or char > "~":
            out.extend(f"\\x{byte:02x}" for byte in char.encode("utf-8", "replace"))
        else:
            out.append("\\" + char if char in '"\\' else char)
    return '"' + "".join(out) + '"'


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
    value = text.strip(" \t\n\r\v\f")  # ASCII whitespace: a no-break space is not trimmed away
    if _INTEGER.fullmatch(value):
        number = int(value)
        if abs(number) > MAX_SECONDS:
            # The server multiplies by 1e9 into an int64: a bigger number would wrap to a negative duration.
            raise DurationError(
                f"{value} seconds is out of range: Ollama's durations stop at {MAX_SECONDS} s (about 292 years)"
            )
        return KeepAlive(wire=number, seconds=math.inf if number < 0 else float(number))
    seconds = parse_go_duration(value)
    if 0 < seconds < 1:
        # Observed on Ollama 0.11.4: the server truncates to whole seconds, so "500ms" unloads at once.
        raise DurationError(f'Ollama counts keep-alive in whole seconds, so "{value}" would unload the model at once')
    return KeepAlive(wire=value, seconds=math.inf if seconds < 0 else seconds)


def parse_timeout(text: str) -> float:
    """A timeout: a Go duration (`90s`, `5m`) or seconds written as a plain decimal (`90`, `0.5`).

    >>> parse_timeout("5m"), parse_timeout("2.5")
    (300.0, 2.5)
    """
    value = text.strip(" \t\n\r\v\f")  # ASCII whitespace: a no-break space is not trimmed away
    seconds = float(value) if _DECIMAL.fullmatch(value) else parse_go_duration(value)
    if seconds <= 0:
        raise DurationError(f'duration must be positive, got "{value}"')
    if seconds < MIN_TIMEOUT:
        raise DurationError(f'"{value}" is shorter than the smallest timeout, 1ms')
    if seconds > MAX_SECONDS:
        raise DurationError(f'"{value}" is out of range: durations stop at {MAX_SECONDS} s (about 292 years)')
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
