"""What the steps find out and hand on: a model's warm outcome and its residency. Shared by the steps, the
report and the keeper, so it lives apart from all of them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from preloader.durations import KeepAlive
from preloader.entries import ModelEntry

Kind = Literal["generate", "embed"]
Outcome = Literal["warmed", "failed", "skipped"]


@dataclass(frozen=True)
class WarmOutcome:
    entry: ModelEntry
    outcome: Outcome
    kind: Kind | None = None
    seconds: float | None = None  # wall time of the warm request, retries included
    load_seconds: float | None = None  # the server's own load_duration, when it reports one
    error: str | None = None
    pulled: bool = False
    keep_alive: KeepAlive | None = None  # what was sent: the entry's own, else the run's default

    @property
    def model(self) -> str:
        return self.entry.text


@dataclass(frozen=True)
class Residency:
    resident: bool
    where: str | None = None  # "100% GPU", "100% CPU", "48%/52% CPU/GPU"
    expires: str | None = None  # "forever", "in 4m59s"
    context_length: int | None = None
    message: str | None = None  # why it is not resident, with what to do
    required: bool = True  # False when the run itself asked for an unload (keep_alive 0)
    verified: bool = True  # False when /api/ps could not be read: neither resident nor evicted, unknown
