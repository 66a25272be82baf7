"""Decide, from one `/api/ps` snapshot, whether each warmed model is still loaded. Pure functions.

Nobody else checks this, and it is where "keep_alive -1 and it still reloaded" hides: a model can be
evicted by the next one we warm when the server keeps fewer models than we list, or runs out of memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from preloader.client import RunningModel
from preloader.durations import format_seconds
from preloader.names import InvalidModelName, parse_model_name
from preloader.results import Residency, WarmOutcome

FOREVER_YEAR = 2200  # keep_alive -1 expires ~292 years from now; anything this far out means "never"


def verify_residency(
    outcomes: Sequence[WarmOutcome], running: Sequence[RunningModel], now: datetime
) -> dict[str, Residency]:
    """Residency of every warmed model, keyed by the entry's text."""
    loaded = {_key(model.name): model for model in running}
    warmed = [outcome for outcome in outcomes if outcome.outcome == "warmed"]
    result: dict[str, Residency] = {}
    for outcome in warmed:
        found = loaded.get(outcome.entry.name.key)
        if found is not None and found.expires_at is not None and found.expires_at <= now:
            # Listed but past its expiry: the server is unloading it. Loaded-and-not-expired is what resident means.
            if _asked_to_unload(outcome):
                result[outcome.model] = Residency(
                    resident=False, message="unloaded as asked (keep_alive 0)", required=False
                )
            else:
                result[outcome.model] = Residency(resident=False, message=_expired_message(outcome, found, now))
        elif found is not None:
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
        elif _short_keep_alive(outcome):
            result[outcome.model] = Residency(resident=False, message=_expired_message(outcome, None, now))
        else:
            result[outcome.model] = Residency(resident=False, message=_eviction_message(outcome, warmed, running))
    return result


def unverified(outcomes: Sequence[WarmOutcome], reason: str) -> dict[str, Residency]:
    """Every warmed model when `/api/ps` could not be read: not proven resident, so not ready."""
    return {
        outcome.model: Residency(resident=False, message=f"could not verify: {reason}", verified=False)
        for outcome in outcomes
        if outcome.outcome == "warmed"
    }


SHORT_KEEP_ALIVE = 60.0  # seconds; a model kept this briefly may well be gone by the time /api/ps is read


def _short_keep_alive(outcome: WarmOutcome) -> bool:
    keep_alive = outcome.keep_alive
    return keep_alive is not None and not keep_alive.forever and keep_alive.seconds <= SHORT_KEEP_ALIVE


def _expired_message(outcome: WarmOutcome, found: RunningModel | None, now: datetime) -> str:
    keep_alive = outcome.keep_alive.describe() if outcome.keep_alive is not None else "the server's default"
    when = ""
    if found is not None and found.expires_at is not None:
        when = f" {format_seconds((now - found.expires_at).total_seconds())} before the check"
    return (
        f"warmed, but unloading already: its keep-alive ({keep_alive}) ran out{when}. Use a longer keep_alive "
        "(OLLAMA_PRELOAD_KEEP_ALIVE=-1 keeps it until evicted)"
    )


def placement(size: int, size_vram: int) -> str:
    """Where a model sits, exactly as `ollama ps` prints it (cmd/cmd.go): the CPU share rounded half away from
    zero, as Go's math.Round does (Python's round() would take 50.5 to 50), and Unknown for odd sizes.

    >>> placement(100, 100), placement(100, 0), placement(100, 52), placement(200, 99), placement(100, 120)
    ('100% GPU', '100% CPU', '48%/52% CPU/GPU', '51%/49% CPU/GPU', 'Unknown')
    """
    if size_vram <= 0:
        return "100% CPU"
    if size_vram == size:
        return "100% GPU"
    if size_vram > size or size <= 0:
        return "Unknown"
    cpu = (200 * (size - size_vram) + size) // (2 * size)  # floor(100·cpu/size + ½) in integers: ties are exact
    return f"{cpu}%/{100 - cpu}% CPU/GPU"


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
