"""Decide, from one `/api/ps` snapshot, whether each warmed model is still loaded. Pure functions.

Nobody else checks this, and it is where "keep_alive -1 and it still reloaded" hides: a model can be
evicted by the next one we warm when the server keeps fewer models than we list, or runs out of memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from preloader.client import RunningModel
from preloader.durations import format_seconds
from preloader.names import InvalidModelName, parse_model_name
from preloader.warm import WarmOutcome

FOREVER_YEAR = 2200  # keep_alive -1 expires ~292 years from now; anything this far out means "never"


@dataclass(frozen=True)
class Residency:
    resident: bool
    where: str | None = None  # "100% GPU", "100% CPU", "48%/52% CPU/GPU"
    expires: str | None = None  # "forever", "in 4m59s"
    context_length: int | None = None
    message: str | None = None  # why it is not resident, with what to do
    required: bool = True  # False when the run itself asked for an unload (keep_alive 0)


def verify_residency(
    outcomes: Sequence[WarmOutcome], running: Sequence[RunningModel], now: datetime
) -> dict[str, Residency]:
    """Residency of every warmed model, keyed by the entry's text."""
    loaded = {_key(model.name): model for model in running}
    warmed = [outcome for outcome in outcomes if outcome.outcome == "warmed"]
    result: dict[str, Residency] = {}
    for outcome in warmed:
        found = loaded.get(outcome.entry.name.key)
        if found is not None:
            result[outcome.model] = Residency(
                resident=True,
                where=placement(found.size, found.size_vram),
                expires=describe_expiry(found.expires_at, now),
                context_length=found.context_length,
            )
        elif _asked_to_unload(outcome):
            result[outcome.model] = Residency(
                resident=False, message="unloaded as asked (keep_alive 0)", required=False
            )
        else:
            result[outcome.model] = Residency(resident=False, message=_eviction_message(outcome, warmed, running))
    return result


def placement(size: int, size_vram: int) -> str:
    """Where a model sits, as `ollama ps` prints it.

    >>> placement(100, 100), placement(100, 0), placement(100, 52)
    ('100% GPU', '100% CPU', '48%/52% CPU/GPU')
    """
    if size <= 0 or size_vram <= 0:
        return "100% CPU"
    if size_vram >= size:
        return "100% GPU"
    gpu = round(100 * size_vram / size)
    return f"{100 - gpu}%/{gpu}% CPU/GPU"


def describe_expiry(expires_at: datetime | None, now: datetime) -> str | None:
    if expires_at is None:
        return None
    if expires_at.year >= FOREVER_YEAR:
        return "forever"
    left = (expires_at - now).total_seconds()
    return f"in {format_seconds(max(left, 0.0))}"


def _asked_to_unload(outcome: WarmOutcome) -> bool:
    return outcome.keep_alive is not None and outcome.keep_alive.unloads


def _key(reported: str) -> str:
    try:
        return parse_model_name(reported).key
    except InvalidModelName:
        return reported.lower()


def _eviction_message(outcome: WarmOutcome, warmed: Sequence[WarmOutcome], running: Sequence[RunningModel]) -> str:
    names = ", ".join(item.model for item in warmed)
    now_loaded = ", ".join(model.name for model in running) or "nothing"
    return (
        f"warmed, but no longer loaded: the server unloaded it, most likely to make room for another model. "
        f"This run warmed {len(warmed)} model(s) ({names}); loaded now: {now_loaded}. Ollama keeps at most "
        "OLLAMA_MAX_LOADED_MODELS models (default 3 per GPU, 3 on CPU) and evicts when memory runs short: "
        "raise that setting on the server, list fewer models, or give it more memory"
    )
