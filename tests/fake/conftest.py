"""Fake-server tier: the real CLI and the bash fallback (subprocesses) against a stateful fake Ollama on loopback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit.fake_ollama import FakeOllama

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "fallback" / "preload_models.sh"


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


def settings(fake: FakeOllama, models: str, **extra: str) -> dict[str, str]:
    """The environment of a run against `fake`: its URL, the model list, a short wait timeout, then `extra`."""
    return {"OLLAMA_HOST": fake.url, "OLLAMA_PRELOAD_MODELS": models, "OLLAMA_PRELOAD_WAIT_TIMEOUT": "5", **extra}


def bodies(fake: FakeOllama, path: str) -> list[dict]:
    return [request.body for request in fake.requests_to(path)]


# A suite started in the background (`cmd &` in a script) inherits SIGINT ignored and would pass that on to every
# child, and Python and bash rightly keep a signal ignored on entry ignored: the SIGINT tests would then time
# out. An exec resets handled signals to their default, so handling it here gives the children what a terminal
# or `docker stop --signal SIGINT` gives them.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@dataclass(frozen=True)
class Preloader:
    """One implementation, run exactly as a user runs it; keyword arguments are environment variables."""

    name: str
    command: tuple[str, ...]
    cwd: Path

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            env=clean_env(**env),
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def popen(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.command, *args],
            env=clean_env(**env),
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


PYTHON = Preloader("python", (sys.executable, "-m", "preloader"), REPO)
BASH = Preloader("bash", ("bash", str(SCRIPT)), Path("/"))  # from elsewhere: the script needs no checkout


@pytest.fixture(params=[PYTHON, BASH], ids=["python", "bash"])
def preloader(request: pytest.FixtureRequest) -> Preloader:
    """Each implementation in turn: a test using this fixture proves both behave the same."""
    return request.param
