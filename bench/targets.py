"""The issue's targets, each judged from the numbers of this run."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Target:
    name: str
    goal: str  # the target as the issue states it
    measured: str  # the figure it is judged on, as printed
    met: bool | None  # None: not measured in this run
    note: str = ""  # why it is missed (or what qualifies a pass), from this run's own numbers

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Target:
        return cls(**data)

    @property
    def verdict(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]
