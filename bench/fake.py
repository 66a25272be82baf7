"""The fake server of the test suite, set up the way the benchmark needs it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from testkit.fake_ollama import FakeOllama, RecordedRequest


def model_names(count: int) -> list[str]:
    return [f"bench-model-{index}" for index in range(count)]


def fake_server(models: Sequence[str], load_delay: float = 0.0, start_delay: float = 0.0) -> FakeOllama:
    """A started fake holding `models`, each loading in exactly `load_delay` seconds.

    It keeps every model loaded (no eviction), so the run ends with the same `/api/ps` whatever the tool.
    """
    fake = FakeOllama(max_loaded=max(3, len(models)), start_delay=start_delay)
    for name in models:
        fake.add_model(name, load_delay=load_delay)
    return fake.start()


def signature(requests: Sequence[RecordedRequest]) -> list[tuple[str, str, Any]]:
    """What a client sent, for checking that a tool and its baseline sent exactly the same requests."""
    return [(request.method, request.path, request.body) for request in requests]
