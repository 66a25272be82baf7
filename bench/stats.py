"""Medians with their range, and ratios paired by repetition.

The machines are shared and noisy, so every figure is a median with its min to max, and every comparison is a
ratio of two things measured in the same repetition (interleaved), not of two separate runs.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# Typography for the report, spelled as escapes because ruff (RUF001) rightly distrusts look-alike
# characters in source code.
TIMES = "\u00d7"  # multiplication sign, after a ratio
DASH = "\u2013"  # en dash, between a minimum and a maximum
MINUS = "\u2212"  # minus sign, in a formula
DIVIDE = "\u00f7"  # division sign, in a formula


@dataclass(frozen=True)
class Summary:
    median: float
    low: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        if not values:
            raise ValueError("no samples")
        return cls(statistics.median(values), min(values), max(values), len(values))

    def to_json(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "n": self.n}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Summary:
        return cls(float(data["median"]), float(data["min"]), float(data["max"]), int(data["n"]))


def summarize(values: Sequence[float]) -> dict[str, Any] | None:
    """JSON form of a Summary, or None when nothing was measured (a failed or skipped case)."""
    return Summary.of(values).to_json() if values else None


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """a_i / b_i for each repetition i: both were measured back to back, so machine noise mostly cancels."""
    if len(numerators) != len(denominators):
        raise ValueError("ratios need one baseline per repetition")
    return [a / b for a, b in zip(numerators, denominators, strict=True) if b > 0]


def seconds(value: float | None) -> str:
    """A duration for a table cell: milliseconds below one second, seconds above."""
    if value is None:
        return DASH
    if abs(value) < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def cell(data: dict[str, Any] | None, unit: str = "s") -> str:
    """`median (min to max)` for a table.

    `unit`: "s" (durations), "x" (ratios), "x3" (ratios judged against a threshold: three decimals, so the
    printed figure never looks like the threshold it missed) or "MiB".
    """
    if not data:
        return DASH
    summary = Summary.from_json(data)
    fmt = {
        "s": seconds,
        "x": lambda v: f"{v:.2f}{TIMES}",
        "x3": lambda v: f"{v:.3f}{TIMES}",
        "MiB": lambda v: f"{v:.1f} MiB",
    }[unit]
    return f"{fmt(summary.median)} ({fmt(summary.low)}{DASH}{fmt(summary.high)})"
