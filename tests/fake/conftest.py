"""Fake-server tier: the real CLI (a subprocess) against a stateful fake Ollama on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.fake_ollama import FakeOllama

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeOllama]:
    server = FakeOllama()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def clean_env(**settings: str) -> dict[str, str]:
    """Only what the run needs: a developer's own OLLAMA_* variables must not leak into a test."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OLLAMA")}
    env.update(settings)
    return env


def run_cli(*args: str, timeout: float = 60, **settings: str) -> subprocess.CompletedProcess[str]:
    """`python -m preloader` exactly as a user runs it; settings are environment variables."""
    return subprocess.run(
        [sys.executable, "-m", "preloader", *args],
        env=clean_env(**settings),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
